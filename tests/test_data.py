import gzip
import shutil

import pytest
import torch

from cnnlab.data import DigitsDataModule, FashionMNISTDataModule, InMemoryDataModule, MNISTDataModule
from cnnlab.data.batches import TensorBatches
from cnnlab.data.splits import balanced_subset, stratified_folds, stratified_split
from cnnlab.errors import CnnlabError


def test_stratified_split_is_seeded_and_balanced():
    labels = torch.arange(10).repeat_interleave(100)
    rest_a, held_a = stratified_split(labels, 0.1, seed=1)
    rest_b, held_b = stratified_split(labels, 0.1, seed=1)
    _, held_c = stratified_split(labels, 0.1, seed=2)
    assert torch.equal(held_a, held_b) and torch.equal(rest_a, rest_b)
    assert not torch.equal(held_a, held_c)
    assert torch.bincount(labels[held_a]).tolist() == [10] * 10
    assert len(set(rest_a.tolist()) & set(held_a.tolist())) == 0 and len(rest_a) + len(held_a) == 1000


def test_balanced_subset_counts_and_remainder():
    labels = torch.arange(10).repeat_interleave(50)
    counts = torch.bincount(labels[balanced_subset(labels, 105, seed=0)], minlength=10)
    assert counts.sum() == 105 and counts.max() - counts.min() == 1
    assert torch.equal(balanced_subset(labels, 105, 0), balanced_subset(labels, 105, 0))


def test_balanced_subset_fills_from_larger_classes():
    labels = torch.tensor([0] * 3 + [1] * 100)
    assert torch.bincount(labels[balanced_subset(labels, 20, 0)]).tolist() == [3, 17]


def test_fashion_mnist_real_data(fashion_dir):
    dm = FashionMNISTDataModule(data_dir="/nonexistent", system_dirs=[str(fashion_dir)], train_size=1000, seed=3)
    info = dm.info
    assert (info.num_classes, info.in_chans, info.image_size) == (10, 1, (28, 28))
    assert info.class_names[9] == "Ankle boot" and abs(info.mean[0] - 0.286) < 1e-3
    train_x, train_y = dm.splits.train
    assert train_x.dtype == torch.uint8 and train_x.shape == (1000, 1, 28, 28)
    assert torch.bincount(train_y).tolist() == [100] * 10
    assert len(dm.splits.val[1]) == 6000 and len(dm.splits.test[1]) == 10000
    again = FashionMNISTDataModule(data_dir="/nonexistent", system_dirs=[str(fashion_dir)], train_size=1000, seed=3)
    assert torch.equal(again.info and again.splits.train[1], train_y)


def test_mnist_found_in_torchvision_layout(mnist_data_dir):
    dm = MNISTDataModule(data_dir=str(mnist_data_dir))
    assert dm.info.num_classes == 10 and len(dm.splits.test[1]) == 10000
    assert torch.bincount(dm.splits.test[1]).tolist()[:3] == [980, 1135, 1032]


def test_uncompressed_files_work(tmp_path, fashion_dir):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in fashion_dir.glob("*.gz"):
        (raw / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), system_dirs=[])
    assert len(dm.info.class_names) == 10 and len(dm.splits.test[0]) == 10000


def test_missing_dataset_lists_every_place(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), system_dirs=[str(tmp_path / "sys")])
    with pytest.raises(CnnlabError) as err:
        dm.setup()
    message = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and str(tmp_path / "sys") in message
    assert "apt-get install dataset-fashion-mnist" in message and "data.download=true" in message


def test_partial_directory_names_missing_files(tmp_path, fashion_dir):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(fashion_dir / "train-images-idx3-ubyte.gz", raw)
    with pytest.raises(CnnlabError, match="missing train-labels-idx1-ubyte, t10k-images"):
        FashionMNISTDataModule(data_dir=str(tmp_path), system_dirs=[]).setup()


