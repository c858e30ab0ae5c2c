"""A shards folder is hostile input: nothing in it can run code, read outside it, or decode what cnnlab does not read.

Every crafted folder here starts from real shards that cnnlab's own writer made from the digits dataset and is
changed the way an attacker would: an index.json whose item field is pickled (written by LitData itself, so its
chunk really holds a payload that creates a marker file when unpickled), a chunk file name leading out of the
folder, a cnnlab.json with values that are not a dataset's, items that are a decompression bomb or PostScript.
Each test proves the refusal names the file, the field and the value, and that nothing ran.
"""

import copy
import functools
import io
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from litdata import optimize as litdata_optimize
from PIL import Image

from cnnlab.data import StreamingDataModule
from cnnlab.data.digits import DigitsDataModule
from cnnlab.data.images import png_bytes
from cnnlab.data.shard_index import INDEX, META, check_index
from cnnlab.data.shards import ShardImages, write_shards
from cnnlab.errors import CnnlabError
from cnnlab.run.evaluation import evaluate
from cnnlab.run.training import train
from cnnlab.utils.io import UnsafeFileError
from tests.conftest import compose_config

DIGITS = ["model.backbone.padding=1"]  # 8x8 images: the seed CNN needs padding to keep a spatial size


class WritesFile:
    """Unpickling this object creates `marker`: the classic pickle attack, as a shard item's field."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def pickled_item(marker: Path, index: int) -> dict:
    return {"index": index, "image": WritesFile(marker), "label": index % 10}


def bytes_item(images: list[bytes], labels: dict[int, int], index: int) -> dict:
    return {"index": index, "image": images[index], "label": labels.get(index, index % 10)}


def write_split(folder: Path, fn, count: int) -> None:
    """One split written by LitData itself, as cnnlab shards would (one worker, one chunk)."""
    shutil.rmtree(folder, ignore_errors=True)
    litdata_optimize(fn=fn, inputs=list(range(count)), output_dir=str(folder), chunk_bytes="64MB", num_workers=1,
                     mode="overwrite", verbose=False, start_method="fork")  # fmt: skip


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """cnnlab's own shards of the digits (300 training images; val and test splits too)."""
    folder = tmp_path_factory.mktemp("real") / "shards"
    write_shards(DigitsDataModule(train_size=300), str(folder), num_workers=1)
    return folder


@pytest.fixture
def copy_of(real, tmp_path) -> Path:
    return Path(shutil.copytree(real, tmp_path / "shards"))


def set_count(folder: Path, split: str, count: int) -> None:
    meta = json.loads((folder / META).read_text())
    meta["counts"][split] = count
    (folder / META).write_text(json.dumps(meta))


def edit_index(folder: Path, split: str, change) -> Path:
    path = folder / split / INDEX
    index = json.loads(path.read_text())
    change(index)
    path.write_text(json.dumps(index))
    return path


def train_cfg(folder: Path, tmp_path: Path, *extra: str):
    return compose_config("train", ["data=streaming", f"data.input_dir={folder}", "data.num_workers=0",
                                    "trainer.max_epochs=1", "logger=none", *DIGITS, *extra],
                          tmp_path, tmp_path / "run")  # fmt: skip


# --- code: a pickled field -------------------------------------------------------------------------------------------
def test_a_pickled_field_is_refused_by_name_and_its_payload_never_runs(copy_of, tmp_path):
    marker = tmp_path / "pwned"
    write_split(copy_of / "train", functools.partial(pickled_item, marker), 40)
    set_count(copy_of, "train", 40)
    assert json.loads((copy_of / "train" / INDEX).read_text())["config"]["data_format"] == ["int", "pickle", "int"]
    with pytest.raises(CnnlabError) as err:
        train(train_cfg(copy_of, tmp_path))
    message = str(err.value)
    assert f"{copy_of / 'train' / INDEX} was refused" in message
    assert "config.data_format=['int', 'pickle', 'int']" in message and "['int', 'bytes', 'int']" in message
    assert "Nothing in the folder was decoded or run" in message and "cnnlab shards" in message
    assert not marker.exists()


