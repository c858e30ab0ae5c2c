"""The config rules as units: each domain's check function on its own values (the whole-run path, with exit codes
and messages, is tests/test_bad_inputs.py)."""

import re

import pytest

from cnnlab.data.checks import check_augment, check_data
from cnnlab.errors import Problems
from cnnlab.models.checks import check_model, check_optimizer, feature_map_side, image_size_pair
from cnnlab.models.schedules import check_scheduler
from cnnlab.run.checks import check_callbacks, check_trainer, check_tune
from cnnlab.run.machine_checks import check_backbone_name

CNN = {"_target_": "cnnlab.models.cnn.SeedCNN", "widths": [32, 64], "kernel_size": 3, "padding": 0}
EMA = {"_target_": "cnnlab.run.callbacks.EMA", "decay": 0.999}
TIMM = {"_target_": "cnnlab.models.backbones.TimmBackbone", "name": "resnet18", "in_chans_mode": "repeat"}
TIMM_TYPO = {**TIMM, "name": "resnet_18"}
CASES = [
    (check_data, {"batch_size": 0}, r"data.batch_size=0: an integer >= 1"),
    (check_data, {"val_fraction": 1.0}, r"data.val_fraction=1.0: a number in \(0, 1\)"),
    (check_data, {"train_size": True}, r"data.train_size=True: null or an integer >= 1"),
    (check_data, {"channels": 2}, r"data.channels=2: 1 \(grey\) or 3 \(RGB\)"),
    (check_data, {"cache_max_gb": -1}, r"data.cache_max_gb=-1: a number >= 0"),
    (check_data, {"root": None}, r"data.root is required"),
    (check_data, {"on_device": "gpu"}, r"data.on_device='gpu': auto"),
    (check_augment, {"translate": -1}, r"data.augment.translate=-1: an integer >= 0 \(pixels\)"),
    (check_augment, {"erase_area": [0.5, 0.1]}, r"data.augment.erase_area=\[0.5, 0.1\]: \[low, high\]"),
    (check_augment, {"fill": 300}, r"data.augment.fill=300: an integer 0..255"),
    (check_augment, {"hflp": True}, r"data.augment.hflp=True: one of the keys translate, hflip"),
    (check_model, {"backbone": {**CNN, "widths": []}}, r"model.backbone.widths=\[\]: a non-empty list"),
    (check_model, {"backbone": CNN, "image_size": 5}, r"model.image_size=5 is too small for the CNN's 2 conv"),
    (check_model, {"backbone": {**TIMM, "name": None}}, r"model.backbone.name=None: a timm model name"),
    (check_backbone_name, {"backbone": TIMM_TYPO}, r"'resnet_18' is not a timm model. Closest: resnet18"),
    (check_model, {"backbone": {**TIMM, "in_chans_mode": "sum"}}, r"in_chans_mode='sum': one of repeat, adapt"),
    (check_model, {"backbone": TIMM, "image_size": [16, 64]}, r"model.image_size=\[16, 64\] is too small for a timm"),
    (check_model, {"image_size": [0, 3]}, r"model.image_size=\[0, 3\]: null \(the data's size\)"),
    (check_model, {"head": {"dropout": 1}}, r"model.head.dropout=1: a number in \[0, 1\)"),
    (check_model, {"head": {"hidden": [0]}}, r"model.head.hidden=\[0\]: a list of integers >= 1"),
    (check_model, {"compile": "yes"}, r"model.compile='yes': true or false"),
    (check_model, {"weights": "/nowhere.pth"}, r"model.weights='/nowhere.pth': no such file"),
    (check_augment, {"policy": "autoaugment"}, r"data.augment.policy='autoaugment': one of None, randaugment, triv"),
    (check_augment, {"policy_magnitude": 31}, r"data.augment.policy_magnitude=31: a bin 0..30"),
    (check_augment, {"policy_ops": 0}, r"data.augment.policy_ops=0: an integer >= 1"),
    (check_model, {"mix": {"mixup_alpha": -1}}, r"model.mix.mixup_alpha=-1: a number >= 0"),
    (check_model, {"mix": {"prob": 2}}, r"model.mix.prob=2: a number in \[0, 1\]"),
    (check_model, {"mix": {"mixup": 0.8}}, r"model.mix.mixup=0.8: one of the keys mixup_alpha, cutmix_alpha"),
    (check_model, {"mix": {"stop_epoch": -1}}, r"model.mix.stop_epoch=-1: null \(mix every epoch\)"),
    (check_model, {"mix": 0.8}, r"model.mix=0.8 is not a mapping"),
    (check_model, {"tta": "mirror"}, r"model.tta='mirror': one of none, flip, shift, flip_shift"),
    (check_model, {"class_weights": "inverse"}, r"model.class_weights='inverse': null, balanced, or a list"),
    (check_model, {"class_weights": [1, -2]}, r"model.class_weights=\[1, -2\]: null, balanced"),
    (check_optimizer, {"lr": 1e-3, "decay_norm_and_bias": "no"}, r"optimizer.decay_norm_and_bias='no': true or false"),
    (check_callbacks, {"ema": {**EMA, "decay": 1.0}}, r"callbacks.ema.decay=1.0: a number in \(0, 1\)"),
    (check_callbacks, {"ema": {**EMA, "every_n_steps": 0}}, r"callbacks.ema.every_n_steps=0: an integer >= 1"),
    (check_tune, {"min_lr": 1e-2, "max_lr": 1e-3}, r"tune.max_lr=0.001: a number > tune.min_lr"),
    (check_tune, {"num_training": 5}, r"tune.num_training=5: an integer >= 20"),
    (check_tune, {"mode": "log"}, r"tune.mode='log': one of exponential, linear"),
    (check_tune, {"apply": "yes"}, r"tune.apply='yes': true or false"),
    (check_tune, {"suggest": "min"}, r"tune.suggest='min': one of valley, steepest"),
    (check_optimizer, {"lr": -1}, r"optimizer.lr=-1: a number > 0"),
    (check_optimizer, {"lr": 0.1, "momentum": 1.0}, r"optimizer.momentum=1.0: a number in \[0, 1\)"),
    (check_scheduler, {"pct_start": 0}, r"scheduler.pct_start=0: a number in \(0, 1\)"),
    (check_scheduler, {"div_factor": 0}, r"scheduler.div_factor=0: a number > 0"),
    (check_trainer, {"max_epochs": 0, "precision": "32-true"}, r"trainer.max_epochs=0: an integer >= 1"),
    (check_trainer, {"max_epochs": 1, "precision": "32-true", "max_time": "1h"}, r"trainer.max_time='1h'"),
    (check_trainer, {"max_epochs": 1, "precision": "32-true", "devices": 0}, r"trainer.devices=0: auto"),
]


