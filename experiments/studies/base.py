"""What a study is: a function of a :class:`Context` returning a :class:`StudyResult`.

A study computes tidy data on exact targets, writes it (CSV + a JSON of its settings) and draws
its figures into ``ctx.out``, and states the paper claims it checks as :class:`Claim` objects,
each with the measured number and a verdict. ``samplerlab reproduce`` runs the registered studies
and assembles REPORT.md from their claims.
"""
from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

__all__ = ["Context", "Claim", "StudyResult", "Study", "STUDIES", "register_study", "VERDICTS"]

VERDICTS = ("reproduced", "partly", "not reproduced", "not testable here")


@dataclasses.dataclass(frozen=True)
class Context:
    """Settings shared by every study of one ``reproduce`` run."""

    out: Path
    quick: bool = False
    device: str = "cpu"
    dtype: torch.dtype = torch.float64
    seed: int = 0
    progress: bool = False

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh generator seeded with ``seed + offset`` (on the run's device)."""
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed + offset)
        return g

    def versions(self) -> Dict[str, str]:
        import matplotlib
        import numpy
        import scipy
        import sympy
        return {"python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__, "scipy": scipy.__version__,
                "sympy": sympy.__version__, "matplotlib": matplotlib.__version__}


@dataclasses.dataclass(frozen=True)
class Claim:
    """One paper claim, its measured counterpart and a verdict."""

    study: str
    paper: str
    statement: str
    paper_value: str
    measured: str
    verdict: str
    reason: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclasses.dataclass
class StudyResult:
    """What a study returns: its tidy tables (name -> rows), claims, figures and a summary."""

    name: str
    tables: Dict[str, List[dict]]
    claims: List[Claim]
    figures: List[Dict[str, str]]  # {"path": relative png path, "caption": text}
    summary: str
    extra: Dict[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    title: str
    seed_paper: str
    run: Callable[[Context], StudyResult]


STUDIES: Dict[str, Study] = {}


def register_study(name: str, title: str, seed_paper: str):
    """Decorator registering ``fn(ctx) -> StudyResult`` as a study named ``name``."""

    def deco(fn):
        if name in STUDIES:
            raise ValueError(f"study {name!r} registered twice")
        STUDIES[name] = Study(name=name, title=title, seed_paper=seed_paper, run=fn)
        return fn

    return deco
