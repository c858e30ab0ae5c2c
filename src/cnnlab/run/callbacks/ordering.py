"""The order Lightning calls the callbacks in, which decides what a checkpoint saved at a step's end holds."""

from __future__ import annotations

import lightning as L

from cnnlab.run.callbacks.resumable import Resumable


def in_saving_order(callbacks: list[L.Callback]) -> list[L.Callback]:
    """`Resumable` last: Lightning calls callbacks in list order, and the checkpoint it saves at a step's end must hold
    what the other callbacks' step-end hooks did to that step - the EMA's update above all (saved before it, a resumed
    run would miss one update and end with other weights)."""
    return [c for c in callbacks if not isinstance(c, Resumable)] + [c for c in callbacks if isinstance(c, Resumable)]