def test_the_dataset_itself_refuses_a_pickled_field_should_the_index_change_after_the_check(copy_of, tmp_path):
    """Defence in depth: LitData's pickle serializer is replaced by one that refuses, so even an index.json swapped
    after check_index cannot have an item unpickled."""
    marker = tmp_path / "pwned"
    write_split(copy_of / "train", functools.partial(pickled_item, marker), 40)
    dataset = ShardImages(str(copy_of / "train"), 1, (8, 8), 10, ["chunk-0-0.bin"])
    with pytest.raises(UnsafeFileError, match=r"chunk-0-0\.bin item 0 was refused: a shard item has a 'pickle' field"):
        next(iter(dataset))
    assert not marker.exists()


def test_evaluating_a_checkpoint_whose_stored_shards_turned_hostile_runs_nothing(copy_of, tmp_path):
    """cnnlab eval rebuilds the checkpoint's data from its stored data=streaming config: the same check applies."""
    summary = train(train_cfg(copy_of, tmp_path, "test=false"))
    marker = tmp_path / "pwned"
    write_split(copy_of / "test", functools.partial(pickled_item, marker), 40)
    set_count(copy_of, "test", 40)
    cfg = compose_config("eval", [f"ckpt_path={summary['best_checkpoint']}", "logger=none"], tmp_path, tmp_path / "ev")
    with pytest.raises(CnnlabError, match=r"test/index\.json was refused(.|\n)*config\.data_format=\['int', 'pickle'"):
        evaluate(cfg)
    assert not marker.exists()


# --- paths: chunk names, symlinks, FIFOs -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../outside/chunk-0-0.bin", "ABSOLUTE", "sub/chunk-0-0.bin", ".chunk-0-0.bin",
                                  "..\\chunk-0-0.bin", "chunk-0-0.bin.zstd"])  # fmt: skip
def test_a_chunk_name_that_is_not_a_plain_file_of_the_split_is_refused(copy_of, tmp_path, name):
    """The named file is the real chunk, moved there: were the name followed, training would read it and succeed."""
    name = str(tmp_path / "outside" / "chunk-0-0.bin") if name == "ABSOLUTE" else name
    target = copy_of / "train" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(copy_of / "train" / "chunk-0-0.bin", target)
    path = edit_index(copy_of, "train", lambda index: index["chunks"][0].update(filename=name))
    with pytest.raises(CnnlabError) as err:
        train(train_cfg(copy_of, tmp_path))
    assert f"{path} was refused" in str(err.value) and f"chunks[0].filename={name!r}" in str(err.value)
    assert "a plain file name chunk-<worker>-<n>.bin" in str(err.value)


def test_a_chunk_that_is_a_symlink_out_of_the_folder_or_a_fifo_is_refused_unopened(copy_of, tmp_path):
    chunk = copy_of / "train" / "chunk-0-0.bin"
    outside = tmp_path / "elsewhere.bin"
    shutil.move(chunk, outside)
    chunk.symlink_to(outside)
    with pytest.raises(CnnlabError, match=rf"chunks\[0\]\.filename='chunk-0-0\.bin': it leads out of the split's "
                                          rf"folder, to {outside}"):  # fmt: skip
        check_index(str(copy_of / "train"))
    chunk.unlink()
    os.mkfifo(chunk)  # opening it would block forever
    with pytest.raises(CnnlabError, match=r"chunks\[0\]\.filename='chunk-0-0\.bin': not a regular file"):
        check_index(str(copy_of / "train"))
    (copy_of / "train" / INDEX).unlink()
    os.mkfifo(copy_of / "train" / INDEX)
    with pytest.raises(CnnlabError, match=r"index\.json is not readable \(RefusedFile: a FIFO \(named pipe\), not a "
                                          "regular file: not opened"):  # fmt: skip
        check_index(str(copy_of / "train"))


