"""`cnnlab <verb>` answers a bad value before any heavy library is imported: the command modules and the config
checks import no torch, and each constant the checks hold for a torch module (or for a library they must not import)
is the one that module, or the installed library, uses."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from dataclasses import fields

import lightning as L
import pytest
from torchvision.transforms import v2

import cnnlab.data
import cnnlab.models
import cnnlab.transfer
from cnnlab.data.augment import Augment
from cnnlab.data.augment_config import AUGMENT_KEYS, NUM_BINS, POLICIES
from cnnlab.data.policies import SPACES
from cnnlab.inspection import cams
from cnnlab.models.backbones import TimmBackbone
from cnnlab.models.checks import SEED_CNN, TIMM_BACKBONE, TTA_MODES
from cnnlab.models.cnn import SeedCNN
from cnnlab.models.tta import FORWARDS
from cnnlab.run.checks import CAM_METHODS, TRAINER_KEYS

HEAVY = ("torch", "lightning", "timm", "torchvision", "PIL", "cv2", "litdata", "datasets")


def test_the_command_its_verbs_and_their_checks_import_no_heavy_library():
    code = (
        "import importlib, sys, cnnlab.cli, cnnlab.run.checks\n"
        "for name in cnnlab.cli.VERB_NAMES:\n"
        "    importlib.import_module(f'cnnlab.commands.{name}')\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_the_trainer_keys_are_the_installed_lightning_trainer_s_arguments():
    arguments = tuple(name for name in inspect.signature(L.Trainer.__init__).parameters if name != "self")
    assert arguments == TRAINER_KEYS


def test_the_augment_keys_are_the_fields_of_the_augmentation_that_runs():
    assert tuple(f.name for f in fields(Augment)) == AUGMENT_KEYS


def test_the_policies_and_magnitude_bins_are_torchvision_s():
    assert tuple(SPACES) == POLICIES
    assert NUM_BINS == v2.RandAugment().num_magnitude_bins == v2.TrivialAugmentWide().num_magnitude_bins


def test_the_tta_modes_are_those_tta_runs():
    assert tuple(FORWARDS) == TTA_MODES


def test_the_cam_methods_checked_are_those_explain_runs():
    assert tuple(cams.CAM_METHODS) == CAM_METHODS


def test_the_backbone_targets_name_the_backbone_classes():
    assert [f"{cls.__module__}.{cls.__qualname__}" for cls in (SeedCNN, TimmBackbone)] == [SEED_CNN, TIMM_BACKBONE]


@pytest.mark.parametrize("package", [cnnlab.data, cnnlab.models, cnnlab.transfer], ids=lambda p: p.__name__)
def test_each_public_name_of_a_lazy_package_is_the_object_its_module_defines(package):
    for name, module in package.EXPORTS.items():
        assert getattr(package, name) is getattr(importlib.import_module(module), name)
    assert sorted(package.EXPORTS) == package.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        package.Nothing  # noqa: B018 - the look-up is the test
