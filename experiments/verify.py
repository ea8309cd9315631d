"""Verify samplers on *your own* denoiser: defects against a self-reference of the same model.

A trained model has no exact PF-ODE solution, but it has its own: the probability-flow ODE of
the model's denoiser ``D`` (VE/EDM, DESIGN.md),

    dx/dlambda = D(x, e^-lambda) - x,        lambda = -log sigma,                      (1)

has a unique solution from every starting point, and a sampler is a discretisation of (1). So
the discretisation error of a sampler *on that model* is its distance to an accurate solution of
(1) computed from the same ``D`` — the **self-reference** — and the measurement behind every
order claim of samplerlab (experiments/convergence.py) carries over to any black-box denoiser:

    result = verify_model(denoiser, x_start, 80.0, 0.002, ["euler", "dpmpp_2m", "res_2s"],
                          steps=[4, 8, 16, 32])
    result.orders["dpmpp_2m"]        # OrderEstimate (slope of log median defect vs log M)
    result.write("out/")             # compare.md, compare.csv, compare.png (atomic)

Two self-references (:func:`self_reference`):

* ``"dop853"``: :func:`samplerlab.experiments.reference.solve_pf_ode` with the model as the
  right-hand side (scipy's DOP853 in lambda, the whole batch as one system), solved twice, at
  ``rtol`` and at ``loose_factor * rtol``. The per-sample distance between the two solves is the
  reported reference error: it is (to first order) the error of the looser solve, hence an upper
  estimate of the error of the tighter one, which is the reference used.
* ``"richardson"``: for models too costly for an adaptive solve. A high-order sampler (default
  ``res_3s``, order p = 3) on the same grid family at M, 2M and 4M steps; two Richardson
  extrapolations ``R(M, 2M) = x_2M + (x_2M - x_M)/(2^p - 1)`` and ``R(2M, 4M)``; the reference is
  ``R(2M, 4M)`` and its error estimate the per-sample distance ``|R(2M, 4M) - R(M, 2M)|`` (again
  an upper estimate). The observed order ``log2(|x_M - x_2M| / |x_2M - x_4M|)`` (medians) is
  reported: extrapolation is only valid when it is close to p.

Either way the reference must reach ``tolerance`` (absolute, per-sample Euclidean norm over all
non-batch dimensions; default ``1e-6`` times the RMS sample norm of the reference in float64,
``1e-3`` in float32/16), checked on the 90 % quantile over samples of the error estimate (the
defect table reports medians and 90 % quantiles; the max is reported, not required) — else
:class:`ReferenceToleranceError` (a ``FloatingPointError``) is raised with the measured numbers.
The defect of sampler runs closer to the reference than
``floor_factor`` (default 10) times the reference error is not used for the order fit
(experiments/order.py's ``floor`` rule).

Every denoiser call (probe, reference, samplers) goes through :func:`checked_denoiser`: an output
that is not a tensor of ``x``'s shape, dtype and device raises ``ValueError``/``TypeError``, a
NaN or inf raises ``FloatingPointError``; the message names the sigma, the grid step (where
known), the call number and the run (sampler, M). NFE are counted by the ledger
(``solvers.NFECounter``).

Any tensor shape ``[n, ...]`` (points ``[n, d]``, images ``[n, c, h, w]``) and dtype work; use
float64 where the model allows (a float32 model's round-off is its floor). Only deterministic
samplers are accepted: a stochastic sampler does not converge pathwise to the PF-ODE.

Grid family: every sweep uses one family of grids ``grid(M)`` with fixed endpoints
``sigma_max -> sigma_min > 0`` (no final denoising step, so the slope is the sampler's order):
``grid="karras"`` (rho = 7 unless ``grid_options={"rho": ...}``), ``"lambda_uniform"``,
``"sigma_uniform"``, or a callable ``grid(M, sigma_min, sigma_max) -> sigmas`` (M + 1 levels,
decreasing). :func:`grid_from_spec` turns the ``samplerlab compare`` factory's third element into
these arguments.
"""
from __future__ import annotations

