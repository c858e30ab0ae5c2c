"""Where configs come from and how they are composed: cnnlab's own (package data, `cnnlab.conf`) and the user's.

The user's config directories - each of `$CNNLAB_CONFIG_PATH` (separated like PATH), then `./conf` of the working
directory - come first in Hydra's search path (the `hydra_plugins.cnnlab_searchpath` plugin puts them there), so a
user's `conf/experiment/my_run.yaml` joins our groups and a file named like one of ours replaces ours.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnlab.errors import find_user_error
from cnnlab.utils.rundir import register_resolvers

CONF_PACKAGE = "cnnlab.conf"
CONF_PATH = f"pkg://{CONF_PACKAGE}"  # how Hydra names cnnlab's configs in its search path
USER_CONF_ENV = "CNNLAB_CONFIG_PATH"


def conf_dir() -> Path:
    """cnnlab's own config directory, wherever the package is installed (a wheel, an editable checkout)."""
    return Path(str(importlib.resources.files(CONF_PACKAGE)))


def user_config_dirs(cwd: str | Path | None = None) -> list[Path]:
    """The user's config directories, in search order: `$CNNLAB_CONFIG_PATH`, then `<cwd>/conf` if it exists."""
    ours = conf_dir().resolve()
    listed = [Path(p).expanduser() for p in os.environ.get(USER_CONF_ENV, "").split(os.pathsep) if p]
    local = Path(cwd or os.getcwd()) / "conf"
    found = [*listed, local] if local.is_dir() else listed
    unique = {p.resolve(): p for p in found if p.resolve() != ours}
    return list(unique)


class CnnlabSearchPathPlugin(SearchPathPlugin):
    """Puts the user's config directories just ahead of cnnlab's own, for cnnlab's configs only (other Hydra apps
    are left alone). Hydra discovers it through `hydra_plugins.cnnlab_searchpath` in an installed wheel;
    `use_user_configs` registers it too, because an editable install hides that namespace from Hydra's scan."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(element.path == CONF_PATH for element in search_path.get_path()):
            return
        for directory in user_config_dirs():
            search_path.prepend(provider="cnnlab-user", path=f"file://{directory.resolve()}",
                                anchor=SearchPathQuery(provider=None, path=CONF_PATH))  # fmt: skip


def use_user_configs() -> None:
    """Before composing: the user's config dirs join the search path and their projects become importable."""
    Plugins.instance().register(CnnlabSearchPathPlugin)
    make_user_projects_importable()


def make_user_projects_importable() -> None:
    """Each user config dir's parent (the user's project) joins the end of `sys.path`, as `python -m` would add
    the working directory: `_target_: my_project.nets.TinyNet` then imports without an install. Appended, so an
    installed package is never shadowed by a file in a project."""
    for directory in user_config_dirs():
        project = str(directory.resolve().parent)
        if project not in sys.path:
            sys.path.append(project)


def build(config: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, except that a CnnlabError raised inside reaches the caller as itself (Hydra wraps
    it in an InstantiationException whose message repeats the call)."""
    try:
        return instantiate(config, **kwargs)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        raise user_error from None


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's own config as plain, resolved data; Hydra's node (present when composed from Python) is left out."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }


@contextlib.contextmanager
def cnnlab_configs() -> Iterator[None]:
    """Hydra's compose API on cnnlab's configs, the user's config dirs and cnnlab's resolvers included; Hydra's global
    state is cleared before and after, so one composition never sees another's."""
    register_resolvers()
    use_user_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONF_PACKAGE, version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()


def compose_config(
    overrides: list[str] | tuple[str, ...] = (),
    output_dir: str | Path | None = None,
    root_dir: str | Path | None = None,
    config_name: str = "train",
) -> DictConfig:
    """conf/<config_name>.yaml composed with `overrides` as the CLI would (the user's config dirs included), for
    Python callers (notebooks, the study, benchmarks, tests): the run writes to `output_dir` (a fresh temp dir if
    None), paths are relative to `root_dir` (default: the current directory, like the CLI)."""
    with cnnlab_configs():
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)  # ${hydra:...} interpolations resolve as in a CLI run
    output_dir = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="cnnlab-run-"))
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        if root_dir is not None:
            cfg.paths.root_dir = str(root_dir)
        cfg.paths.output_dir = str(output_dir)
    return cfg


def compose_for_check(config_name: str, overrides: list[str]) -> DictConfig:
    """conf/<config_name>.yaml composed with `overrides` to be checked, not run: nothing is created (the run dir's
    `${unique_dir:}` is never resolved), and `paths.output_dir` stands for the run dir under `paths.log_dir`."""
    with cnnlab_configs():
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = "${paths.log_dir}"
    return cfg


def group_options(group: str) -> list[str]:
    """The options of a config group (`model`: cnn, resnet18, ...), the user's own config dirs included."""
    with cnnlab_configs():
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def dotted_keys(node: DictConfig) -> list[str]:
    """Every leaf key below `node`, dotted (`backbone.widths`); a list is a leaf. Nothing is resolved."""
    found = []
    for key in node:
        child = node._get_node(key)
        found += [f"{key}.{sub}" for sub in dotted_keys(child)] if OmegaConf.is_dict(child) else [str(key)]
    return found


def config_file(config: str) -> Path | None:
    """The YAML file of `config` (`train`, `model/cnn`) a user would open: their own config dirs first."""
    for directory in [*user_config_dirs(), conf_dir()]:
        path = directory / f"{config}.yaml"
        if path.is_file():
            return path
    return None
