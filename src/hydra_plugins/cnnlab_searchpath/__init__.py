"""Hydra finds its plugins in this namespace: cnnlab's search-path plugin (see cnnlab.utils.config)."""

from cnnlab.utils.config import CnnlabSearchPathPlugin

__all__ = ["CnnlabSearchPathPlugin"]