import dataclasses
import io
import math
import numbers
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from samplerlab.solvers import SOLVERS, NFECounter, grids
from samplerlab.theory.validation import check_tensor_like

from .convergence import _cases
from .io import atomic_write_bytes, write_csv
from .metrics import defect
from .order import OrderEstimationError, estimate_order
from .reference import solve_pf_ode

__all__ = ["verify_model", "self_reference", "checked_denoiser", "grid_family", "grid_from_spec",
           "steps_for_nfe", "ModelVerification", "SelfReference", "ReferenceToleranceError",
           "GRID_FAMILIES"]

#: named grid families (fixed endpoints) a verification can sweep over
GRID_FAMILIES = {"karras": grids.karras, "lambda_uniform": grids.lambda_uniform,
                 "sigma_uniform": grids.sigma_uniform}


class ReferenceToleranceError(FloatingPointError):
    """The self-reference did not reach its stated tolerance (its two estimates disagree)."""


# ------------------------------------------------------------------------------------------------
# checked denoiser calls
# ------------------------------------------------------------------------------------------------

class checked_denoiser:  # noqa: N801  (a callable wrapper, used like a function)
    """Wrap ``denoiser(x, sigma)`` so that every output is checked.

    Raises, naming the sigma, the grid step (when ``grid`` is given and sigma is one of its
    levels), the call number and ``where`` (e.g. "sampler 'res_2s', M = 8"):

    * ``TypeError`` if the output is not a tensor, or not of ``x``'s dtype or device;
    * ``ValueError`` if its shape differs from ``x``'s;
    * ``FloatingPointError`` if it holds NaN or inf.
    """

    def __init__(self, denoiser: Callable, where: str = "", grid: Optional[torch.Tensor] = None):
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable denoiser(x, sigma) -> x0_hat, got "
                            f"{type(denoiser).__name__}")
        self.denoiser = denoiser
        self.where = where
        self.grid = None if grid is None else [float(s) for s in grid]
        self.calls = 0

    def _location(self, sigma) -> str:
        s = torch.as_tensor(sigma).detach().reshape(-1)
        value = float(s[0]) if s.numel() else float("nan")
        text = f"sigma = {value:.6g}"
        if self.grid is not None:
            for n, level in enumerate(self.grid):
                if abs(level - value) <= 1e-9 * max(abs(level), 1e-300):
                    text += f" (grid level {n}, step {n} of {len(self.grid) - 1})"
                    break
        text += f", call {self.calls}"
        return text + (f", {self.where}" if self.where else "")

    def __call__(self, x: torch.Tensor, sigma):
        self.calls += 1
        out = self.denoiser(x, sigma)
        check_tensor_like(out, x, "the denoiser", self._location(sigma),
                          hint="; cast inside the denoiser, e.g. denoiser_from_diffusers(..., "
                               "model_dtype=torch.float32)")
        if not bool(torch.isfinite(out).all()):
            raise FloatingPointError(f"the denoiser returned NaN or inf "
                                     f"({self._location(sigma)})")
        return out


# ------------------------------------------------------------------------------------------------
# grids
# ------------------------------------------------------------------------------------------------

