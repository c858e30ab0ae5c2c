"""The training tools timm and fastai users reach for - mixup / CutMix, EMA, test-time augmentation, RandAugment /
TrivialAugment, the LR finder, weight-decay groups, class weights - each checked to do what it says on real
Fashion-MNIST (a no-op version of any of them fails here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torchvision.transforms import v2

from cnnlab.data import FashionMNISTDataModule
from cnnlab.data.augment import Augment
from cnnlab.data.policies import NUM_BINS, SPACES, apply_ops
from cnnlab.errors import CnnlabError
from cnnlab.models.classifier import _credit
from cnnlab.models.mixing import Mix, Mixer
from cnnlab.models.tta import tta_logits
from cnnlab.run.builders import build_datamodule, build_model, wants_feature_cache
from cnnlab.run.checkpoints import load_classifier, read_checkpoint
from cnnlab.run.exporting import export
from cnnlab.run.inference import predict_tensors, run_test_split, use_tta
from cnnlab.run.training import train
from cnnlab.run.tuning import valley
from cnnlab.utils.config import compose_config as package_compose

SMALL = ["data.train_size=1000", "data.batch_size=50", "data.eval_batch_size=50", "data.val_fraction=0.05",
         "trainer.max_epochs=2", "trainer.limit_test_batches=4", "logger=csv",
         "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip


@pytest.fixture(scope="module")
def fashion(fashion_dir) -> tuple[torch.Tensor, torch.Tensor]:
    dm = FashionMNISTDataModule(data_dir="/nonexistent", system_dirs=[str(fashion_dir)], train_size=1000)
    return dm.info and dm.splits.train


@pytest.fixture(scope="module")
def rgb(fashion) -> torch.Tensor:
    """RGB images made of real ones: three Fashion-MNIST items as the three channels, 28 x 28."""
    images = fashion[0][:48]
    return torch.cat([images[0::3], images[1::3], images[2::3]], 1)


# --- mixup / CutMix --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mix", [{"mixup_alpha": 0.8}, {"cutmix_alpha": 1.0}])
def test_mixing_changes_images_and_targets_and_an_odd_batch_works(fashion, mix):
    images, labels = fashion[0][:7].float(), fashion[1][:7]  # odd on purpose: timm's Mixup asserts an even batch
    torch.manual_seed(0)
    mixed, targets = Mixer(Mix(**mix), 10)(images, labels, epoch=0)
    assert mixed.shape == images.shape and not torch.equal(mixed, images)
    assert targets.shape == (7, 10) and torch.allclose(targets.sum(1), torch.ones(7))
    assert (targets > 0).sum(1).eq(2).any()  # some rows are a blend of two classes, not one-hot
    own = targets.gather(1, labels[:, None]).squeeze(1)
    assert (own > 0).all() and (own < 1).any()  # each keeps a share of its label; most share it with another


def test_mixing_stops_at_stop_epoch_and_with_prob_zero(fashion):
    images, labels = fashion[0][:8].float(), fashion[1][:8]
    for mixer, epoch in (
        (Mixer(Mix(mixup_alpha=1.0, stop_epoch=3), 10), 3),
        (Mixer(Mix(mixup_alpha=1.0, prob=0.0), 10), 0),
    ):
        out, targets = mixer(images, labels, epoch)
        assert torch.equal(out, images) and torch.equal(targets.argmax(1), labels) and targets.max() == 1


def test_training_accuracy_under_mixing_credits_the_predicted_class_share():
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    assert float(_credit(torch.tensor([0, 0]), targets)) == pytest.approx(0.7)  # right on the first, 0 on the second
    assert float(_credit(torch.tensor([1, 2]), targets)) == pytest.approx(0.9)
    assert int(_credit(torch.tensor([1, 2]), torch.tensor([1, 0]))) == 1  # unmixed: the plain count


def test_mixup_changes_the_training_loss(make_cfg, fashion_dir):
    info_cfg = make_cfg("data.train_size=200")
    datamodule, info = build_datamodule(info_cfg.data)
    images, labels = datamodule.splits.train[0][:32], datamodule.splits.train[1][:32]
    losses = []
    for mix in ("null", "{mixup_alpha: 1.0, cutmix_alpha: 1.0}"):
        model = build_model(make_cfg("data.train_size=200", f"model.mix={mix}"), info, datamodule)
        torch.manual_seed(0)
        model.load_state_dict(build_model(info_cfg, info).state_dict())
        logits, targets = model._mixed_logits(images, labels)
        losses.append(float(model.loss(logits, targets).detach()))
    assert losses[0] != pytest.approx(losses[1], abs=1e-3)


# --- test-time augmentation -------------------------------------------------------------------------------------------
def test_tta_views_average_the_mirror_and_the_shifts(fashion):
    images = fashion[0][:4]
    seen = []

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x.float().flatten(1)[:, :5]

    assert torch.equal(tta_logits(logits_of, images, "none"), logits_of(images))
    seen.clear()
    flip = tta_logits(logits_of, images, "flip")
    assert torch.allclose(flip, 0.5 * (images.float().flatten(1)[:, :5] + images.flip(-1).float().flatten(1)[:, :5]))
    seen.clear()
    tta_logits(logits_of, images, "flip_shift")
    assert len(seen) == 6 and seen[2].dtype == torch.uint8
    shifted = seen[2]  # the third view: moved one pixel up-left (reflected edge)
    assert torch.equal(shifted[..., :-1, :-1], images[..., 1:, 1:])


# --- RandAugment / TrivialAugment -------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_policy_op_gives_torchvisions_output(fashion, rgb, policy, channels):
    """Each op at several magnitudes and both signs, batched with a magnitude per image, against torchvision's own
    op on the whole batch. Color and Contrast on RGB may differ by one grey level on a few pixels (float rounding of
    a per-image factor tensor vs a Python float)."""
    images = fashion[0][:8] if channels == 1 else rgb[:8]
    space, reference = SPACES[policy], (v2.RandAugment() if policy == "randaugment" else v2.TrivialAugmentWide())
    names, (h, w) = list(space), images.shape[-2:]
    for index, name in enumerate(names):
        table, signed = space[name]
        for bin_ in (9, 30):
            for sign in (1.0, -1.0) if signed else (1.0,):
                bins = table(NUM_BINS, h, w)
                magnitude = float(bins[bin_]) * sign if bins is not None else 0.0
                expected = reference._apply_image_or_video_transform(images, name, magnitude, reference.interpolation,
                                                                     reference._fill)  # fmt: skip
                magnitudes = {k: torch.full((len(images),), float(t(NUM_BINS, h, w)[bin_]) * (sign if s else 1.0))
                              for k, (t, s) in space.items() if t(NUM_BINS, h, w) is not None}  # fmt: skip
                got = apply_ops(images, names, torch.full((len(images),), index), magnitudes, (0,))
                diff = (got.int() - expected.int()).abs()
                if name in ("Color", "Contrast") and channels == 3:
                    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, (name, bin_, sign)
                else:
                    assert torch.equal(got, expected), (name, bin_, sign, int(diff.max()))


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
def test_policies_give_each_image_its_own_ops(fashion, rgb, policy):
    for images in (fashion[0][:1].expand(64, -1, -1, -1), rgb[:1].expand(64, -1, -1, -1)):
        torch.manual_seed(0)
        out = Augment(policy=policy)(images.contiguous())
        assert out.dtype == torch.uint8 and out.shape == images.shape
        distinct = {bytes(o.flatten().tolist()) for o in out}
        assert len(distinct) > 16  # one input, copied 64 times: the copies came out different


def test_a_policy_refuses_float_batches(fashion):
    with pytest.raises(CnnlabError, match="uint8"):
        Augment(policy="randaugment")(fashion[0][:4].float() / 255)


# --- weight-decay groups ----------------------------------------------------------------------------------------------
def test_biases_and_norm_weights_get_no_weight_decay(make_cfg, fashion_dir):
    base = ["experiment=fashion_cnn_fast", "scheduler=none", "data.train_size=200", "optimizer.weight_decay=0.5"]
    _, info = build_datamodule(make_cfg(*base).data)
    for restore in (False, True):
        model = build_model(make_cfg(*base, f"optimizer.decay_norm_and_bias={str(restore).lower()}"), info)
        model.trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False)
        optimizer = model.configure_optimizers()["optimizer"]
        names = {id(p): n for n, p in model.named_parameters()}
        decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        assert len({n for g in optimizer.param_groups for n in [id(p) for p in g["params"]]}) == len(names)
        one_d = {n for n, p in model.named_parameters() if p.ndim <= 1}
        assert one_d and all(n.endswith((".bias", ".weight")) for n in one_d)
        assert (decayed >= one_d) if restore else not (decayed & one_d)
        # a step with zero gradients: AdamW's decay alone moves the parameters it is applied to
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
            p.data.add_(0.1)  # BatchNorm biases start at 0, where decay would not show
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer.step()
        moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert moved == decayed


def test_decay_groups_keep_the_transfer_lrs_and_gates(make_cfg, fashion_dir):
    cfg = make_cfg("model=efficientnet_lite0", "transfer=finetune", "transfer.layer_decay=0.5",
                   "transfer.freeze_epochs=1", "model.image_size=32", "data.train_size=200")  # fmt: skip
    _, info = build_datamodule(cfg.data)
    model = build_model(cfg, info)
    groups = model.param_groups()
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["head/no_decay"] == lrs["head"] and lrs["backbone.stage0/no_decay"] == lrs["backbone.stage0"]
    assert lrs["backbone.stage0"] < lrs["backbone.stage6"] < lrs["head"]
    assert model.policy.gate("backbone.stage0/no_decay", 0) == model.policy.gate("backbone.stage0", 0) == 0.0


# --- class weights ----------------------------------------------------------------------------------------------------
def test_balanced_class_weights_follow_the_training_counts_and_change_the_loss(make_cfg, fashion_dir):
    cfg = make_cfg("data.train_size=300", "model.class_weights=balanced")
    datamodule, info = build_datamodule(cfg.data)
    images, labels = datamodule.splits.train
    keep = torch.cat([torch.nonzero(labels != 3).flatten(), torch.nonzero(labels == 3).flatten()[:3]])
    datamodule.splits.train = (images[keep], labels[keep])  # class 3 (Dress) cut to 3 images
    model = build_model(cfg, info, datamodule)
    counts = torch.bincount(labels[keep], minlength=10).double()
    expected = counts.sum() / (10 * counts)
    assert torch.allclose(model.class_weight.double(), expected, rtol=1e-5)
    assert model.hparams.class_weights == pytest.approx(expected.tolist(), rel=1e-5)  # stored in the checkpoint
    plain = build_model(make_cfg("data.train_size=300"), info)
    plain.load_state_dict(model.state_dict())
    logits = torch.randn(6, 10)
    target = torch.tensor([3, 3, 0, 1, 2, 4])
    assert float(model.loss(logits, target)) != pytest.approx(float(plain.loss(logits, target)), abs=1e-4)


def test_a_class_weight_list_of_the_wrong_length_names_the_classes(make_cfg, fashion_dir):
    cfg = make_cfg("data.train_size=100", "model.class_weights=[1,2,3]")
    datamodule, info = build_datamodule(cfg.data)
    with pytest.raises(CnnlabError, match=r"3 weights but Fashion-MNIST has 10 classes.*Trouser"):
        build_model(cfg, info, datamodule)


# --- EMA, TTA and the LR finder through whole runs --------------------------------------------------------------------
@pytest.fixture(scope="module")
def ema_tta_run(tmp_path_factory, fashion_dir) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("ema_tta")
    cfg = package_compose([*SMALL, "callbacks=ema", "callbacks.ema.decay=0.9", "model.tta=flip",
                           "+data.augment={policy: trivialaugment, hflip: true}",
                           "model.mix={mixup_alpha: 0.4, stop_epoch: 1}"],
                          output_dir=work / "run", root_dir=work, config_name="train")  # fmt: skip
    return train(cfg), work / "run"


def test_ema_weights_are_what_is_checkpointed_and_tested(ema_tta_run):
    metrics, _ = ema_tta_run
    best = read_checkpoint(Path(metrics["best_checkpoint"]), needs=("state_dict",))
    raw, averaged = best["current_model_state"], best["state_dict"]
    key = "backbone.features.0.weight"
    assert not torch.equal(raw[key], averaged[key])  # the average differs from the raw weights
    model = load_classifier(Path(metrics["best_checkpoint"]), "cpu")
    assert torch.equal(model.state_dict()[key], averaged[key])  # what eval / predict / export load
    assert model.tta == "flip"
    datamodule = FashionMNISTDataModule(data_dir="/nonexistent", system_dirs=["/usr/share/datasets/fashion-mnist"],
                                        train_size=1000, val_fraction=0.05)  # fmt: skip
    datamodule.setup("test")
    images, labels = datamodule.splits.test[0][:200], datamodule.splits.test[1][:200]
    with torch.no_grad():
        tta_acc = float((model.predict_logits(images).argmax(1) == labels).float().mean())
        raw_model = load_classifier(Path(metrics["best_checkpoint"]), "cpu")
        raw_model.load_state_dict(raw)
        raw_acc = float((raw_model.predict_logits(images).argmax(1) == labels).float().mean())
    assert metrics["test/acc"] == pytest.approx(tta_acc, abs=1e-6)  # 4 test batches of 50 = these 200 images
    assert raw_acc != tta_acc or not torch.equal(raw_model(images), model(images))


def test_tta_logits_differ_and_eval_predict_export_use_them(ema_tta_run, tmp_path):
    metrics, _ = ema_tta_run
    model = load_classifier(Path(metrics["best_checkpoint"]), "cpu")
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        plain, averaged = model(batch), model.predict_logits(batch)
    assert not torch.allclose(plain, averaged, atol=1e-4)
    cfg = package_compose(["format=torchscript", f"ckpt_path={metrics['best_checkpoint']}",
                          f"output={tmp_path / 'model.pt'}"], output_dir=tmp_path, config_name="export")  # fmt: skip
    assert torch.allclose(predict_tensors(model, batch, batch_size=2), averaged.softmax(1), atol=1e-5)  # predict
    run = run_test_split(model, [(batch, torch.zeros(4, dtype=torch.long))])  # cnnlab eval's pass
    assert torch.equal(run.preds, averaged.argmax(1))
    info = export(cfg)
    assert info["tta"] == "flip"
    exported = torch.jit.load(str(tmp_path / "model.pt"))
    assert torch.allclose(exported(batch), averaged, atol=1e-4)
    use_tta(model, "none")  # `tta=none` on the command line of eval / predict / export
    assert torch.allclose(predict_tensors(model, batch, batch_size=4), plain.softmax(1), atol=1e-5)
    with pytest.raises(CnnlabError, match="tta='mirror': use one of none, flip"):
        use_tta(model, "mirror")


def test_lr_finder_trains_with_the_lr_it_suggests(make_cfg, fashion_dir):
    class FirstStepLR(L.Callback):
        lr: float | None = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            # the finder's sweep runs with its own callbacks only: the first batch seen here is the real training's
            if self.lr is None:
                self.lr = trainer.optimizers[0].param_groups[0]["lr"]

    probe = FirstStepLR()
    cfg = make_cfg(
        *SMALL,
        "trainer.max_epochs=1",
        "tune=lr_find",
        "tune.apply=true",
        "tune.num_training=20",
        "tune.early_stop_threshold=null",
    )  # 20 steps: the 20 batches of one epoch
    metrics = train(cfg, extra_callbacks=[probe])
    run_dir = Path(cfg.paths.output_dir)
    found = json.loads((run_dir / "lr_find.json").read_text())
    assert (run_dir / "lr_find.png").stat().st_size > 1000 and found["steps"] == 20
    assert probe.lr == pytest.approx(found["suggestion"], rel=1e-9)  # the LR of the first real step
    assert probe.lr != pytest.approx(cfg.optimizer.lr)
    stored = read_checkpoint(Path(metrics["best_checkpoint"]), needs=("hyper_parameters",))
    assert stored["hyper_parameters"]["optimizer"]["lr"] == pytest.approx(found["suggestion"])
    assert stored["cnnlab"]["config"]["optimizer"]["lr"] == pytest.approx(found["suggestion"])


def test_valley_suggests_an_lr_inside_the_longest_descent():
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    # flat to 1e-4, falling to 1e-1, then diverging: Lightning's steepest rule would pick the flat start
    losses = [2.3 if lr < 1e-4 else 2.3 - 0.25 * math.log10(lr / 1e-4) if lr < 0.1 else 1.55 + 10 * (lr - 0.1)
              for lr in lrs]  # fmt: skip
    suggestion = valley(lrs, losses)
    assert 1e-3 < suggestion < 1e-2  # a third or so into the descent from 1e-4 to 1e-1


def test_lr_finder_without_apply_stops_after_the_sweep(make_cfg, fashion_dir):
    cfg = make_cfg(*SMALL, "tune=lr_find", "tune.num_training=25")
    metrics = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert metrics["lr_find"]["suggestion"] > 0 and (run_dir / "lr_find.png").is_file()
    assert not list(run_dir.rglob("*.ckpt"))  # no training happened


# --- the feature cache with the tools ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "cached"),
    [
        ([], True),
        (["callbacks=ema", "model.class_weights=balanced"], True),
        (["model.tta=flip"], False),
        (["model.mix={mixup_alpha: 0.2}"], False),
    ],
)
def test_the_feature_cache_is_used_unless_a_tool_changes_what_the_backbone_sees(make_cfg, fashion_dir, extra, cached):
    cfg = make_cfg("model=efficientnet_lite0", "transfer=frozen", "model.image_size=32", "data.train_size=100", *extra)
    datamodule, info = build_datamodule(cfg.data)
    assert wants_feature_cache(build_model(cfg, info, datamodule), datamodule) is cached
