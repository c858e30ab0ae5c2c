"""Datasets someone else made: nothing outside a dataset's own folder is read, no URL a cell names is fetched, no
FIFO hangs the run, no decompression bomb is expanded. Every dataset here is written by the test from real
Fashion-MNIST images; the hostile parts (a secret file outside, a loopback HTTP server that records being contacted,
FIFOs, a 12000x12000 PNG, PostScript named .png) are made beside them."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from cnnlab.data import FashionMNISTDataModule, HuggingFaceDataModule, ImageFolderDataModule
from cnnlab.data.images import MAX_PIXELS, decode_many, expand_inputs
from cnnlab.errors import CnnlabError
from cnnlab.run.checks import check_train_config
from tests.conftest import ROOT

# Pillow warns of the bombs as it reads their headers, before cnnlab refuses them (pytest shows warnings again)
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
NAMES = ["T-shirt/top", "Trouser"]
HANG_SECONDS = 60  # a body that blocks on a FIFO fails here instead of hanging the suite


@pytest.fixture(scope="module")
def fashion(fashion_dir) -> tuple[np.ndarray, np.ndarray]:
    """24 real Fashion-MNIST test images (28x28 grey) of two classes, 12 each: uint8 (N, 28, 28), labels 0 / 1."""
    dm = FashionMNISTDataModule(system_dirs=[str(fashion_dir)])
    images, labels = dm.info and dm.splits.test
    picked = torch.cat([torch.nonzero(labels == c).flatten()[:12] for c in (0, 1)])
    return images[picked, 0].numpy(), labels[picked].numpy()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


SECRET = np.tile(np.array([[0, 255], [255, 0]], dtype=np.uint8), (10, 10))  # 20x20: no Fashion-MNIST image


def without_hanging(body: Callable[[], object], fifos: list[Path]) -> object:
    """`body()` in a thread, failing after HANG_SECONDS (and then releasing whatever blocked on `fifos`)."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = body()
        except BaseException as err:  # re-raised in the test's own thread
            result["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    if thread.is_alive():
        for fifo in fifos:  # a reader blocked in open() is released by a writer coming and going
            with contextlib.suppress(OSError):  # no reader: nothing was blocked on this one
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"hung for {HANG_SECONDS} s (blocked on a FIFO?)")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server serving a real PNG at any path: (its base URL, the paths it was asked for). It stops
    when the test ends, or by itself after HANG_SECONDS."""
    hits: list[str] = []
    body = png(SECRET)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    stopper = threading.Timer(HANG_SECONDS, server.shutdown)
    stopper.daemon = True
    stopper.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        stopper.cancel()
        server.shutdown()
        server.server_close()


# --- Hugging Face cells -----------------------------------------------------------------------------------------
FEATURES = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})


def hostile_cells(tmp_path: Path, fashion, url: str) -> tuple[Path, list[dict], list[int], dict[int, tuple]]:
    """The folder for a dataset, its cells and labels: the 24 real images as embedded bytes, and after each few of
    them a cell holding only a path: (row: (path, what the refusal must say))."""
    folder, outside = tmp_path / "dataset", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "secret.png").write_bytes(png(SECRET))
    os.mkfifo(outside / "secret_pipe.png")  # outside and a FIFO: opening it at all would hang
    os.mkfifo(folder / "pipe.png")
    hostile = [
        (str(outside / "secret.png"), "leads outside the dataset's folder"),
        (f"{url}/x.png", "is a URL"),
        (str(folder / "pipe.png"), "FIFO (named pipe), not a regular file"),
        (str(outside / "secret_pipe.png"), "leads outside the dataset's folder"),
        ("https://example.invalid/y.png", "is a URL"),
        ("hf://datasets/someone/data/z.png", "is a URL"),
        ("../outside/secret.png", "leads outside the dataset's folder"),
    ]
    images, labels = fashion
    cells, targets, bad = [], [], {}
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        if index % 3 == 0 and hostile:  # row 0 is hostile: the probe of channels and size must pass it by
            path, reason = hostile.pop(0)
            bad[len(cells)] = (path, reason)
            cells.append({"bytes": None, "path": path})
            targets.append(int(label))
        cells.append({"bytes": png(image), "path": None})
        targets.append(int(label))
    return folder, cells, targets, bad


def write_parquet(folder: Path, cells: list[dict], labels: list[int]) -> None:
    """Written with pyarrow, as anyone could: `datasets`' own writers would embed (read) the paths."""
    table = pa.Table.from_pydict({"img": cells, "label": labels}, schema=FEATURES.arrow_schema)
    pq.write_table(table, folder / "train-00000-of-00001.parquet")