def _level(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape "
                             f"{tuple(value.shape)}")
        value = float(value.reshape(-1)[0])
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def grid_family(grid: Union[str, Callable], sigma_max: float, sigma_min: float,
                grid_options: Optional[Mapping] = None, *, dtype=torch.float64,
                device=None) -> Callable[[int], torch.Tensor]:
    """``M -> sigmas`` (M + 1 decreasing levels from ``sigma_max`` to ``sigma_min``) for a named
    family (:data:`GRID_FAMILIES`) or a callable ``grid(M, sigma_min, sigma_max)``; each grid is
    checked (length, endpoints, strictly decreasing, > 0)."""
    s_max, s_min = _level(sigma_max, "sigma_max"), _level(sigma_min, "sigma_min")
    if not s_min < s_max:
        raise ValueError(f"sigma_min must be < sigma_max, got {s_min!r} and {s_max!r}")
    opts = dict(grid_options or {})
    if isinstance(grid, str):
        if grid not in GRID_FAMILIES:
            raise ValueError(f"grid must be one of {sorted(GRID_FAMILIES)} or a callable "
                             f"grid(M, sigma_min, sigma_max), got {grid!r}")
        fn = GRID_FAMILIES[grid]

        def make(m):
            return fn(m, sigma_min=s_min, sigma_max=s_max, dtype=torch.float64, **opts)
    elif callable(grid):
        def make(m):
            return torch.as_tensor(grid(m, s_min, s_max, **opts), dtype=torch.float64)
    else:
        raise TypeError(f"grid must be a family name or a callable, got {type(grid).__name__}")

    def family(m: int) -> torch.Tensor:
        sig = make(m).detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        if sig.numel() != m + 1:
            raise ValueError(f"grid({m}) returned {sig.numel()} levels; expected {m + 1}")
        if not bool(torch.isfinite(sig).all()) or not bool((sig > 0).all()) or not bool(
                (sig[1:] < sig[:-1]).all()):
            raise ValueError(f"grid({m}) must be strictly decreasing and > 0 (the verification "
                             "ends at sigma_min > 0)")
        if abs(float(sig[0]) - s_max) > 1e-9 * s_max or abs(float(sig[-1]) - s_min) > 1e-9 * s_min:
            raise ValueError(f"grid({m}) must run from sigma_max = {s_max:g} to sigma_min = "
                             f"{s_min:g}, got {float(sig[0]):g} -> {float(sig[-1]):g}")
        sig[0], sig[-1] = s_max, s_min
        return sig.to(dtype=dtype, device=device)

    return family


def grid_from_spec(spec) -> Tuple[float, float, Union[str, Callable], dict]:
    """``(sigma_max, sigma_min, grid, grid_options)`` from a grid spec (``samplerlab compare``).

    A grid spec is either

    * a mapping ``{"sigma_max": 80.0, "sigma_min": 0.002, "grid": "karras", **options}``
      (``grid`` optional, default ``"karras"``; a name of :data:`GRID_FAMILIES` or a callable
      ``grid(M, sigma_min, sigma_max)``; the other keys are the family's options, e.g. ``rho``),
      or
    * a 1-D tensor/sequence of decreasing noise levels ``sigmas`` (> 0): its first and last level
      become ``sigma_max`` and ``sigma_min`` of a Karras (rho = 7) family — the sweep needs grids
      of every size, so only the endpoints of a given grid are used.
    """
    if isinstance(spec, Mapping):
        opts = dict(spec)
        missing = [k for k in ("sigma_max", "sigma_min") if k not in opts]
        if missing:
            raise ValueError(f"the grid spec mapping must have keys 'sigma_max' and 'sigma_min' "
                             f"(missing {missing}); got keys {sorted(opts)}")
        s_max, s_min = opts.pop("sigma_max"), opts.pop("sigma_min")
        grid = opts.pop("grid", "karras")
        return _level(s_max, "sigma_max"), _level(s_min, "sigma_min"), grid, opts
    if isinstance(spec, (torch.Tensor, np.ndarray, list, tuple)):
        try:
            sig = torch.as_tensor(spec, dtype=torch.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"a grid spec sequence must hold numbers, got {spec!r}") from exc
        if sig.numel() < 2 or not bool((sig > 0).all()) or not bool((sig[1:] < sig[:-1]).all()):
            raise ValueError("a grid spec tensor must be 1-D, strictly decreasing and > 0 "
                             f"(sigma_max ... sigma_min), got {sig.tolist()[:8]}")
        return float(sig[0]), float(sig[-1]), "karras", {}
    raise TypeError("the grid spec must be a mapping {'sigma_max', 'sigma_min', 'grid', ...} or "
                    f"a 1-D tensor of decreasing sigmas, got {type(spec).__name__}")


