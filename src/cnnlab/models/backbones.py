"""timm backbones behind one interface: images -> pooled features, plus what the rest of cnnlab needs
(feature width, expected channels, pretrained mean/std, the stages a fine-tuning policy unfreezes)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from functools import cache
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError, Problems
from cnnlab.models.checks import check_timm_backbone
from cnnlab.models.weights import load_strict, resolve_pretrained


@cache
def _timm_names() -> tuple[str, ...]:
    import timm  # lazy: timm's import costs ~0.5 s, and only timm backbones need it

    return tuple(timm.list_models())


def check_timm_name(name: Any, problems: Problems) -> None:
    """Whether `name` is one of the installed timm's models (a tag such as `.a1_in1k` is allowed), with the closest
    ones if not. The one model rule that needs timm (and so torch) imported: `cnnlab.run.machine_checks` runs it once
    the work has started, after `cnnlab.models.checks.check_timm_backbone` checked the rest before any import."""
    if not isinstance(name, str) or not name:  # check_timm_backbone reports it
        return
    arch = name.split(".")[0]
    if arch not in _timm_names():
        close = difflib.get_close_matches(arch, _timm_names(), n=5, cutoff=0.5)
        problems.add(
            f"model.backbone.name={name!r} is not a timm model."
            + (f" Closest: {', '.join(close)}." if close else "")
            + " `python -c 'import timm; print(timm.list_models(\"*resnet*\"))'` lists them."
        )


class TimmBackbone(nn.Module):
    """A timm model without its classifier. `in_chans_mode`: how grey (1-channel) data meets an RGB network:
    "repeat" copies the channel (the pretrained first conv is untouched), "adapt" gives the network a
    1-channel first conv with the pretrained RGB kernels summed (timm's `adapt_input_conv`)."""

    def __init__(
        self,
        name: str,
        in_chans: int,
        image_size: Sequence[int],
        pretrained: bool = False,
        weights: str | None = None,
        in_chans_mode: str = "repeat",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        import timm  # lazy: see _timm_names
        from timm.models import adapt_input_conv  # lazy: see _timm_names

        problems = Problems()
        check_timm_backbone(dict(name=name, in_chans_mode=in_chans_mode, drop_path_rate=drop_path_rate), None, problems)
        check_timm_name(name, problems)
        problems.raise_if_any("invalid timm backbone")
        arch = name.split(".")[0]
        self.name = name
        self.in_chans = in_chans if in_chans_mode == "adapt" else 3
        kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        self.model = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=self.in_chans, **kwargs)
        cfg = self.model.pretrained_cfg
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        if self.in_chans != 3:  # grey statistics of an RGB normalisation
            self.mean, self.std = (sum(self.mean) / 3,) * self.in_chans, (sum(self.std) / 3,) * self.in_chans
        self.weights_source = None
        if pretrained:
            rgb = timm.create_model(arch, pretrained=False, **kwargs).state_dict()
            state, self.weights_source = resolve_pretrained(name, rgb, weights)
            first = f"{cfg['first_conv']}.weight"
            if self.in_chans != 3 and first in state:
                state = {**state, first: adapt_input_conv(self.in_chans, state[first])}
            load_strict(self.model, state, self.weights_source, ignore=_classifier_prefixes(cfg))
        self.num_features = self._infer_num_features(tuple(image_size))

    def _infer_num_features(self, image_size: tuple[int, int]) -> int:
        was_training = self.training
        try:
            with torch.no_grad():
                out = self.eval()(torch.zeros(1, self.in_chans, *image_size))
        except RuntimeError as err:
            raise CnnlabError(
                f"model.image_size={list(image_size)} is too small for {self.name} ({err}). "
                "Use a larger model.image_size (64 or more for most ImageNet backbones)."
            ) from err
        finally:
            self.train(was_training)
        return int(out.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def stages(self) -> list[list[str]]:
        """Parameter names per stage, input side first (timm's coarse `group_matcher`)."""
        from timm.models import group_parameters  # lazy: see _timm_names

        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [[f"model.{n}" for n in names] for _, names in sorted(groups.items())]


def _classifier_prefixes(pretrained_cfg: dict) -> tuple[str, ...]:
    classifier = pretrained_cfg.get("classifier", "classifier")
    names = classifier if isinstance(classifier, list | tuple) else [classifier]
    return tuple(f"{n}." for n in names)