@pytest.mark.parametrize(("check", "values", "message"), CASES, ids=[f"{c.__name__}-{m[:28]}" for c, _, m in CASES])
def test_each_rule_names_the_key_the_value_and_what_is_allowed(check, values, message):
    problems = Problems()
    check(values, problems)
    assert len(problems.items) == 1 and re.search(message, problems.items[0]), problems.items


@pytest.mark.parametrize(("check", "values"), [
    (check_data, {"batch_size": 64, "val_fraction": 0.1, "train_size": None, "augment": {"translate": 2}}),
    (check_model, {"backbone": CNN, "image_size": None, "head": {"hidden": [128], "dropout": 0.5}}),
    (check_model, {"backbone": TIMM, "image_size": 64}),
    (check_optimizer, {"lr": 1e-3, "weight_decay": 0.05, "decay_norm_and_bias": False}),
    (check_model, {"mix": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "stop_epoch": 10}, "tta": "flip_shift",
                   "class_weights": "balanced"}),
    (check_model, {"class_weights": [1, 2.5, 0]}),
    (check_augment, {"policy": "trivialaugment", "hflip": True}),
    (check_callbacks, {"ema": EMA, "model_checkpoint": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint"}}),
    (check_tune, {"min_lr": 1e-6, "max_lr": 1.0, "num_training": 100, "apply": True}),
    (check_scheduler, {"warmup_fraction": 0.1, "min_factor": 0.0}),
    (check_trainer, {"max_epochs": 5, "precision": "32-true", "accumulate_grad_batches": 4, "max_time": "00:01:00:00"}),
])  # fmt: skip
def test_good_values_pass(check, values):
    problems = Problems()
    check(values, problems)
    assert problems.items == []


def test_cnn_size_arithmetic():
    assert feature_map_side(28, 3, 0, 2) == 5  # the seed CNN: 28 -> 26 -> 13 -> 11 -> 5 (64 x 5 x 5 = 1,600)
    assert feature_map_side(28, 3, 1, 3) == 3
    assert feature_map_side(8, 3, 0, 2) == 0
    assert feature_map_side(28, 3, 0, 2, convs=2) == 4  # 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4
    assert image_size_pair(28) == [28, 28] and image_size_pair([32, 48]) == [32, 48] and image_size_pair(0) is None


def test_a_timm_name_waits_for_timm_the_rest_of_the_backbone_does_not():
    """Only importing timm (and torch) tells its models, so the name is checked once the work has started
    (`cnnlab.run.machine_checks`); the config rules, which run before, let any name string through."""
    problems = Problems()
    check_model({"backbone": TIMM_TYPO}, problems)
    assert problems.items == []