def test_a_split_folder_or_cnnlab_json_that_links_out_of_the_shards_folder_is_refused(copy_of, real, tmp_path):
    shutil.rmtree(copy_of / "val")
    (copy_of / "val").symlink_to(real / "val")  # real shards, elsewhere: still not this folder's
    shards = StreamingDataModule(input_dir=str(copy_of), num_workers=0)
    with pytest.raises(CnnlabError, match=rf"val/index\.json is not readable \(OSError: {copy_of / 'val'} is a link "
                                          rf"leading out of the shards folder, to {real / 'val'}"):  # fmt: skip
        shards.val_dataloader()
    (copy_of / META).unlink()
    (copy_of / META).symlink_to(real / META)
    with pytest.raises(CnnlabError, match=rf"holds no readable cnnlab\.json \(RefusedFile: .*/{META} leads outside "
                                          rf".* \(to {real / META}\): not opened"):  # fmt: skip
        StreamingDataModule(input_dir=str(copy_of), num_workers=0).info  # noqa: B018


def test_a_short_chunk_is_refused_not_waited_for(copy_of):
    chunk = copy_of / "train" / "chunk-0-0.bin"
    size = chunk.stat().st_size
    chunk.write_bytes(chunk.read_bytes()[: size // 2])
    with pytest.raises(CnnlabError, match=rf"chunks\[0\]\.chunk_bytes={size}: the file's size \({size // 2} bytes"):
        check_index(str(copy_of / "train"))


# --- every other field that selects code or paths --------------------------------------------------------------------
EDITS = {  # field shown in the message: the change to a real index.json
    "config.compression='zstd'": lambda ix: ix["config"].update(compression="zstd"),
    "config.encryption='FernetEncryption'": lambda ix: ix["config"].update(encryption="FernetEncryption"),
    "config.item_loader='TokensLoader'": lambda ix: ix["config"].update(item_loader="TokensLoader"),
    "config.data_format=['int', 'jpeg', 'int']": lambda ix: ix["config"].update(data_format=["int", "jpeg", "int"]),
    "config.data_spec='[2, {}]'": lambda ix: ix["config"].update(data_spec="[2, {}]"),
    "config.loader_module='os'": lambda ix: ix["config"].update(loader_module="os"),
    "updated_at='/tmp/elsewhere'": lambda ix: ix.update(updated_at="/tmp/elsewhere"),
    "updated_at='../../x'": lambda ix: ix.update(updated_at="../../x"),
    "chunks[0].dim=7": lambda ix: ix["chunks"][0].update(dim=7),
    "chunks[0].chunk_size=-1": lambda ix: ix["chunks"][0].update(chunk_size=-1),
    "chunks=[]": lambda ix: ix.update(chunks=[]),
    "shards=[]": lambda ix: ix.update(shards=[]),
}


@pytest.mark.parametrize("shown", list(EDITS))
def test_any_other_index_value_cnnlab_does_not_write_is_refused_by_name(copy_of, shown):
    path = edit_index(copy_of, "val", EDITS[shown])
    with pytest.raises(CnnlabError) as err:
        StreamingDataModule(input_dir=str(copy_of), num_workers=0).val_dataloader()
    assert f"{path} was refused" in str(err.value) and f"  - {shown}: " in str(err.value), str(err.value)


def test_a_count_that_differs_from_cnnlab_json_is_refused(copy_of):
    set_count(copy_of, "val", 5)
    with pytest.raises(CnnlabError, match=r"val/index\.json was refused(.|\n)*in all, the split's count in "
                                          r"cnnlab\.json \(5\)"):  # fmt: skip
        StreamingDataModule(input_dir=str(copy_of), num_workers=0).val_dataloader()


# --- cnnlab.json -----------------------------------------------------------------------------------------------------
META_EDITS = {  # key: bad value
    "class_names": [],
    "in_chans": 4,
    "image_size": [100000, 100000],
    "mean": [float("nan")],
    "std": [0.0],
    "num_classes": 11,
    "format": "something else",
    "counts": {"train": -1, "val": 0, "test": 0},
}


@pytest.mark.parametrize("key", list(META_EDITS))
def test_cnnlab_json_values_that_are_not_a_datasets_are_refused_by_name(copy_of, key):
    meta = json.loads((copy_of / META).read_text())
    meta[key] = META_EDITS[key]
    (copy_of / META).write_text(json.dumps(meta))  # NaN is written as NaN, which json.loads reads back
    with pytest.raises(CnnlabError) as err:
        StreamingDataModule(input_dir=str(copy_of), num_workers=0).info  # noqa: B018
    assert f"{copy_of / META} was refused" in str(err.value)
    assert f"  - {key}={copy.deepcopy(META_EDITS[key])!r}: " in str(err.value), str(err.value)


# --- items: only listed formats, under the pixel limit ---------------------------------------------------------------
def bomb_png() -> bytes:
    """A 12000x12000 grey PNG: a few hundred KB of file, 144 MB once decoded."""
    buffer = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke showpage\n%%EOF\n"


def test_a_bomb_an_eps_and_a_label_out_of_range_are_skipped_by_name_not_decoded(copy_of, caplog):
    digits = DigitsDataModule()
    images = [png_bytes(image) for image in (digits.info and digits.splits.test[0][:30])]
    bomb = bomb_png()
    assert len(bomb) < 1_000_000
    images[3], images[7] = bomb, EPS
    write_split(copy_of / "test", functools.partial(bytes_item, images, {11: 99}), len(images))
    set_count(copy_of, "test", 30)
    shards = StreamingDataModule(input_dir=str(copy_of), num_workers=0, eval_batch_size=8)
    with caplog.at_level(logging.WARNING, logger="cnnlab.data.shards"):
        batches = list(shards.test_dataloader())
    labels = torch.cat([labels for _, labels in batches])
    kept = [i % 10 for i in range(30) if i not in (3, 7, 11)]
    assert len(batches) == 4 and torch.equal(labels, torch.tensor(kept))  # 4 batches of 8: dropped items, same count
    skipped = [r.getMessage() for r in caplog.records if "skipped unreadable shard item" in r.getMessage()]
    where = copy_of / "test" / "chunk-0-0.bin"
    assert any(f"{where} item 3: ImageRefused: 12000x12000 pixels is over the limit" in m for m in skipped), skipped
    assert any(f"{where} item 7: ImageRefused: not an image in a format cnnlab reads" in m for m in skipped), skipped
    assert any(f"{where} item 11: ValueError: label 99 is not a class (0..9)" in m for m in skipped), skipped
    assert len(skipped) == 3


def test_cnnlab_shards_still_train_and_an_unreadable_item_costs_one_sample(copy_of, tmp_path, caplog):
    """cnnlab's own shards train (one epoch); an item refused in the training split is dropped from its batch, by
    name, while the run goes on."""
    digits = DigitsDataModule(train_size=300)
    images, labels = digits.info and digits.splits.train
    items = [png_bytes(image) for image in images]
    items[5] = EPS
    write_split(copy_of / "train", functools.partial(bytes_item, items, dict(enumerate(labels.tolist()))), len(items))
    with caplog.at_level(logging.WARNING, logger="cnnlab.data.shards"):
        summary = train(train_cfg(copy_of, tmp_path, "data.batch_size=32"))
    assert Path(summary["best_checkpoint"]).is_file() and summary["test/acc"] > 0.2
    skipped = [r.getMessage() for r in caplog.records if "skipped unreadable shard item" in r.getMessage()]
    assert len(skipped) == 1 and "chunk-0-0.bin item 5: ImageRefused" in skipped[0], skipped
