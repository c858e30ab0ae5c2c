"""Data from anywhere: torchvision's datasets (CIFAR read without unpickling code), Hugging Face datasets, LitData
shards. Every dataset here is written by the test from real Fashion-MNIST images."""

import collections
import gzip
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import (
    FashionMNISTDataModule,
    HuggingFaceDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    StreamingDataModule,
    TorchvisionDataModule,
)
from cnnlab.data.shards import write_shards
from cnnlab.errors import CnnlabError
from cnnlab.run.checkpoints import load_classifier, read_checkpoint
from cnnlab.run.prediction import predict_files
from cnnlab.run.sharding import write_dataset_shards
from cnnlab.run.training import train
from cnnlab.utils.io import UnsafeFileError
from tests.conftest import compose_config
from tests.test_reliability import ROOT, comparable, run_train, train_until_sigterm

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fashion_rgb32(count: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real Fashion-MNIST test images padded to 32x32 and tinted per class into RGB: (N, 3, 32, 32) uint8, labels."""
    dm = FashionMNISTDataModule(system_dirs=["/usr/share/datasets/fashion-mnist"])
    images, labels = dm.info and dm.splits.test
    grey = torch.nn.functional.pad(images[offset : offset + count], (2, 2, 2, 2))
    tint = torch.tensor([[1.0, 0.8, 0.6], [0.6, 1.0, 0.8], [0.8, 0.6, 1.0]])[labels[offset : offset + count] % 3]
    rgb = (grey.float() * tint[:, :, None, None]).round().clamp(0, 255).byte()
    return rgb.numpy(), labels[offset : offset + count].numpy()


def write_cifar10_python(root: Path, per_batch: int = 60, test: int = 100) -> Path:
    """The real CIFAR-10 python layout (what torchvision downloads): five training batches, a test batch, the meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        count = test if name == "test_batch" else per_batch
        images, labels = fashion_rgb32(count, offset=index * per_batch)
        batch = {"batch_label": name, "labels": labels.tolist(), "data": images.reshape(count, -1),
                 "filenames": [f"{name}_{i}.png" for i in range(count)]}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_cifar10_binary(root: Path, python_folder: Path) -> None:
    """The same images in CIFAR-10's binary layout: records of one label byte and 3,072 pixel bytes."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = pickle.loads((python_folder / name).read_bytes())
        records = np.concatenate([np.array(batch["labels"], np.uint8)[:, None], batch["data"]], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR_NAMES) + "\n")


def test_cifar10_python_layout_trains_and_names_its_classes(tmp_path, make_cfg, fashion_dir):
    write_cifar10_python(tmp_path / "data")
    summary = train(make_cfg("data=cifar10", f"data.data_dir={tmp_path / 'data'}", "model.backbone.padding=1",
                             "trainer.max_epochs=2", "logger=none"))  # fmt: skip
    model = load_classifier(summary["best_checkpoint"])
    assert model.class_names == CIFAR_NAMES and model.hparams.data["image_size"] == [32, 32]
    assert model.hparams.data["mean"] == [0.4914, 0.4822, 0.4465]  # the published statistics of conf/data/cifar10
    assert summary["test/acc"] > 0.3  # 300 images, 2 epochs: well above the 0.1 of chance


def test_cifar10_binary_and_python_layouts_decode_to_the_same_tensors(tmp_path, fashion_dir):
    python = write_cifar10_python(tmp_path / "py")
    write_cifar10_binary(tmp_path / "bin", python)
    loaded = [TorchvisionDataModule(name="CIFAR10", data_dir=str(tmp_path / d)).load() for d in ("py", "bin")]
    for a, b in zip(*loaded, strict=True):
        assert torch.equal(a, b)
    images, labels = fashion_rgb32(60)
    assert torch.equal(loaded[0][0][:60], torch.from_numpy(images))
    assert torch.equal(loaded[0][1][:60], torch.from_numpy(labels))


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_cifar_pickle_is_refused_and_nothing_runs(tmp_path, fashion_dir):
    folder = write_cifar10_python(tmp_path / "data")
    marker = tmp_path / "pwned"
    crafted = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "payload": RunsCode(marker)}
    (folder / "data_batch_3").write_bytes(pickle.dumps(crafted, protocol=2))
    with pytest.raises(UnsafeFileError, match=r"data_batch_3.*was refused.*names posix\.system"):
        TorchvisionDataModule(name="CIFAR10", data_dir=str(tmp_path / "data")).load()
    assert not marker.exists()


def test_cifar_not_found_says_where_it_looked_and_how_to_fix_it(tmp_path):
    with pytest.raises(CnnlabError, match=r"CIFAR100 not found.*cifar-100-binary/.*cifar-100-python/.*download=true"):
        TorchvisionDataModule(name="CIFAR100", data_dir=str(tmp_path)).load()


def test_any_torchvision_dataset_through_its_class_matches_our_reader(tmp_path, shared_mnist):
    """data=torchvision data.name=MNIST reads torchvision's layout (unpacked IDX files in <data_dir>/MNIST/raw/)
    with torchvision's class: the same tensors as cnnlab's own IDX reader."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for packed in shared_mnist.glob("*.gz"):
        (raw / packed.stem).write_bytes(gzip.decompress(packed.read_bytes()))
    ours = MNISTDataModule(data_dir=str(tmp_path)).load()
    theirs = TorchvisionDataModule(name="MNIST", data_dir=str(tmp_path))
    for a, b in zip(ours, theirs.load(), strict=True):
        assert torch.equal(a, b)
    assert theirs.class_names[:2] == ("0 - zero", "1 - one")


def test_torchvision_names_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(CnnlabError, match=r"data\.name='CIFAR11' is not a torchvision dataset class"):
        TorchvisionDataModule(name="CIFAR11", data_dir=str(tmp_path)).load()
    with pytest.raises(CnnlabError, match=r"SVHN not found under data.data_dir.*data.download=true"):
        TorchvisionDataModule(name="SVHN", data_dir=str(tmp_path)).load()


# --- Hugging Face datasets --------------------------------------------------------------------------------------
FASHION_NAMES = list(FashionMNISTDataModule.class_names)


@pytest.fixture(scope="module")
def hf_copies(tmp_path_factory, fashion_dir) -> dict[str, Path]:
    """Real Fashion-MNIST images as a Hugging Face DatasetDict (train 400, test 200; Image + ClassLabel features),
    saved as a save_to_disk folder and as parquet files."""
    dm = FashionMNISTDataModule(system_dirs=[str(fashion_dir)])
    (train_x, train_y), (test_x, test_y) = dm.info and dm.splits.train, dm.splits.test
    features = datasets.Features({"img": datasets.Image(), "fine": datasets.ClassLabel(names=FASHION_NAMES)})

    def split(images, labels):
        pictures = [Image.fromarray(image[0].numpy()) for image in images]
        return datasets.Dataset.from_dict({"img": pictures, "fine": labels.tolist()}, features=features)

    dataset = datasets.DatasetDict(train=split(train_x[:400], train_y[:400]), test=split(test_x[:200], test_y[:200]))
    root = tmp_path_factory.mktemp("hf")
    dataset.save_to_disk(str(root / "disk"))
    (root / "parquet").mkdir()
    for name, part in dataset.items():
        part.to_parquet(str(root / "parquet" / f"{name}-00000-of-00001.parquet"))
    torch.save({"train": train_x[:400], "test": test_x[:200]}, root / "expected.pt")
    return {"disk": root / "disk", "parquet": root / "parquet", "expected": root / "expected.pt"}


def test_hf_save_to_disk_trains_and_its_class_names_reach_the_checkpoint(hf_copies, make_cfg, tmp_path):
    summary = train(make_cfg("data=hf", f"data.path={hf_copies['disk']}", "trainer.max_epochs=2", "logger=none"))
    model = load_classifier(summary["best_checkpoint"])
    assert model.class_names == FASHION_NAMES and summary["test/acc"] > 0.5
    trouser = torch.load(hf_copies["expected"])["test"][2]  # the third test image of Fashion-MNIST is a trouser
    Image.fromarray(trouser[0].numpy()).save(tmp_path / "trouser.png")
    results, _ = predict_files(model, [tmp_path / "trouser.png"], top_k=1)
    assert results[0]["top"][0]["label"] in FASHION_NAMES


@pytest.mark.parametrize("copy", ["disk", "parquet"])
def test_hf_local_copies_decode_to_the_exact_images(hf_copies, copy):
    dm = HuggingFaceDataModule(path=str(hf_copies[copy]), val_fraction=0.1)
    train_x, _, test_x, test_y = dm.load()
    expected = torch.load(hf_copies["expected"])
    assert dm.class_names == tuple(FASHION_NAMES) and dm.channels == 1 and dm.size == (28, 28)
    assert torch.equal(train_x, expected["train"]) and torch.equal(test_x, expected["test"])
    assert len(test_y) == 200


def test_hf_imagefolder_takes_its_classes_from_the_folder_names(tmp_path, fashion_dir):
    images, labels = fashion_rgb32(60)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        split = "test" if i % 3 == 0 else "train"
        folder = tmp_path / split / FASHION_NAMES[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i}.png")
    dm = HuggingFaceDataModule(path=str(tmp_path), val_fraction=0.2)
    train_x, _, test_x, _ = dm.load()
    present = sorted({FASHION_NAMES[i].replace("/", "-") for i in labels.tolist()})
    assert list(dm.class_names) == present and dm.channels == 3 and dm.size == (32, 32)
    assert len(train_x) == 40 and len(test_x) == 20
    first = next(i for i in range(60) if i % 3)  # the first training image, in its class's place
    assert any(torch.equal(x, torch.from_numpy(images[first])) for x in train_x)


def test_hf_streams_rows_when_the_cache_is_too_small(hf_copies):
    cached = HuggingFaceDataModule(path=str(hf_copies["disk"]))
    streamed = HuggingFaceDataModule(path=str(hf_copies["disk"]), cache_max_gb=0, num_workers=0)
    assert streamed.info == cached.info and streamed.streaming and not cached.streaming
    images, labels = next(iter(streamed.test_dataloader()))
    assert torch.equal(images, cached.splits.test[0][: len(images)]) and torch.equal(
        labels, cached.splits.test[1][: len(labels)]
    )


def test_hf_hub_id_offline_is_a_clear_error_not_a_hang(make_cfg):
    started = time.perf_counter()
    with pytest.raises(CnnlabError, match=r"cannot be reached from here.*save_to_disk.*data\.path="):
        HuggingFaceDataModule(name="fashion_mnist").load()
    assert time.perf_counter() - started < 15  # load_dataset's own retries take ~25 s here


def test_hf_bad_values_are_one_message(make_cfg):
    with pytest.raises(CnnlabError) as err:
        HuggingFaceDataModule(name="a", path="/b", format="zip", image_size=0)
    message = str(err.value)
    assert "exactly one of data.name" in message and "data.format='zip'" in message and "data.image_size=0" in message
    with pytest.raises(CnnlabError, match=r"data\.image_column='picture'.*img, fine"):
        HuggingFaceDataModule(path=str(Path(__file__).parent), image_column="picture")._columns(
            datasets.Dataset.from_dict({"img": [1], "fine": [0]})
        )


# --- LitData shards -------------------------------------------------------------------------------------------------
SHARDED = ["data.train_size=400", "data.val_fraction=0.2"]


def digests(images: torch.Tensor, labels: torch.Tensor) -> collections.Counter:
    return collections.Counter(f"{int(y)}:{hashlib.sha1(x.numpy().tobytes()).hexdigest()}" for x, y in
                               zip(images, labels, strict=True))  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory, fashion_dir) -> tuple[Path, dict]:
    """cnnlab shards of a 400-image Fashion-MNIST training subset (its val and test splits too)."""
    work = tmp_path_factory.mktemp("shards")
    cfg = compose_config("shards", [*SHARDED, f"output_dir={work / 'shards'}", "num_workers=1"], work, work / "run")
    return work / "shards", write_dataset_shards(cfg)