def write_disk(folder: Path, cells: list[dict], labels: list[int]) -> None:
    """A save_to_disk folder whose Arrow file holds the path cells (save_to_disk itself would embed them)."""
    placeholder = [{"bytes": png(np.zeros((28, 28), np.uint8)), "path": None}] * len(cells)
    datasets.Dataset.from_dict({"img": placeholder, "label": labels}, features=FEATURES).save_to_disk(
        str(folder / "disk")
    )
    [arrow] = (folder / "disk").glob("*.arrow")
    table = pa.Table.from_pydict({"img": cells, "label": labels}, schema=FEATURES.arrow_schema)
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    for name in os.listdir(folder / "disk"):
        shutil.move(folder / "disk" / name, folder / name)
    (folder / "disk").rmdir()


@pytest.mark.parametrize("layout", ["parquet", "disk"])
@pytest.mark.parametrize("streaming", [False, True], ids=["in_memory", "streamed"])
def test_hf_cells_naming_files_outside_urls_and_fifos_are_refused_by_name(tmp_path, fashion, http_server, caplog,
                                                                          layout, streaming):  # fmt: skip
    url, hits = http_server
    folder, cells, labels, bad = hostile_cells(tmp_path, fashion, url)
    (write_parquet if layout == "parquet" else write_disk)(folder, cells, labels)
    fifos = [folder / "pipe.png", tmp_path / "outside" / "secret_pipe.png"]
    dm = HuggingFaceDataModule(path=str(folder), val_fraction=0.2, test_fraction=0.2, num_workers=0,
                               cache_max_gb=0 if streaming else 4.0)  # fmt: skip

    def read_everything() -> list[torch.Tensor]:
        if not streaming:
            return [dm.info and dm.splits.train[0], dm.splits.val[0], dm.splits.test[0]]
        loaders = (dm.info and dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader())
        return [images for loader in loaders for images, _ in loader]

    with caplog.at_level(logging.WARNING, logger="cnnlab"):
        batches = without_hanging(read_everything, fifos)
    decoded = torch.cat(batches)
    assert hits == [], "a URL in a cell was fetched"
    assert dm.channels == 1 and dm.size == (28, 28)  # from the first readable row, not the 20x20 secret
    assert len(decoded) == 24 and not any(torch.equal(x[0], torch.from_numpy(SECRET)) for x in decoded)
    expected = {png(image) for image in fashion[0]}
    assert {png(x[0].numpy()) for x in decoded} == expected  # every real image, exactly
    log = caplog.text
    for row, (path, reason) in bad.items():
        assert f"row {row} of train" in log and repr(path) in log, (row, path, log)
        line = next(line for line in log.splitlines() if f"row {row} of train" in line)
        assert reason in line and repr(path) in line, line


