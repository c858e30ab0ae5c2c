"""cnnlab layers: every layer's output, parameters, trainable or frozen and multiply-adds; the published counts
(VGG-16: 138,357,544; the seed CNN: 225,034), MACs checked against fvcore and torchinfo, weight sharing measured."""

import json

import pytest
import torch
import torchinfo
from fvcore.nn import FlopCountAnalysis

from cnnlab.data.info import DataInfo
from cnnlab.errors import CnnlabError
from cnnlab.inspection.summary import summarize_model
from cnnlab.run.builders import build_model
from cnnlab.run.layers import layer_table
from tests.conftest import compose_config

MULTIPLY_ADDS = ("conv", "linear", "matmul", "addmm", "bmm", "einsum")  # fvcore's names of the ops made of them
FASHION = DataInfo("Fashion-MNIST", 10, 1, (28, 28), tuple("abcdefghij"), (0.286,), (0.353,))


def model_of(tmp_path, *overrides: str, info: DataInfo = FASHION):
    return build_model(compose_config("train", list(overrides), tmp_path, tmp_path), info)


def test_seed_cnn_counts_by_hand(tmp_path):
    """225,034 parameters as the seed says; MACs by hand: 26*26*32*9, 11*11*64*32*9, 1600*128, 128*10."""
    report = summarize_model(model_of(tmp_path))
    assert report.params == report.trainable == 225_034
    assert report.macs == 26 * 26 * 32 * 9 + 11 * 11 * 64 * 32 * 9 + 1600 * 128 + 128 * 10 == 2_631_040
    rows = {row.name: row for row in report.rows}
    assert rows["backbone.features.0"].output == [32, 26, 26] and rows["backbone.features.0"].params == 320
    assert rows["head.0"].params == 1600 * 128 + 128 and rows["head.0"].macs == 1600 * 128
    assert [row.name for row in report.rows][:2] == ["preprocess", "backbone.features.0"]  # in the order they run
    assert "val_acc" not in rows  # the metrics are modules, not layers
    # Without weight sharing the first conv (1x28x28 -> 32x26x26, 3x3) would need a kernel per output position.
    sharing = report.sharing
    assert sharing.conv_params == 320
    assert sharing.locally_connected_params == 26 * 26 * 32 * (9 + 1) == 216_320
    assert sharing.dense_params == 26 * 26 * 32 * (28 * 28 + 1) == 16_981_120


def test_vgg16_prints_its_published_count(tmp_path, capsys, fashion_dir):
    cfg = compose_config("layers", ["model=vgg16", "depth=2"], tmp_path, tmp_path / "run")
    result = layer_table(cfg)
    printed = capsys.readouterr().out
    assert "timm's vgg16 as published (its 1000-class ImageNet head): 138,357,544 parameters" in printed
    assert result["params"] == 138_357_544 - 4096 * 1000 - 1000 + 4096 * 10 + 10  # its own 10-class head instead
    saved = json.loads((tmp_path / "run" / "model_summary.json").read_text())
    assert saved["published"]["params"] == 138_357_544 and saved["macs"] == result["macs"] > 0


def test_frozen_transfer_shows_the_backbone_frozen(tmp_path):
    report = summarize_model(model_of(tmp_path, "model=efficientnet_lite0", "transfer=frozen",
                                      "transfer.pretrained=false"), depth=1)  # fmt: skip
    rows = {row.name: row for row in report.rows}
    assert rows["backbone"].params > 3_000_000 and rows["backbone"].trainable == 0
    assert rows["head"].trainable == rows["head"].params > 0
    assert report.trainable == rows["head"].params
    assert report.network_input == [3, 64, 64] and report.input == [1, 28, 28]


@pytest.mark.parametrize("name", ["resnet18", "tf_efficientnet_lite0", "mobilenetv3_large_100"])
def test_macs_agree_with_fvcore_and_torchinfo(name, tmp_path):
    """Three families at 96 px: within 1% of both independent counters. A multiply-add is a conv's or a linear
    layer's (torchinfo adds the biases'); fvcore also counts one op per BatchNorm element by default (+3% on lite0's
    depthwise-heavy blocks), so the comparison takes its conv and linear ops."""
    rgb = DataInfo("rgb", 10, 3, (96, 96), tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3)
    model = model_of(tmp_path, "model=timm", f"model.backbone.name={name}", "model.image_size=null", info=rgb).eval()
    ours = summarize_model(model).macs
    image = torch.rand(1, 3, 96, 96)
    analysis = FlopCountAnalysis(model, image).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_operator = analysis.by_operator()  # fvcore counts one multiply-add as one "flop"
    fvcore_macs = sum(count for op, count in by_operator.items() if op in MULTIPLY_ADDS)
    torchinfo_macs = torchinfo.summary(model, input_data=image, verbose=0).total_mult_adds
    print(f"{name}: cnnlab {ours:,}  fvcore {fvcore_macs:,} ({dict(by_operator)})  torchinfo {torchinfo_macs:,}")
    assert abs(ours - fvcore_macs) / fvcore_macs < 0.01
    assert abs(ours - torchinfo_macs) / torchinfo_macs < 0.01


def test_summary_leaves_the_model_as_it_found_it(tmp_path):
    """cnnlab train summarizes the model it is about to train: dropout must stay on, no example input left behind."""
    model = model_of(tmp_path).train()
    summarize_model(model)
    assert model.training and all(m.training for m in model.head.modules())
    assert model.example_input_array is None


def test_training_stores_params_and_macs(fashion_run):
    metrics = json.loads((fashion_run[2] / "run" / "metrics.json").read_text())
    assert metrics["params"] == {"total": 225_034, "trainable": 225_034, "macs": 2_631_040}


def test_bad_depth_is_refused(tmp_path):
    with pytest.raises(CnnlabError, match="depth=0"):
        layer_table(compose_config("layers", ["depth=0"], tmp_path, tmp_path / "run"))