def steps_for_nfe(name: str, nfe: int, family: Callable[[int], torch.Tensor],
                  options: Optional[Mapping] = None, max_steps: int = 10000) -> Optional[int]:
    """The largest number of steps M whose NFE (``SOLVERS[name].nfe``) is ``<= nfe`` (None if not
    even one step fits)."""
    spec = SOLVERS[name]
    opts = _method_options(dict(options or {}))
    best = None
    for m in range(1, max_steps + 1):
        cost = spec.nfe(family(m), **opts)
        if cost is None:
            raise ValueError(f"sampler {name!r} has no fixed NFE; give steps instead of nfe")
        if cost > nfe:
            break
        best = m
    return best


# ------------------------------------------------------------------------------------------------
# the self-reference
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class SelfReference:
    """A self-reference endpoint and its estimated error.

    Attributes
    ----------
    x : ``[n, ...]`` the reference endpoint at ``sigma_min`` (x's dtype/device).
    error : per-sample error estimate ``[n]`` (distance between the two estimates, see module
        docstring); ``error_median``, ``error_max`` summarise it.
    method : "dop853" or "richardson"; ``settings`` its tolerances / solver and steps.
    nfe : denoiser calls of both estimates together (ledger).
    tolerance : the stated tolerance it met; ``observed_order`` (Richardson only).
    """

    x: torch.Tensor
    error: torch.Tensor
    method: str
    settings: Dict
    nfe: int
    tolerance: float
    observed_order: Optional[float] = None

    @property
    def error_median(self) -> float:
        return float(self.error.median())

    @property
    def error_max(self) -> float:
        return float(self.error.max())


def _default_tolerance(x_ref: torch.Tensor) -> float:
    rms = float(torch.sqrt(torch.mean(torch.sum(
        x_ref.reshape(x_ref.shape[0], -1).double() ** 2, dim=1))))
    rel = 1e-6 if x_ref.dtype == torch.float64 else 1e-3
    return rel * max(rms, 1e-300)


def _per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm((a - b).reshape(a.shape[0], -1).double(), dim=1)


