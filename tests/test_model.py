import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import ImageClassifier
from cnnlab.models.cnn import SeedCNN
from cnnlab.models.schedules import cosine, one_cycle
from cnnlab.run.checkpoints import load_classifier

SEED_BACKBONE = {"_target_": "cnnlab.models.cnn.SeedCNN", "widths": [32, 64], "kernel_size": 3}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}


def data_info(num_classes=10, in_chans=1, size=(28, 28)):
    return {
        "name": "t", "num_classes": num_classes, "in_chans": in_chans, "image_size": list(size),
        "class_names": [str(i) for i in range(num_classes)], "mean": [0.5] * in_chans, "std": [0.25] * in_chans,
    }  # fmt: skip


def seed_model(**data) -> ImageClassifier:
    return ImageClassifier(
        backbone=SEED_BACKBONE, data=data_info(**data), optimizer=ADAM, head={"hidden": [128], "dropout": 0.5}
    )


def test_seed_parameter_count_is_225034():
    model = seed_model()
    assert sum(p.numel() for p in model.parameters()) == 225_034


def test_class_count_and_channels_flow_from_data():
    model = seed_model(num_classes=7, in_chans=3, size=(32, 32))
    logits = model(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    assert logits.shape == (4, 7)


def test_uint8_and_float_inputs_agree():
    model = seed_model().eval()
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.allclose(model(images), model(images.float() / 255), atol=1e-5)


def test_maxpool_before_relu_is_the_same_math():
    x = torch.randn(8, 4, 12, 12)
    pool, relu = torch.nn.MaxPool2d(2), torch.nn.ReLU()
    assert torch.equal(relu(pool(x)), pool(relu(x)))


def test_image_too_small_is_a_clear_error():
    with pytest.raises(CnnlabError, match=r"image size \[6, 6\] is too small for the CNN"):
        SeedCNN(in_chans=1, image_size=(6, 6))


def test_checkpoint_rebuilds_without_config(tmp_path):
    import lightning as L

    model = seed_model(num_classes=5).eval()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = load_classifier(tmp_path / "m.ckpt")
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert loaded.class_names == ["0", "1", "2", "3", "4"]
    assert torch.equal(model(images), loaded(images))


@pytest.mark.parametrize("schedule", [cosine(100, warmup_fraction=0.1), one_cycle(100)])
def test_schedules_peak_at_one_and_decay(schedule):
    factors = [schedule(s) for s in range(100)]
    assert max(factors) == pytest.approx(1.0, abs=0.02) and factors[-1] < 0.01 and factors[0] < 0.2


def test_schedule_needs_a_run_length(make_cfg, fashion_dir):
    from cnnlab.run.training import train

    cfg = make_cfg("scheduler=cosine", "trainer.max_epochs=-1", "+trainer.max_time=00:00:01:00", "data.train_size=100")
    with pytest.raises(Exception, match=r"needs the run's length: set trainer.max_epochs"):
        train(cfg)
