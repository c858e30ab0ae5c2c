"""Transfer learning: what trains when, at which LR, and how BatchNorm behaves.

Each name is imported on first use: `cnnlab <verb>` checks `transfer.*` with `cnnlab.transfer.config`, which must not
import the policy (torch).
"""

from cnnlab.utils.lazy import lazy_exports

# Each public name -> the module that defines it.
EXPORTS = {"TransferConfig": "cnnlab.transfer.config", "TransferPolicy": "cnnlab.transfer.policy"}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