def test_image_label_count_mismatch(tmp_path, fashion_dir, shared_mnist):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in fashion_dir.glob("*.gz"):
        shutil.copy(f, raw)
    # Test labels of the wrong split: 60,000 labels for 10,000 images.
    shutil.copy(fashion_dir / "train-labels-idx1-ubyte.gz", raw / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(CnnlabError, match=r"\(10000, 28, 28\) images but .* \(60000,\) labels"):
        FashionMNISTDataModule(data_dir=str(tmp_path), system_dirs=[]).setup()


def test_bad_values_reported_together():
    with pytest.raises(CnnlabError) as err:
        FashionMNISTDataModule(batch_size=0, val_fraction=1.0, train_size=-5)
    message = str(err.value)
    assert "data.batch_size=0" in message and "data.val_fraction=1.0" in message and "data.train_size=-5" in message


def test_train_size_larger_than_split(fashion_dir):
    dm = FashionMNISTDataModule(system_dirs=[str(fashion_dir)], train_size=60000)
    with pytest.raises(CnnlabError, match=r"data.train_size=60000 is larger than the training split .*54000"):
        dm.setup()


def test_digits_split():
    dm = DigitsDataModule(batch_size=32)
    assert dm.info.image_size == (8, 8)
    sizes = [len(dm.splits.train[1]), len(dm.splits.val[1]), len(dm.splits.test[1])]
    assert sum(sizes) == 1797 and 355 <= sizes[2] <= 362
    assert dm.splits.train[0].max() == 255


def test_batches_cover_every_sample_once_and_reshuffle_per_epoch():
    x = torch.arange(103).view(-1, 1, 1, 1).to(torch.uint8)
    y = torch.arange(103)
    epoch = {"n": 0}
    batches = TensorBatches(x, y, batch_size=10, shuffle=True, seed=5, epoch=lambda: epoch["n"])
    first = torch.cat([b[1] for b in batches])
    assert len(batches) == 11 and sorted(first.tolist()) == list(range(103))
    assert torch.equal(first, torch.cat([b[1] for b in batches]))  # same epoch, same order
    epoch["n"] = 1
    assert not torch.equal(first, torch.cat([b[1] for b in batches]))


def test_batches_shard_across_ranks():
    y = torch.arange(11)
    x = y.view(-1, 1, 1, 1)
    shards = [TensorBatches(x, y, 4, shuffle=True, rank=r, world_size=2, pad_shards=True) for r in range(2)]
    seen = [torch.cat([b[1] for b in s]) for s in shards]
    assert len(seen[0]) == len(seen[1]) == 6 and len(shards[0]) == len(shards[1]) == 2
    assert set(seen[0].tolist()) | set(seen[1].tolist()) == set(range(11))
    eval_shards = [TensorBatches(x, y, 4, rank=r, world_size=2) for r in range(2)]
    assert sorted(torch.cat([b[1] for s in eval_shards for b in s]).tolist()) == list(range(11))


def test_stratified_folds_are_disjoint_cover_are_stratified_and_seeded():
    labels = torch.arange(103) % 4
    folds = stratified_folds(labels, 5, seed=3)
    joined = torch.cat(folds)
    assert len(joined) == 103 and torch.equal(joined.sort().values, torch.arange(103))  # disjoint, and cover
    for cls in range(4):
        counts = [int((labels[f] == cls).sum()) for f in folds]
        assert max(counts) - min(counts) <= 1  # every class spread evenly
    assert all(torch.equal(a, b) for a, b in zip(folds, stratified_folds(labels, 5, seed=3), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(folds, stratified_folds(labels, 5, seed=4), strict=True))


class Numbered(InMemoryDataModule):
    """Images that carry their own index (two bytes), so a test can see exactly which images each split got."""

    display_name = "numbered"
    class_names = ("a", "b", "c")

    def load(self):
        index = torch.arange(300)
        images = torch.stack([index // 256, index % 256], 1).to(torch.uint8).view(300, 1, 1, 2)
        test = torch.full((30, 1, 1, 2), 255, dtype=torch.uint8)
        return images, index % 3, test, torch.arange(30) % 3


def ids(split: tuple[torch.Tensor, torch.Tensor]) -> set[int]:
    images = split[0].view(-1, 2).long()
    return set((images[:, 0] * 256 + images[:, 1]).tolist())


@pytest.mark.parametrize("train_size", [None, 120])
def test_k_fold_never_leaks_a_training_image_into_its_validation_split(train_size):
    splits = []
    for fold in range(4):
        dm = Numbered(folds=4, fold=fold, train_size=train_size, seed=7)
        dm.setup()
        train, val = ids(dm.splits.train), ids(dm.splits.val)
        assert not train & val and len(dm.splits.test[1]) == 30  # the test split is never touched
        splits.append((train, val))
    pool = set().union(*(val for _, val in splits))
    assert len(pool) == (train_size or 300) and all(train | val == pool for train, val in splits)
    assert sum(len(val) for _, val in splits) == len(pool)  # the validation folds are disjoint
    again = Numbered(folds=4, fold=2, train_size=train_size, seed=7)
    again.setup()
    assert ids(again.splits.val) == splits[2][1]  # same seed, same folds


def test_fold_values_are_checked():
    with pytest.raises(CnnlabError, match=r"data.folds=1: null or an integer >= 2"):
        Numbered(folds=1)
    with pytest.raises(CnnlabError, match=r"data.fold=4: an integer in 0 .. data.folds-1"):
        Numbered(folds=4, fold=4)
