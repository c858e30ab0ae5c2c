"""TransferPolicy on a toy 3-stage backbone: which parameters train in each mode and epoch, the LR gates and
scales, BatchNorm modes, freeze_epochs, trainable_stages, and the checks of TransferConfig."""

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError, Problems
from cnnlab.transfer.policy import HEAD, TransferConfig, TransferPolicy


class ThreeStages(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.s0, self.s1, self.s2 = (nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)) for _ in range(3))

    def stages(self) -> list[list[str]]:
        return [[f"s{i}.{name}" for name, _ in getattr(self, f"s{i}").named_parameters()] for i in range(3)]


def policy(**config) -> tuple[TransferPolicy, ThreeStages]:
    backbone = ThreeStages()
    return TransferPolicy(TransferConfig(**config), backbone, nn.Linear(2, 3)), backbone


def trains(backbone: ThreeStages) -> list[bool]:
    """Per stage: do its parameters require grad?"""
    return [all(p.requires_grad for p in getattr(backbone, f"s{i}").parameters()) for i in range(3)]


def bn_eval(backbone: ThreeStages) -> list[bool]:
    return [not getattr(backbone, f"s{i}")[1].training for i in range(3)]


def at_epoch(p: TransferPolicy, backbone: ThreeStages, epoch: int) -> tuple[list[bool], list[float], list[bool]]:
    """What trains, each stage's LR gate, and which BatchNorms are held in eval mode, at `epoch`."""
    backbone.train()
    p.apply_requires_grad(backbone, epoch)
    p.set_bn_modes(backbone, epoch)
    gates = [p.gate(p.group_name(i), epoch) for i in range(3)]
    return trains(backbone), gates, bn_eval(backbone)


def test_scratch_trains_everything_with_batchnorm_in_train_mode():
    p, backbone = policy(mode="scratch")
    for epoch in (0, 5):
        assert at_epoch(p, backbone, epoch) == ([True] * 3, [1.0] * 3, [False] * 3)
    assert p.gate(HEAD, 0) == 1.0


def test_frozen_trains_nothing_of_the_backbone_ever_and_holds_its_batchnorm():
    p, backbone = policy(mode="frozen")
    for epoch in (0, 7):
        assert at_epoch(p, backbone, epoch) == ([False] * 3, [0.0] * 3, [True] * 3)
    assert p.gate(HEAD, 7) == 1.0


def test_finetune_freeze_epochs_trains_the_head_first_then_everything():
    p, backbone = policy(mode="finetune", freeze_epochs=2)
    assert at_epoch(p, backbone, 0) == ([False] * 3, [0.0] * 3, [True] * 3)
    assert at_epoch(p, backbone, 1) == ([False] * 3, [0.0] * 3, [True] * 3)
    assert at_epoch(p, backbone, 2) == ([True] * 3, [1.0] * 3, [False] * 3)


def test_trainable_stages_unfreezes_only_the_last_ones():
    p, backbone = policy(mode="finetune", trainable_stages=1, freeze_epochs=1)
    assert at_epoch(p, backbone, 0) == ([False] * 3, [0.0] * 3, [True] * 3)
    assert at_epoch(p, backbone, 1) == ([False, False, True], [0.0, 0.0, 1.0], [True, True, False])


def test_under_ddp_every_stage_that_will_ever_train_requires_grad_from_the_start():
    p, backbone = policy(mode="finetune", trainable_stages=2, freeze_epochs=3)
    p.apply_requires_grad(backbone, epoch=None)
    assert trains(backbone) == [False, True, True]
    assert [p.gate(p.group_name(i), 0) for i in range(3)] == [0.0, 0.0, 0.0]  # the gate alone holds them still


def test_freeze_bn_keeps_every_batchnorm_in_eval_while_the_weights_train():
    p, backbone = policy(mode="finetune", freeze_bn=True)
    assert at_epoch(p, backbone, 0) == ([True] * 3, [1.0] * 3, [True] * 3)


def test_discriminative_lrs_with_layer_decay_towards_the_input():
    p, backbone = policy(mode="finetune", backbone_lr_scale=0.1, layer_decay=0.5)
    groups = p.param_groups(backbone, base_lr=1.0)
    assert [g["name"] for g in groups] == ["backbone.stage0", "backbone.stage1", "backbone.stage2", HEAD]
    assert [g["lr"] for g in groups] == pytest.approx([0.025, 0.05, 0.1, 1.0])
    assert sum(len(g["params"]) for g in groups) == len(list(backbone.parameters())) + 2
    torch.optim.SGD(groups)  # every parameter in exactly one group


def test_each_batchnorm_belongs_to_its_stage():
    p, _ = policy(mode="finetune")
    assert p.stage_of_module == {"s0.1": 0, "s1.1": 1, "s2.1": 2}


def test_more_trainable_stages_than_the_backbone_has_is_an_error():
    with pytest.raises(CnnlabError, match=r"transfer.trainable_stages=4 but the backbone has 3 stages"):
        policy(mode="finetune", trainable_stages=4)


@pytest.mark.parametrize(("values", "message"), [
    ({"mode": "freeze"}, "transfer.mode='freeze': one of scratch, frozen, finetune"),
    ({"layer_decay": 0}, r"transfer.layer_decay=0: null or a number in \(0, 1\]"),
    ({"backbone_lr_scale": -1}, "transfer.backbone_lr_scale=-1: a number >= 0"),
    ({"freeze_epochs": 1.5}, "transfer.freeze_epochs=1.5: an integer >= 0"),
    ({"trainable_stages": -1}, r"transfer.trainable_stages=-1: null or an integer >= 0 \(null = all\)"),
    ({"freeze_bn": "yes"}, "transfer.freeze_bn='yes': true or false"),
    ({"unfreeze": 2}, r"unknown transfer keys \['unfreeze'\]"),
])  # fmt: skip
def test_transfer_config_checks(values, message):
    problems = Problems()
    TransferConfig.check(values, problems)
    assert len(problems.items) == 1 and __import__("re").search(message, problems.items[0]), problems.items
    with pytest.raises(CnnlabError, match="invalid transfer configuration"):
        TransferConfig.from_dict(values)
