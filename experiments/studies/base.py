"""What a study is: a function of a :class:`Context` returning a :class:`StudyResult`.

A study computes tidy data on exact targets, writes it (CSV + a JSON of its settings) and draws
its figures into ``ctx.out``, and states the paper claims it checks as :class:`Claim` objects,
each with the measured number and a verdict. ``samplerlab reproduce`` runs the registered studies
and assembles REPORT.md from their claims.

Verdicts follow written rules (:data:`VERDICT_RULES`, printed in REPORT.md's header), applied by
the pure functions :func:`order_verdict`, :func:`fraction_verdict`, :func:`separation_verdict` and
:func:`check_verdict`, never typed by hand. A row is a paper ``claim`` or an internal ``check``
(a reconstruction's rule, a cost formula, a cross-check of two measurements, an identity);
the report tallies the two separately.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import platform
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from samplerlab.experiments.executors import SerialExecutor, map_cells
from samplerlab.experiments.io import atomic_write_bytes

__all__ = ["Context", "Claim", "StudyResult", "Study", "STUDIES", "register_study", "VERDICTS",
           "CLAIM_VERDICTS", "CHECK_VERDICTS", "KINDS", "VERDICT_RULES", "ORDER_TOLERANCE",
           "order_verdict", "fraction_verdict", "separation_verdict", "check_verdict",
           "interval_of_difference", "worst_verdict", "draw_figures"]

#: relative tolerance of an order/rate claim: the point estimate within 5 % of the claimed value
ORDER_TOLERANCE = 0.05
#: an order counts as "near" (pre-asymptotic) within this absolute distance of the claim
ORDER_NEAR = 0.5

CLAIM_VERDICTS = ("reproduced", "pre-asymptotic", "partly", "no separation", "not reproduced",
                  "not testable here", "cannot fail here", "not measured")
CHECK_VERDICTS = ("passed", "pre-asymptotic", "partly", "failed", "not measured")
VERDICTS = tuple(dict.fromkeys(CLAIM_VERDICTS + CHECK_VERDICTS))
KINDS = ("claim", "check")

#: the rule behind each verdict (REPORT.md's header prints these)
VERDICT_RULES = {
    "reproduced": "an order/rate claim: the fitted slope's 95 % interval contains the claimed "
                  "value, or the slope is within 5 % of it (relative); a comparative claim: the "
                  "claimed direction holds in every measured case.",
    "pre-asymptotic": "an order/rate claim whose 95 % interval excludes the claimed value and "
                      "whose slope is more than 5 % but at most 0.5 away from it (the run has not "
                      "reached the asymptotic order in the measured range).",
    "partly": "a comparative claim that holds in at least half, but not all, of the measured "
              "cases (the count is in the row).",
    "no separation": "the claimed effect (a gain in exponent, a difference) is smaller than the "
                     "stated threshold or than its own uncertainty interval.",
    "not reproduced": "an order more than 0.5 from the claim, or a comparative claim that holds "
                      "in fewer than half of the measured cases.",
    "not testable here": "the claimed quantity (FID on image models, a worst-case bound) cannot "
                         "be measured on exact mixtures; the row gives the nearest measurable "
                         "number without a verdict on the claim.",
    "cannot fail here": "the measurement is true by construction in this setup (e.g. a quantity "
                        "confined by a hyper-parameter); the number is stated, nothing is "
                        "reproduced.",
    "not measured": "no measurement this session (the row says why).",
}
#: checks (kind "check") use passed / failed for the same rules as reproduced / not reproduced
_CHECK_OF = {"reproduced": "passed", "not reproduced": "failed", "pre-asymptotic": "pre-asymptotic",
             "partly": "partly", "not measured": "not measured"}

#: verdicts from best to worst, for :func:`worst_verdict`
_ORDER = ("reproduced", "passed", "cannot fail here", "not testable here", "pre-asymptotic",
          "partly", "no separation", "not measured", "not reproduced", "failed")


def order_verdict(estimate, expected: float, *, tol: float = ORDER_TOLERANCE,
                  near: float = ORDER_NEAR) -> str:
    """Verdict of an order/rate claim (:data:`VERDICT_RULES`).

    ``estimate`` is an :class:`~samplerlab.experiments.order.OrderEstimate`, a tuple
    ``(order, ci_low, ci_high)``, or ``None`` (no fit: "not measured"). Reproduced: the interval
    contains ``expected`` or ``|order - expected| <= tol * |expected|``; pre-asymptotic: within
    ``near``; else not reproduced.
    """
    if estimate is None:
        return "not measured"
    if isinstance(estimate, tuple):
        order, lo, hi = (float(v) for v in estimate)
    else:
        order, lo, hi = float(estimate.order), float(estimate.ci_low), float(estimate.ci_high)
    if not all(map(_finite, (order, lo, hi, expected))):
        raise ValueError(f"order_verdict needs finite numbers, got order={order}, "
                         f"interval=({lo}, {hi}), expected={expected}")
    if lo <= expected <= hi or abs(order - expected) <= tol * abs(expected):
        return "reproduced"
    if abs(order - expected) <= near:
        return "pre-asymptotic"
    return "not reproduced"


def fraction_verdict(successes: int, total: int) -> str:
    """Verdict of a comparative claim that holds in ``successes`` of ``total`` measured cases:
    all -> reproduced, at least half -> partly, fewer -> not reproduced; no case -> not
    measured."""
    if not isinstance(successes, numbers.Integral) or not isinstance(total, numbers.Integral):
        raise TypeError(f"successes and total must be int, got {type(successes).__name__}, "
                        f"{type(total).__name__}")
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total, got {successes}/{total}")
    successes, total = int(successes), int(total)
    if total == 0:
        return "not measured"
    if successes == total:
        return "reproduced"
    if 2 * successes >= total:
        return "partly"
    return "not reproduced"


def separation_verdict(effect: float, threshold: float, interval=None) -> Optional[str]:
    """"no separation" if the effect is below ``threshold`` in size or its ``interval`` (lo, hi)
    contains 0; otherwise ``None`` (the effect is resolved: judge it by another rule)."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not _finite(effect):
        raise ValueError(f"effect must be finite, got {effect}")
    if abs(effect) < threshold:
        return "no separation"
    if interval is not None and interval[0] <= 0.0 <= interval[1]:
        return "no separation"
    return None


