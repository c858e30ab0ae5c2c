"""Every option of every config group composes, and the objects it names can be built."""

import hydra
import pytest

from cnnlab.utils.config import conf_dir, resolved_config

CONF_DIR = conf_dir()
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__"))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options():
    assert {"data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths",
            "experiment", "debug"} <= set(GROUPS)  # fmt: skip
    assert all(options(g) for g in GROUPS)


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_resolves(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    resolved = resolved_config(cfg)
    assert resolved["data"]["_target_"].startswith("cnnlab.data.")
    if group in ("callbacks", "logger"):
        for node in cfg[group].values():
            hydra.utils.instantiate(node)
    if group == "optimizer":
        import torch

        opt = hydra.utils.instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
        assert opt.param_groups[0]["lr"] > 0


def test_no_class_count_in_any_config():
    for path in CONF_DIR.rglob("*.yaml"):
        text = path.read_text()
        assert "num_classes" not in text, f"{path} repeats what the data knows"