def test_hf_imagefolder_reads_its_own_files_and_not_a_link_leading_out(tmp_path, fashion, caplog):
    """`load_dataset('imagefolder')` gives cells with the absolute paths of the files in data.path: they decode
    exactly; a link in the folder to an image elsewhere is a refused row, named."""
    images, labels = fashion
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "set" / NAMES[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    (tmp_path / "secret.png").write_bytes(png(SECRET))
    (tmp_path / "set" / "Trouser" / "link.png").symlink_to(tmp_path / "secret.png")
    os.mkfifo(tmp_path / "set" / "Trouser" / "pipe.png")
    dm = HuggingFaceDataModule(path=str(tmp_path / "set"), val_fraction=0.2, test_fraction=0.2)
    with caplog.at_level(logging.WARNING, logger="cnnlab"):
        train_x, _, test_x, _ = without_hanging(dm.load, [tmp_path / "set" / "Trouser" / "pipe.png"])
    decoded = torch.cat([train_x, test_x])
    assert {png(x[0].numpy()) for x in decoded} == {png(image) for image in images} and len(decoded) == 24
    line = next(line for line in caplog.text.splitlines() if "link.png" in line)
    assert "leads outside the dataset's folder" in line and "secret.png" in line


def test_hf_save_to_disk_files_are_plain_names_inside_the_folder(tmp_path, fashion):
    images, labels = fashion
    pictures = [Image.fromarray(image) for image in images]
    dataset = datasets.DatasetDict(train=datasets.Dataset.from_dict({"img": pictures, "label": labels.tolist()},
                                                                    features=FEATURES))  # fmt: skip
    dataset.save_to_disk(str(tmp_path / "good"))
    assert len(HuggingFaceDataModule(path=str(tmp_path / "good")).load()[0]) > 0

    shutil.copytree(tmp_path / "good", tmp_path / "a" / "escapes")  # state.json names an Arrow file one level up
    [arrow] = (tmp_path / "a" / "escapes" / "train").glob("*.arrow")
    shutil.move(arrow, tmp_path / "a" / "escapes" / "stolen.arrow")
    state_file = tmp_path / "a" / "escapes" / "train" / "state.json"
    state = json.loads(state_file.read_text())
    state["_data_files"] = [{"filename": "../stolen.arrow"}]
    state_file.write_text(json.dumps(state))
    with pytest.raises(CnnlabError, match=r"names the data file '\.\./stolen\.arrow': not a plain file name"):
        HuggingFaceDataModule(path=str(tmp_path / "a" / "escapes")).load()

    shutil.copytree(tmp_path / "good", tmp_path / "b")  # dataset_dict.json names a split outside the folder
    (tmp_path / "b" / "dataset_dict.json").write_text(json.dumps({"splits": ["../good/train"]}))
    with pytest.raises(CnnlabError, match=r"names the split '\.\./good/train': not a plain folder name"):
        HuggingFaceDataModule(path=str(tmp_path / "b")).load()

    shutil.copytree(tmp_path / "good", tmp_path / "c")  # the Arrow file a FIFO: loading it would block
    [arrow] = (tmp_path / "c" / "train").glob("*.arrow")
    arrow.unlink()
    os.mkfifo(arrow)
    with pytest.raises(CnnlabError, match=r"\.arrow is a FIFO \(named pipe\), not a regular file"):
        without_hanging(HuggingFaceDataModule(path=str(tmp_path / "c")).load, [arrow])


def test_hf_parquet_folder_with_a_fifo_or_a_link_out_is_refused_before_datasets_opens_it(tmp_path, fashion):
    images, labels = fashion
    folder = tmp_path / "parquet"
    folder.mkdir()
    write_parquet(folder, [{"bytes": png(image), "path": None} for image in images], labels.tolist())
    os.mkfifo(folder / "test-00000-of-00001.parquet")
    with pytest.raises(CnnlabError, match=r"test-00000-of-00001\.parquet is a FIFO \(named pipe\)"):
        without_hanging(HuggingFaceDataModule(path=str(folder)).load, [folder / "test-00000-of-00001.parquet"])
    (folder / "test-00000-of-00001.parquet").unlink()
    shutil.copy(folder / "train-00000-of-00001.parquet", tmp_path / "elsewhere.parquet")
    (folder / "test-00000-of-00001.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    with pytest.raises(CnnlabError, match=r"test-00000-of-00001\.parquet leads outside data\.path"):
        HuggingFaceDataModule(path=str(folder)).load()


def test_hf_max_pixels_reaches_every_decode(tmp_path, fashion):
    images, labels = fashion
    write_parquet(tmp_path, [{"bytes": png(image), "path": None} for image in images], labels.tolist())
    with pytest.raises(CnnlabError, match=r"none of its first 16 training rows(.|\n)*28x28 pixels is over the limit "
                       r"of 700 \(max_pixels\)"):  # fmt: skip
        HuggingFaceDataModule(path=str(tmp_path), max_pixels=700).load()
    with pytest.raises(CnnlabError, match=r"none of the \d+ rows of train holds an image(.|\n)*over the limit of 700"):
        HuggingFaceDataModule(path=str(tmp_path), max_pixels=700, channels=1, image_size=28).load()
    with pytest.raises(CnnlabError, match=r"data\.max_pixels='many': an integer >= 1"):
        HuggingFaceDataModule(path=str(tmp_path), max_pixels="many")


def test_hf_hub_cells_are_read_inside_the_hugging_face_caches_only(tmp_path, fashion, monkeypatch):
    """data.name: a cell's path may lead into the caches `datasets` downloads and extracts to, nowhere else."""
    from huggingface_hub import constants

    for key in ("HF_DATASETS_CACHE", "DOWNLOADED_DATASETS_PATH", "EXTRACTED_DATASETS_PATH"):
        monkeypatch.setattr(datasets.config, key, tmp_path / "cache" / "datasets")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache" / "hub"))
    (tmp_path / "cache" / "datasets").mkdir(parents=True)
    (tmp_path / "cache" / "hub").mkdir()
    (tmp_path / "cache" / "hub" / "a.png").write_bytes(png(fashion[0][0]))
    (tmp_path / "cache" / "datasets" / "b.png").write_bytes(png(fashion[0][1]))
    (tmp_path / "secret.png").write_bytes(png(SECRET))
    cells = HuggingFaceDataModule(name="someone/data")._cell_images(datasets.Image())
    for name, index in (("hub/a.png", 0), ("datasets/b.png", 1)):
        image = cells.decode({"bytes": None, "path": str(tmp_path / "cache" / name)}, 1, (28, 28))
        assert torch.equal(image[0], torch.from_numpy(fashion[0][index]))
    with pytest.raises(ValueError, match=r"secret\.png' leads outside the Hugging Face caches \("):
        cells.decode({"bytes": None, "path": str(tmp_path / "secret.png")}, 1, (28, 28))


# --- image folders and predict inputs -----------------------------------------------------------------------------
def bomb_png(path: Path, side: int = 12000) -> Path:
    """A real, valid side x side grey PNG of zeros (144 MB decoded) in a few hundred KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze, row = zlib.compressobj(9), b"\0" * (side + 1)
    body = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke\nshowpage\n%%EOF\n"


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def image_folder(root: Path, fashion) -> Path:
    for index, (image, label) in enumerate(zip(*fashion, strict=True)):
        folder = root / NAMES[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    return root


def test_image_folder_leaves_out_links_leading_outside_and_names_them(tmp_path, fashion, caplog):
    root = image_folder(tmp_path / "root", fashion)
    (tmp_path / "secret.png").write_bytes(png(SECRET))
    (root / "Trouser" / "link.png").symlink_to(tmp_path / "secret.png")
    (tmp_path / "elsewhere" / "Sneaker").mkdir(parents=True)
    (tmp_path / "elsewhere" / "Sneaker" / "s.png").write_bytes(png(SECRET))
    (root / "Sneaker").symlink_to(tmp_path / "elsewhere" / "Sneaker")
    os.mkfifo(root / "Trouser" / "pipe.png")
    (root / "T-shirt-top" / "inside_link.png").symlink_to(root / "T-shirt-top" / "0.png")  # inside: kept
    dm = ImageFolderDataModule(root=str(root), image_size=28, channels=1, val_fraction=0.2, num_workers=0)
    with caplog.at_level(logging.WARNING, logger="cnnlab"):
        without_hanging(lambda: dm.info, [root / "Trouser" / "pipe.png"])
    decoded = torch.cat([dm.splits.train[0], dm.splits.val[0], dm.splits.test[0]])
    assert dm.class_names == ("T-shirt-top", "Trouser") and len(decoded) == 25
    assert not any(torch.equal(x[0], torch.from_numpy(SECRET)) for x in decoded)
    [line] = [line for line in caplog.text.splitlines() if "leading outside" in line]
    assert "left out 2 path(s) leading outside data.root" in line
    assert f"{root / 'Trouser' / 'link.png'} -> {tmp_path / 'secret.png'}" in line and str(root / "Sneaker") in line
    assert "inside_link" not in line and "pipe.png" not in caplog.text


@pytest.mark.parametrize("streaming", [False, True], ids=["in_memory", "streamed"])
def test_image_folder_skips_a_bomb_and_postscript_by_name_undecoded(tmp_path, fashion, bomb, caplog, streaming):
    root = image_folder(tmp_path / "root", fashion)
    shutil.copy(bomb, root / "Trouser" / "bomb.png")
    (root / "Trouser" / "evil.png").write_bytes(EPS)
    dm = ImageFolderDataModule(root=str(root), image_size=28, channels=1, val_fraction=0.2, num_workers=0,
                               cache_max_gb=0 if streaming else 4.0)  # fmt: skip
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="cnnlab"):
        loaders = (dm.info and dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader())
        decoded = torch.cat([images for loader in loaders for images, _ in loader])
    assert time.perf_counter() - started < 20 and len(decoded) == 24
    bomb_line = next(line for line in caplog.text.splitlines() if "bomb.png" in line)
    assert "12000x12000 pixels is over the limit of 50,000,000 (max_pixels); refused before decoding" in bomb_line
    eps_line = next(line for line in caplog.text.splitlines() if "evil.png" in line)
    assert "not an image in a format cnnlab reads" in eps_line


def test_image_folder_max_pixels_is_a_checked_config_value(tmp_path, fashion, make_cfg, caplog):
    assert OmegaConf.load(ROOT / "conf" / "data" / "image_folder.yaml").max_pixels == MAX_PIXELS
    assert OmegaConf.load(ROOT / "conf" / "data" / "hf.yaml").max_pixels == MAX_PIXELS
    root = image_folder(tmp_path / "root", fashion)
    with pytest.raises(CnnlabError) as err:
        check_train_config(make_cfg("data=image_folder", f"data.root={root}", "data.max_pixels=0",
                                    "data.num_workers=-1"))  # fmt: skip
    assert "data.max_pixels=0: an integer >= 1" in str(err.value) and "data.num_workers=-1" in str(err.value)
    with pytest.raises(CnnlabError, match=r"data\.max_pixels=0: an integer >= 1"):
        ImageFolderDataModule(root=str(root), max_pixels=0)
    for index in range(2):  # 40x40 = 1600 pixels, over a limit of 1000 that the 28x28 images are under
        Image.fromarray(fashion[0][index]).resize((40, 40)).save(root / "Trouser" / f"big{index}.png")
    for streaming in (False, True):  # the limit reaches both ways of decoding
        dm = ImageFolderDataModule(root=str(root), image_size=28, channels=1, max_pixels=1000, num_workers=0,
                                   val_fraction=0.2, cache_max_gb=0 if streaming else 4.0)  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cnnlab"):
            loaders = (dm.info and dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader())
            assert sum(len(images) for loader in loaders for images, _ in loader) == 24
        for index in range(2):
            line = next(line for line in caplog.text.splitlines() if f"big{index}.png" in line)
            assert "40x40 pixels is over the limit of 1,000 (max_pixels)" in line, streaming


def test_decode_many_refuses_eight_bombs_at_once_from_their_headers(tmp_path, bomb, fashion):
    paths = []
    for index in range(8):
        paths.append(tmp_path / f"bomb{index}.png")
        shutil.copy(bomb, paths[-1])
    (tmp_path / "real.png").write_bytes(png(fashion[0][0]))
    started = time.perf_counter()
    images, good, bad = decode_many([*paths, tmp_path / "real.png"], 1, (28, 28))
    assert time.perf_counter() - started < 2  # refused from the headers: decoding one takes about a second
    assert good == [tmp_path / "real.png"] and torch.equal(images[0][0], torch.from_numpy(fashion[0][0]))
    assert sorted(bad) == paths and all("12000x12000 pixels is over the limit" in reason for reason in bad.values())
    _, _, bad = decode_many([tmp_path / "real.png"], 1, (28, 28), max_pixels=700)
    assert "28x28 pixels is over the limit of 700" in bad[tmp_path / "real.png"]


def test_expand_inputs_leaves_out_a_link_leading_outside_an_inputs_folder(tmp_path, fashion, caplog):
    (tmp_path / "inputs" / "more").mkdir(parents=True)
    (tmp_path / "inputs" / "a.png").write_bytes(png(fashion[0][0]))
    (tmp_path / "secret.png").write_bytes(png(SECRET))
    (tmp_path / "inputs" / "more" / "link.png").symlink_to(tmp_path / "secret.png")
    (tmp_path / "inputs" / "same.png").symlink_to(tmp_path / "inputs" / "a.png")
    with caplog.at_level(logging.WARNING, logger="cnnlab"):
        found, not_images = expand_inputs(str(tmp_path / "inputs"))
    assert found == [tmp_path / "inputs" / "a.png", tmp_path / "inputs" / "same.png"] and not_images == []
    [line] = [line for line in caplog.text.splitlines() if "leading outside" in line]
    assert "left out 1 path(s) leading outside their input folder" in line
    assert f"{tmp_path / 'inputs' / 'more' / 'link.png'} -> {tmp_path / 'secret.png'}" in line


def test_optimize_stores_no_image_cnnlab_would_refuse(tmp_path, fashion, bomb):
    """A streamed image folder goes into shards as its files' own bytes: each header is checked first, so a bomb is
    one error naming it, not a chunk that carries it on."""
    root = image_folder(tmp_path / "root", fashion)
    shutil.copy(bomb, root / "Trouser" / "bomb.png")
    dm = ImageFolderDataModule(root=str(root), image_size=28, channels=1, num_workers=0, cache_max_gb=0)
    dm.setup()
    refusals, stored = [], []
    for split in ("train", "val", "test"):
        count, encode, _ = dm.stored_items(split)
        for i in range(count):
            try:
                stored.append(encode(i))
            except CnnlabError as err:
                refusals.append(str(err))
    assert len(refusals) == 1 and "bomb.png cannot be stored in shards (ImageRefused: 12000x12000 pixels" in refusals[0]
    assert len(stored) == 24 and all(data.startswith(b"\x89PNG") for data in stored)


def test_ddp_goes_on_when_a_ranks_whole_batch_is_refused(tmp_path, fashion):
    """Two CPU ranks, batch 1, a streamed folder where a quarter of the files are PostScript named .png: at some step
    one rank's batch is empty while the other's is not. The empty rank steps with a zero loss, so both take part in
    every gradient all-reduce (before, that rank skipped its step and the other waited for ever)."""
    root = image_folder(tmp_path / "root", fashion)
    for index, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())[:8]):
        (folder / f"evil{index}.png").write_bytes(EPS)
    args = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false",
            "data=image_folder", f"data.root={root}", "data.cache_max_gb=0", "data.image_size=28", "data.channels=1",
            "data.batch_size=1", "data.num_workers=0", "data.val_fraction=0.1", "trainer.max_epochs=1",
            "model.backbone.widths=[4,8]", "logger=none", "callbacks.progress_bar.refresh_rate=0",
            f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "cnnlab", "train", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not an image in a format cnnlab reads" in result.stdout + result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    log = (tmp_path / "run" / "train.log").read_text()
    files = ImageFolderDataModule(root=str(root), image_size=28, channels=1, val_fraction=0.1, cache_max_gb=0,
                                  num_workers=0)  # fmt: skip
    files.setup()
    per_rank = -(-len(files.splits.train[1]) // 2)  # every batch of a rank is a step, the empty ones too
    assert metrics["global_step"] == per_rank and "test/acc" in metrics, log[-2000:]