def self_reference(denoiser: Callable, x_start: torch.Tensor, sigma_max, sigma_min, *,
                   method: str = "dop853", rtol: Optional[float] = None,
                   atol: Optional[float] = None, loose_factor: float = 100.0,
                   solver: str = "res_3s", steps: int = 128, grid="karras",
                   grid_options: Optional[Mapping] = None, tolerance: Optional[float] = None,
                   chunk_size: Optional[int] = None) -> SelfReference:
    """The PF-ODE endpoint of ``denoiser`` from ``x_start`` at ``sigma_max`` to ``sigma_min``,
    with its error estimated by comparing two estimates (module docstring).

    ``method="dop853"``: tolerances ``rtol`` (default 1e-10 in float64, 1e-6 otherwise),
    ``atol`` (default ``rtol``) and ``loose_factor * rtol``; ``chunk_size`` as in
    ``solve_pf_ode`` (default: the whole batch as one system). ``method="richardson"``: ``solver``
    (deterministic, order p = ``SOLVERS[solver].order_for()``) at ``steps``, ``2 steps`` and
    ``4 steps`` of the grid family. Raises :class:`ReferenceToleranceError` when the error estimate
    (its 90 % quantile over samples) exceeds ``tolerance`` (module docstring for the default).
    """
    if not isinstance(x_start, torch.Tensor) or not x_start.is_floating_point():
        raise TypeError("x_start must be a floating-point torch.Tensor of shape [n, ...], got "
                        f"{type(x_start).__name__}")
    s_max, s_min = _level(sigma_max, "sigma_max"), _level(sigma_min, "sigma_min")
    if method not in ("dop853", "richardson"):
        raise ValueError(f"reference must be 'dop853' or 'richardson', got {method!r}")
    if tolerance is not None and not (isinstance(tolerance, numbers.Real) and
                                      math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a finite number > 0 or None, got {tolerance!r}")
    if method == "dop853":
        if rtol is None:
            rtol = 1e-10 if x_start.dtype == torch.float64 else 1e-6
        atol = rtol if atol is None else atol
        if not (isinstance(loose_factor, numbers.Real) and loose_factor > 1):
            raise ValueError(f"loose_factor must be a number > 1, got {loose_factor!r}")
        chunk = chunk_size if chunk_size is not None else x_start.shape[0]
        counted = NFECounter(checked_denoiser(denoiser, "DOP853 self-reference"))
        tight = solve_pf_ode(counted, x_start, s_max, s_min, rtol=rtol, atol=atol,
                             chunk_size=chunk)
        loose = solve_pf_ode(counted, x_start, s_max, s_min, rtol=rtol * loose_factor,
                             atol=atol * loose_factor, chunk_size=chunk)
        err = _per_sample(tight, loose)
        settings = {"method": "dop853", "rtol": rtol, "atol": atol,
                    "loose_rtol": rtol * loose_factor, "loose_atol": atol * loose_factor}
        ref, observed, nfe_total = tight, None, counted.count
    else:
        spec = SOLVERS[solver]
        if spec.stochastic:
            raise ValueError(f"the Richardson solver must be deterministic, got {solver!r}")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        family = grid_family(grid, s_max, s_min, grid_options, dtype=x_start.dtype,
                             device=x_start.device)
        p = float(spec.order_for())
        outs, nfe = [], 0
        for m in (steps, 2 * steps, 4 * steps):
            sig = family(m)
            counted = NFECounter(checked_denoiser(
                denoiser, f"Richardson self-reference ({solver}, M = {m})", sig))
            with torch.no_grad():
                outs.append(spec(counted, x_start, sig))
            nfe += counted.count
        x1, x2, x4 = outs
        c = 1.0 / (2.0 ** p - 1.0)
        r12 = x2 + (x2 - x1) * c
        r24 = x4 + (x4 - x2) * c
        err = _per_sample(r24, r12)
        d12, d24 = float(_per_sample(x1, x2).median()), float(_per_sample(x2, x4).median())
        observed = math.log2(d12 / d24) if d12 > 0 and d24 > 0 else None
        settings = {"method": "richardson", "solver": solver, "order": p,
                    "steps": [steps, 2 * steps, 4 * steps]}
        ref, nfe_total = r24, nfe
    tol = _default_tolerance(ref) if tolerance is None else float(tolerance)
    q90 = float(torch.quantile(err, 0.9)) if bool(torch.isfinite(err).all()) else math.inf
    if q90 > tol:
        hint = ("tighten rtol or use float64" if method == "dop853" else
                "raise steps, or check that the observed order "
                f"({observed if observed is None else round(observed, 2)}) is close to {p:g}")
        raise ReferenceToleranceError(
            f"the {method} self-reference did not reach its tolerance {tol:.3g}: its two "
            f"estimates differ by {q90:.3g} at the 90 % quantile over samples (median "
            f"{float(err.median()):.3g}, max {float(err.max()):.3g}); {hint}")
    return SelfReference(x=ref, error=err, method=method, settings=settings, nfe=nfe_total,
                         tolerance=tol, observed_order=observed)


# ------------------------------------------------------------------------------------------------
# the verification
# ------------------------------------------------------------------------------------------------

_CSV_COLUMNS = ("sampler", "name", "steps", "nfe", "defect_median", "defect_mean", "defect_q90",
                "defect_max", "relative_median", "reference_error_median", "used_in_fit")


@dataclasses.dataclass(eq=False)
class ModelVerification:
    """Result of :func:`verify_model`.

    Attributes
    ----------
    rows : one dict per (sampler, M): ``sampler`` (label), ``name``, ``steps``, ``nfe`` (ledger),
        ``defect_median/mean/q90/max`` (per-sample Euclidean distance to the self-reference over
        all non-batch dimensions), ``relative_median`` (median defect / RMS reference norm),
        ``reference_error_median``, ``used_in_fit``, and ``seconds`` (wall time; not written to
        the CSV so that reruns give identical files).
    orders : sampler label -> :class:`samplerlab.experiments.order.OrderEstimate` of the median
        defect vs M (95 % interval; points within ``floor_factor`` of the reference error are at
        the floor), or None when no order can be fitted.
    reference : the :class:`SelfReference`.
    settings : what was run (for the written files).
    """

    rows: List[Dict]
    orders: Dict[str, object]
    reference: SelfReference
    settings: Dict

    def order_rows(self) -> List[Dict]:
        out = []
        for label, est in self.orders.items():
            name = next(r["name"] for r in self.rows if r["sampler"] == label)
            out.append({"sampler": label, "declared": float(SOLVERS[name].order_for(
                **_method_options(self.settings["options"].get(label, {})))),
                "order": None if est is None else float(est.order),
                "ci_low": None if est is None else float(est.ci_low),
                "ci_high": None if est is None else float(est.ci_high),
                "points": 0 if est is None else int(est.num_used)})
        return out

    def markdown(self) -> str:
        """A markdown report: the reference, the order table and the defect-vs-NFE table."""
        ref = self.reference
        lines = [f"# Sampler verification on {self.settings['model']}", "",
                 f"Self-reference: {_describe_reference(ref)}; estimated error median "
                 f"{ref.error_median:.3g}, max {ref.error_max:.3g} "
                 f"(tolerance {ref.tolerance:.3g}); "
                 f"{ref.nfe} NFE.", "",
                 f"{self.settings['n']} trajectories of shape {self.settings['shape']}, "
                 f"{self.settings['dtype']}, sigma {self.settings['sigma_max']:g} -> "
                 f"{self.settings['sigma_min']:g}, grid {self.settings['grid']}.", "",
                 "| sampler | declared order | measured order [95% CI] | points |",
                 "|---|---|---|---|"]
        for r in self.order_rows():
            measured = "no fit" if r["order"] is None else (
                f"{r['order']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]")
            lines.append(f"| {r['sampler']} | {r['declared']:g} | {measured} | {r['points']} |")
        lines += ["", "| sampler | M | NFE | median defect | q90 defect | relative median |",
                  "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['sampler']} | {r['steps']} | {r['nfe']} | "
                         f"{r['defect_median']:.3e} | {r['defect_q90']:.3e} | "
                         f"{r['relative_median']:.3e} |")
        return "\n".join(lines) + "\n"

    def figure(self):
        """The work-precision figure (median defect vs NFE, reference error as the floor)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        for label in self.orders:
            sel = [r for r in self.rows if r["sampler"] == label]
            est = self.orders[label]
            tag = "" if est is None else f" ({est.order:.2f})"
            ax.loglog([r["nfe"] for r in sel], [max(r["defect_median"], 1e-300) for r in sel],
                      "o-", ms=4, label=f"{label}{tag}")
        ax.axhline(self.reference.error_median, color="k", ls="--", lw=1,
                   label="self-reference error (median)")
        ax.set_xlabel("NFE (ledger)")
        ax.set_ylabel("median defect vs self-reference")
        ax.set_title(f"work-precision on {self.settings['model']}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def write(self, out, stem: str = "compare") -> List[Path]:
        """Write ``stem.md``, ``stem.csv`` (defects), ``stem_orders.csv`` and ``stem.png`` into
        ``out``. Everything is rendered in memory first and each file is written atomically, so
        a failure leaves no half-written file."""
        out = Path(out)
        fig = self.figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
        import matplotlib.pyplot as plt
        plt.close(fig)
        md = self.markdown().encode()
        paths = [write_csv(out / f"{stem}.csv", self.rows, _CSV_COLUMNS),
                 write_csv(out / f"{stem}_orders.csv", self.order_rows()),
                 atomic_write_bytes(out / f"{stem}.md", md),
                 atomic_write_bytes(out / f"{stem}.png", buf.getvalue())]
        return paths


def _describe_reference(ref: SelfReference) -> str:
    s = ref.settings
    if ref.method == "dop853":
        return (f"DOP853 in lambda at rtol {s['rtol']:.0e} (error from rtol {s['loose_rtol']:.0e})")
    obs = "" if ref.observed_order is None else f", observed order {ref.observed_order:.2f}"
    return (f"Richardson extrapolation of {s['solver']} (order {s['order']:g}) at M = "
            f"{'/'.join(str(m) for m in s['steps'])}{obs}")


def _check_x_start(x_start):
    if not isinstance(x_start, torch.Tensor):
        raise TypeError(f"x_start must be a torch.Tensor of shape [n, ...], got "
                        f"{type(x_start).__name__}")
    if not x_start.is_floating_point():
        raise TypeError(f"x_start must be a floating-point tensor, got dtype {x_start.dtype}")
    if x_start.ndim < 2 or x_start.shape[0] < 1:
        raise ValueError(f"x_start must have shape [n, ...] with n >= 1 and at least one "
                         f"feature dimension, got {tuple(x_start.shape)}")
    if not bool(torch.isfinite(x_start).all()):
        raise ValueError("x_start must be finite (no NaN or inf)")


_RUN_FLAGS = ("check_finite", "check_grid")


def _method_options(opts):
    """A case's options without the run flags every sampler takes (``check_finite``,
    ``check_grid``): what ``SolverSpec.options`` and ``order_for`` validate."""
    return {k: v for k, v in opts.items() if k not in _RUN_FLAGS}


def verify_model(denoiser: Callable, x_start: torch.Tensor, sigma_max, sigma_min,
                 samplers: Sequence, steps: Optional[Sequence[int]] = None, *,
                 nfe: Optional[Sequence[int]] = None, reference: str = "dop853",
                 grid: Union[str, Callable] = "karras", grid_options: Optional[Mapping] = None,
                 rtol: Optional[float] = None, tolerance: Optional[float] = None,
                 richardson_solver: str = "res_3s", richardson_steps: int = 128,
                 floor_factor: float = 10.0, model_name: str = "the model",
                 chunk_size: Optional[int] = None) -> ModelVerification:
    """Defects and measured orders of ``samplers`` on ``denoiser`` against its self-reference.

    Parameters
    ----------
    denoiser : ``denoiser(x, sigma) -> x0_hat`` (VE/EDM; any black box, e.g.
        ``solvers.diffusers_interop.denoiser_from_diffusers``); called under ``torch.no_grad``.
    x_start : ``[n, ...]`` starting points at ``sigma_max`` (their dtype/device are used).
    sigma_max, sigma_min : the grid endpoints (``sigma_min > 0``: no final denoising step).
    samplers : names, or ``(label, name, options)`` triples, of deterministic samplers.
    steps : numbers of steps M (the same for every sampler); or give ``nfe`` instead: per
        sampler the largest M whose NFE is ``<= nfe`` (:func:`steps_for_nfe`; budgets below one
        step are skipped).
    reference : ``"dop853"`` or ``"richardson"`` (:func:`self_reference`, with ``rtol``,
        ``tolerance``, ``richardson_solver``, ``richardson_steps``, ``chunk_size``).
    grid, grid_options : the grid family (module docstring).
    floor_factor : defects within this factor of the median reference error are not fitted.

    Returns a :class:`ModelVerification`. Raises ``ValueError``/``TypeError`` for bad arguments,
    :class:`ReferenceToleranceError` if the reference misses its tolerance, and the errors of
    :func:`checked_denoiser` for a bad model output (naming sigma, step and run).
    """
    _check_x_start(x_start)
    if (steps is None) == (nfe is None):
        raise ValueError("give exactly one of steps (numbers of steps M) and nfe (budgets)")
    budgets = list(steps if steps is not None else nfe)
    if not budgets or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                          for v in budgets):
        raise ValueError(f"{'steps' if steps is not None else 'nfe'} must be a non-empty list of "
                         f"integers >= 1, got {budgets!r}")
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"steps/nfe values must be distinct, got {budgets!r}")
    if isinstance(samplers, str):
        samplers = [samplers]
    cases = [(label, spec.name, opts) for label, spec, opts in _cases(samplers)]
    if not cases:
        raise ValueError("samplers must name at least one sampler")
    for label, name, opts in cases:
        if name not in SOLVERS:
            raise ValueError(f"unknown sampler {name!r}; known: {', '.join(sorted(SOLVERS))}")
        if SOLVERS[name].stochastic or SOLVERS[name].family == "implicit":
            kind = "stochastic" if SOLVERS[name].stochastic else "implicit"
            raise ValueError(f"sampler {name!r} is {kind}"
                             "; the defect against the PF-ODE needs a deterministic explicit "
                             "sampler")
        SOLVERS[name].options(**_method_options(opts))  # validates the options
    if not (isinstance(floor_factor, numbers.Real) and floor_factor >= 1):
        raise ValueError(f"floor_factor must be a number >= 1, got {floor_factor!r}")
    s_max, s_min = _level(sigma_max, "sigma_max"), _level(sigma_min, "sigma_min")
    family = grid_family(grid, s_max, s_min, grid_options, dtype=x_start.dtype,
                         device=x_start.device)

    # one probe call before anything expensive: shape/dtype/finite at sigma_max
    with torch.no_grad():
        checked_denoiser(denoiser, "probe call before the verification")(
            x_start, torch.tensor(s_max, dtype=x_start.dtype, device=x_start.device))
        ref = self_reference(denoiser, x_start, s_max, s_min, method=reference, rtol=rtol,
                             tolerance=tolerance, solver=richardson_solver,
                             steps=richardson_steps, grid=grid, grid_options=grid_options,
                             chunk_size=chunk_size)
    ref_scale = float(torch.sqrt(torch.mean(torch.sum(
        ref.x.reshape(ref.x.shape[0], -1).double() ** 2, dim=1))))
    rows: List[Dict] = []
    orders: Dict[str, object] = {}
    plan: Dict[str, List[int]] = {}
    for label, name, opts in cases:
        spec = SOLVERS[name]
        if steps is not None:
            ms = sorted(budgets)
        else:
            ms = sorted({m for m in (steps_for_nfe(name, b, family, opts) for b in budgets)
                         if m is not None})
        plan[label] = ms
        sel = []
        for m in ms:
            sig = family(m)
            counted = NFECounter(checked_denoiser(denoiser, f"sampler {label!r}, M = {m}", sig))
            start = time.perf_counter()
            with torch.no_grad():
                out = spec(counted, x_start, sig, **opts)
            seconds = time.perf_counter() - start
            if not bool(torch.isfinite(out).all()):
                raise FloatingPointError(f"sampler {label!r} with M = {m} steps returned NaN or "
                                         "inf")
            summary = defect(out, ref.x.to(dtype=out.dtype))
            row = {"sampler": label, "name": name, "steps": m, "nfe": counted.count,
                   "defect_median": float(summary.median), "defect_mean": float(summary.mean),
                   "defect_q90": float(summary.quantiles[0.9]), "defect_max": float(summary.max),
                   "relative_median": float(summary.median) / max(ref_scale, 1e-300),
                   "reference_error_median": ref.error_median, "used_in_fit": False,
                   "seconds": seconds}
            rows.append(row)
            sel.append(row)
        est = None
        if len(sel) >= 3:
            try:
                est = estimate_order([r["steps"] for r in sel], [r["defect_median"] for r in sel],
                                     floor=ref.error_median, floor_factor=float(floor_factor))
            except OrderEstimationError:
                est = None
        if est is not None:
            for r, used in zip(sel, est.mask):   # sel is sorted by M, as est's input
                r["used_in_fit"] = bool(used)
        orders[label] = est
    settings = {"model": model_name, "n": int(x_start.shape[0]),
                "shape": list(x_start.shape[1:]), "dtype": str(x_start.dtype).replace("torch.", ""),
                "sigma_max": s_max, "sigma_min": s_min,
                "grid": grid if isinstance(grid, str) else getattr(grid, "__name__", "callable"),
                "grid_options": dict(grid_options or {}), "steps": plan,
                "budget": "steps" if steps is not None else "nfe", "budgets": budgets,
                "reference": ref.settings, "floor_factor": float(floor_factor),
                "options": {label: dict(opts) for label, _, opts in cases}}
    return ModelVerification(rows=rows, orders=orders, reference=ref, settings=settings)