def test_optimize_writes_every_split_and_the_metadata(shards, fashion_dir):
    folder, meta = shards
    assert meta["counts"] == {"train": 400, "val": 12000, "test": 10000}
    assert meta["class_names"] == FASHION_NAMES and meta["image_size"] == [28, 28] and meta["in_chans"] == 1
    streamed = StreamingDataModule(input_dir=str(folder), num_workers=0)
    reference = FashionMNISTDataModule(system_dirs=[str(fashion_dir)], train_size=400, val_fraction=0.2)
    assert streamed.info == reference.info  # the model is sized from the shards alone
    images, labels = zip(*[batch for batch in streamed.test_dataloader()], strict=True)
    assert digests(torch.cat(images), torch.cat(labels)) == digests(*reference.splits.test)


def test_streaming_trains_and_the_class_names_reach_the_checkpoint(shards, make_cfg):
    summary = train(make_cfg("data=streaming", f"data.input_dir={shards[0]}", "data.num_workers=1",
                             "trainer.max_epochs=2", "trainer.limit_val_batches=4", "logger=none"))  # fmt: skip
    assert load_classifier(summary["best_checkpoint"]).class_names == FASHION_NAMES
    assert summary["test/acc"] > 0.5


def test_ddp_ranks_each_see_a_disjoint_share_of_the_epoch(shards, tmp_path, fashion_dir):
    """2-process CPU DDP: each rank's first-epoch images are its own (no image on both ranks), both ranks take the
    same number of steps, and together they cover the training split but for each rank's last partial batch."""
    run_dir = tmp_path / "ddp"
    args = ["data=streaming", f"data.input_dir={shards[0]}", "data.num_workers=1", "trainer=ddp",
            "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false", "trainer.max_epochs=1",
            "trainer.limit_val_batches=2", "test=false", "logger=none", f"hydra.run.dir={run_dir}",
            "+callbacks.probe._target_=tests.shard_probe.RecordFirstEpoch",
            f"+callbacks.probe.output_dir={run_dir}"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "cnnlab", "train", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [collections.Counter(json.loads((run_dir / f"seen_rank{r}.json").read_text())) for r in (0, 1)]
    source = FashionMNISTDataModule(system_dirs=[str(fashion_dir)], train_size=400, val_fraction=0.2)
    reference = digests(*(source.info and source.splits.train))
    assert seen[0].total() == seen[1].total() > 0 and not set(seen[0]) & set(seen[1])
    assert not (seen[0] + seen[1]) - reference and reference.total() - (seen[0] + seen[1]).total() < 2 * 64


def test_sigterm_mid_epoch_then_resume_streams_exactly_like_an_uninterrupted_run(shards, tmp_path):
    recipe = ["data=streaming", f"data.input_dir={shards[0]}", "data.num_workers=1", "data.batch_size=20",
              "trainer.max_epochs=2", "trainer.deterministic=true", "scheduler=onecycle", "trainer.limit_val_batches=4",
              "trainer.limit_test_batches=4"]  # fmt: skip
    reference = run_train([*recipe, f"hydra.run.dir={tmp_path / 'reference'}"], tmp_path)
    assert reference.returncode == 0, reference.stderr[-2000:]
    run_dir = tmp_path / "interrupted"
    code, output = train_until_sigterm([*recipe, f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=1"],
                                       tmp_path, after_steps=5)  # fmt: skip
    assert code == 128 + signal.SIGTERM, output[-2000:]
    saved = read_checkpoint(run_dir / "checkpoints" / "last.ckpt", needs=("loops",))
    in_epoch = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    assert saved["epoch"] == 1 and 0 < in_epoch < 20  # stopped mid-epoch (20 steps of 20 images)
    resumed = run_train([*recipe, f"hydra.run.dir={run_dir}", "ckpt_path=last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    actual = json.loads((run_dir / "metrics.json").read_text())
    assert actual["global_step"] == 40 and comparable(actual) == comparable(expected)


def test_streaming_needs_its_shards(tmp_path):
    with pytest.raises(CnnlabError, match=r"holds no readable cnnlab\.json.*cnnlab shards data="):
        StreamingDataModule(input_dir=str(tmp_path)).info  # noqa: B018
    with pytest.raises(CnnlabError, match=r"data\.input_dir=.*required"):
        StreamingDataModule(input_dir="???")


def test_streamed_sources_are_stored_as_they_decode(hf_copies, tmp_path):
    """A dataset too large to cache is written from its own storage (an image folder's file bytes, a Hugging Face
    table's rows): the shards decode to the same tensors as the cached dataset."""
    for index, (image, label) in enumerate(zip(*fashion_rgb32(60), strict=True)):
        folder = tmp_path / "folder" / CIFAR_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{index}.png")
    sources = {
        "folder": lambda **kw: ImageFolderDataModule(root=str(tmp_path / "folder"), image_size=32, num_workers=0, **kw),
        "hf": lambda **kw: HuggingFaceDataModule(path=str(hf_copies["disk"]), num_workers=0, **kw),
    }
    for name, make in sources.items():
        streamed, cached = make(cache_max_gb=0), make()
        write_shards(streamed, str(tmp_path / f"{name}_shards"), num_workers=1)
        assert streamed.streaming and not cached.streaming
        shards = StreamingDataModule(input_dir=str(tmp_path / f"{name}_shards"), num_workers=0)
        images, labels = zip(*shards.test_dataloader(), strict=True)
        assert torch.equal(torch.cat(images), cached.info and cached.splits.test[0]), name
        assert torch.equal(torch.cat(labels), cached.splits.test[1]), name


def test_new_data_keys_are_checked_in_one_message(tmp_path):
    with pytest.raises(CnnlabError) as err:
        TorchvisionDataModule(name="CIFAR10", mean=[0.5, 2.0, 0.5], std=[0.2, 0.0, 0.2])
    assert "data.mean=[0.5, 2.0, 0.5]" in str(err.value) and "data.std=[0.2, 0.0, 0.2]" in str(err.value)
    with pytest.raises(CnnlabError, match=r"data\.max_cache_size='lots': a number of bytes or a size such as 64MB"):
        StreamingDataModule(input_dir=str(tmp_path), max_cache_size="lots")
    cfg = compose_config("shards", [f"output_dir={tmp_path}", "chunk_bytes=huge"], tmp_path, tmp_path / "run")
    with pytest.raises(CnnlabError, match=r"nothing was written(.|\n)*chunk_bytes='huge'"):
        write_dataset_shards(cfg)
