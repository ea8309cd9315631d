"""The studies run by ``samplerlab reproduce`` (one module per study, registered by name)."""
from __future__ import annotations

import importlib

from .base import STUDIES, Claim, Context, Study, StudyResult, register_study

__all__ = ["STUDIES", "Claim", "Context", "Study", "StudyResult", "register_study", "load_studies"]

# study modules, in the order they run and appear in REPORT.md
STUDY_MODULES = (
    "sign_cancellation",
    "lagrange_order",
    "provable_acceleration",
    "res_order_conditions",
    "work_precision",
    "amed",
    "high_dimension",
)


def load_studies():
    """Import every study module (each registers itself); returns ``STUDIES``."""
    for mod in STUDY_MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    return STUDIES
