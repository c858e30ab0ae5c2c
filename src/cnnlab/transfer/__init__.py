"""Transfer learning: what trains when, at which LR, and how BatchNorm behaves."""

from cnnlab.transfer.policy import TransferPolicy

__all__ = ["TransferPolicy"]