def check_verdict(verdict_or_ok) -> str:
    """A check's verdict: ``True``/``False`` -> passed/failed, or a claim verdict mapped to the
    check vocabulary (reproduced -> passed, not reproduced -> failed)."""
    if isinstance(verdict_or_ok, bool):
        return "passed" if verdict_or_ok else "failed"
    if verdict_or_ok not in _CHECK_OF:
        raise ValueError(f"no check verdict for {verdict_or_ok!r}; expected a bool or one of "
                         f"{sorted(_CHECK_OF)}")
    return _CHECK_OF[verdict_or_ok]


def worst_verdict(verdicts) -> str:
    """The worst of several verdicts of one row (order: :data:`_ORDER`)."""
    verdicts = list(verdicts)
    if not verdicts:
        return "not measured"
    unknown = [v for v in verdicts if v not in _ORDER]
    if unknown:
        raise ValueError(f"unknown verdict(s) {unknown}")
    return max(verdicts, key=_ORDER.index)


def interval_of_difference(a, b):
    """Conservative interval of ``a - b`` for two (order, lo, hi) triples: (lo_a - hi_b,
    hi_a - lo_b)."""
    return (a[1] - b[2], a[2] - b[1])


def _finite(v) -> bool:
    return isinstance(v, numbers.Real) and math.isfinite(float(v))


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
    """One paper claim (``kind="claim"``) or internal check (``kind="check"``), its measured
    counterpart and a verdict from :data:`VERDICT_RULES`."""

    study: str
    paper: str
    statement: str
    paper_value: str
    measured: str
    verdict: str
    reason: str
    kind: str = "claim"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        allowed = CLAIM_VERDICTS if self.kind == "claim" else CHECK_VERDICTS
        if self.verdict not in allowed:
            raise ValueError(f"verdict of a {self.kind} must be one of {allowed}, "
                             f"got {self.verdict!r}")


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


def _figure_cell(fn: Callable, ctx: Context, args: tuple):
    """Draw one figure in a fresh temporary folder: ``fn(ctx', *args)`` with ``ctx'.out`` that
    folder; returns ``fn``'s value and the bytes of every file it wrote there (name -> bytes),
    so the figure can be drawn in another process (or on another machine) than the one that
    keeps it."""
    with tempfile.TemporaryDirectory(prefix="samplerlab-figure-") as tmp:
        value = fn(dataclasses.replace(ctx, out=Path(tmp)), *args)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())
                 if p.is_file() and not p.name.startswith(".")}
    return value, files


def draw_figures(ctx: Context, figures: Sequence[Tuple[Callable, tuple]]) -> list:
    """Draw a study's figures as cells of the current run (in parallel under ``reproduce
    --jobs/--dask``) and write their files into ``ctx.out``; returns the figure functions'
    values in order.

    ``figures``: ``(fn, args)`` pairs, each ``fn(ctx, *args)`` a module-level function that
    draws one figure into ``ctx.out`` (experiments.io.save_figure) and returns its
    ``{"path", "caption"}``. Files are written by this process, atomically, after every figure
    is drawn, so a failing figure leaves none of them behind. Functions that cannot be pickled
    by name (lambdas, nested functions) are drawn here, serially.
    """
    figures = [(fn, tuple(args)) for fn, args in figures]
    for fn, _ in figures:
        if not callable(fn):
            raise TypeError(f"figures must be (function, args) pairs, got {fn!r:.60}")
    portable = all("<" not in getattr(fn, "__qualname__", "<") for fn, _ in figures)
    drawn = map_cells(_figure_cell, [(f"figure {getattr(fn, '__name__', fn)}", (fn, ctx, args))
                                     for fn, args in figures],
                      None if portable else SerialExecutor())
    for _, files in drawn:
        for name, data in files.items():
            atomic_write_bytes(ctx.out / name, data)
    return [value for value, _ in drawn]
