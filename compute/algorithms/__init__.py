"""Federated algorithms, one module each, registered by name (see ``base.REGISTRY``)."""

from compute.algorithms import hetero_lr, hetero_lr_score, homo_lr, psi, psi_align, stats, value_preview  # noqa: F401  (register themselves)
from compute.algorithms.base import REGISTRY, get_algorithm

__all__ = ["REGISTRY", "get_algorithm"]
