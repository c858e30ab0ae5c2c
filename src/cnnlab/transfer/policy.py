"""One policy for scratch training, frozen feature extraction and fine-tuning.

The optimizer gets one param group per backbone stage plus one for the head, all registered up front.
Freezing is an LR gate (x0) on those groups plus `requires_grad=False` (so no gradient is even computed)
and BatchNorm in eval mode (so running statistics never move). Nothing is rebuilt mid-run, so LR
schedulers, checkpoints / resume and DDP see the same optimizer throughout. Under DDP, parameters keep
`requires_grad` (DDP fixes its gradient buckets at start) and the gate alone holds frozen stages still.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.transfer.config import TransferConfig

HEAD = "head"
NO_DECAY = "/no_decay"  # the suffix of a group whose parameters get no weight decay


class TransferPolicy:
    """Decides, per epoch, which backbone stages train, at which LR, and which BatchNorms stay in eval."""

    def __init__(self, config: TransferConfig, backbone: nn.Module, head: nn.Module) -> None:
        self.config = config
        self.stages = _stages(backbone)
        self.stage_of_module = _bn_stage_index(backbone, self.stages)
        self.head = head
        if config.trainable_stages is not None and config.trainable_stages > len(self.stages):
            raise CnnlabError(
                f"transfer.trainable_stages={config.trainable_stages} but the backbone has {len(self.stages)} stages."
            )

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def group_name(self, stage: int) -> str:
        return f"backbone.stage{stage}"

    def lr_scale(self, stage: int) -> float:
        """Backbone stage LR relative to the head's: discriminative, optionally decaying towards the input."""
        scale = self.config.backbone_lr_scale
        if self.config.layer_decay is not None:
            scale *= self.config.layer_decay ** (self.num_stages - 1 - stage)
        return scale

    def param_groups(self, backbone: nn.Module, base_lr: float, decay_norm_and_bias: bool = True
                     ) -> list[dict[str, Any]]:  # fmt: skip
        """One group per stage plus the head, each at its LR; with `decay_norm_and_bias=False` each is split in two,
        the second (`<name>/no_decay`) holding biases, norm weights and other 1-D parameters at weight decay 0."""
        params = dict(backbone.named_parameters())
        stage_groups = [(self.group_name(i), [(n, params[n]) for n in names], base_lr * self.lr_scale(i))
                        for i, names in enumerate(self.stages)]  # fmt: skip
        stage_groups.append((HEAD, list(self.head.named_parameters()), base_lr))
        skip = set() if decay_norm_and_bias else no_decay_names(backbone)
        groups = []
        for name, named, lr in stage_groups:
            if decay_norm_and_bias:
                groups.append({"name": name, "params": [p for _, p in named], "lr": lr})
                continue
            decayed = [p for n, p in named if not _exempt_from_decay(n, p, skip)]
            exempt = [p for n, p in named if _exempt_from_decay(n, p, skip)]
            groups.append({"name": name, "params": decayed, "lr": lr})
            groups.append({"name": f"{name}{NO_DECAY}", "params": exempt, "lr": lr, "weight_decay": 0.0})
        return [g for g in groups if g["params"]]

    def stage_trains(self, stage: int, epoch: int) -> bool:
        mode = self.config.mode
        if mode == "scratch":
            return True
        if mode == "frozen" or epoch < self.config.freeze_epochs:
            return False
        keep = self.config.trainable_stages
        return keep is None or stage >= self.num_stages - keep

    def gate(self, group: str, epoch: int) -> float:
        """LR multiplier of a param group at `epoch`: 0 while its stage is frozen."""
        group = group.removesuffix(NO_DECAY)
        if group == HEAD:
            return 1.0
        return 1.0 if self.stage_trains(int(group.removeprefix("backbone.stage")), epoch) else 0.0

    def stage_ever_trains(self, stage: int) -> bool:
        return any(self.stage_trains(stage, epoch) for epoch in (0, self.config.freeze_epochs))

    def apply_requires_grad(self, backbone: nn.Module, epoch: int | None) -> None:
        """requires_grad per stage at `epoch`; with epoch=None, for every stage that will ever train (DDP)."""
        params = dict(backbone.named_parameters())
        for i, names in enumerate(self.stages):
            trains = self.stage_ever_trains(i) if epoch is None else self.stage_trains(i, epoch)
            for name in names:
                params[name].requires_grad_(trains)

    def bn_in_eval(self, module_name: str, epoch: int) -> bool:
        """BatchNorm of a frozen stage (or every one, with freeze_bn) stays in eval mode."""
        if self.config.mode == "scratch":
            return False
        return self.config.freeze_bn or not self.stage_trains(self.stage_of_module[module_name], epoch)

    def set_bn_modes(self, backbone: nn.Module, epoch: int) -> None:
        for name, module in backbone.named_modules():
            if name in self.stage_of_module and self.bn_in_eval(name, epoch):
                module.eval()


def no_decay_names(backbone: nn.Module) -> set[str]:
    """Parameters a timm model asks to keep out of weight decay (position embeddings, class tokens: its
    `no_weight_decay()`), as backbone parameter names."""
    model = getattr(backbone, "model", None)
    if model is None or not hasattr(model, "no_weight_decay"):
        return set()
    return {f"model.{name}" for name in model.no_weight_decay()}


def _exempt_from_decay(name: str, param: nn.Parameter, named_exempt: set[str]) -> bool:
    """timm's rule (`timm.optim.param_groups_weight_decay`): biases, norm weights and every other 1-D parameter,
    plus the model's own list. Decaying them only pulls the norms' scales to 0 and helps nothing."""
    return param.ndim <= 1 or name.endswith(".bias") or name in named_exempt


def _stages(backbone: nn.Module) -> list[list[str]]:
    stages = backbone.stages() if hasattr(backbone, "stages") else [[n for n, _ in backbone.named_parameters()]]
    return [s for s in stages if s]


def _bn_stage_index(backbone: nn.Module, stages: list[list[str]]) -> dict[str, int]:
    """Each BatchNorm-like module (anything with running stats) -> the stage its parameters belong to."""
    stage_of_param = {name: i for i, names in enumerate(stages) for name in names}
    index = {}
    for name, module in backbone.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            owners = [stage_of_param[f"{name}.{p}"] for p, _ in module.named_parameters(recurse=False)
                      if f"{name}.{p}" in stage_of_param]  # fmt: skip
            index[name] = owners[0] if owners else len(stages) - 1
    return index
