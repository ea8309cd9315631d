"""Convergence sweeps: defect of samplers against the exact PF-ODE solution, vs steps and NFE.

This is the measurement behind every order claim of samplerlab (tests and studies alike)::

    rows = defect_sweep(target, ["euler", "res_2s"], steps=[8, 16, 32, 64],   # or SolverSpecs,
                        grid=lambda m: grids.karras(m, sigma_min=0.02), n=200, seed=0)
    est = fit_order(rows, "res_2s")      # OrderEstimate: slope of log median defect vs log M

Starting points are exact samples of the noised marginal at ``sigmas[0]`` (seeded), the reference
is :func:`samplerlab.experiments.reference.solve_pf_ode` from ``sigmas[0]`` to ``sigmas[-1]``, and
the defect of a sample is the Euclidean distance of the sampler's endpoint to the reference
endpoint. Every grid in a sweep must share its endpoints (checked).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import torch

from samplerlab.solvers import NFECounter, SolverSpec, resolve_solver

from .executors import SerialExecutor, current_executor, map_cells
from .metrics import defect
from .order import OrderEstimationError, estimate_order
from .reference import solve_pf_ode

__all__ = ["SamplerCase", "defect_sweep", "fit_order", "safe_fit", "order_fields",
           "starting_points", "start_and_reference"]

SamplerCase = Union[str, SolverSpec, Callable, Tuple[str, object, Mapping]]
"""A registered name, a SolverSpec, a plain callable, or ``(label, sampler, options)``."""


def _label(sampler) -> str:
    """The row label of a sampler given as a name, a SolverSpec or a callable."""
    if isinstance(sampler, str):
        return sampler
    return resolve_solver(sampler).name


def _cases(samplers: Iterable[SamplerCase]) -> List[Tuple[str, SolverSpec, dict]]:
    if isinstance(samplers, (str, SolverSpec)) or callable(samplers):
        samplers = [samplers]
    out = []
    for case in samplers:
        if isinstance(case, tuple):
            if len(case) != 3:
                raise ValueError(f"a sampler case must be a name, a SolverSpec, a callable or "
                                 f"(label, sampler, options), got a tuple of {len(case)}")
            label, sampler, opts = case
            out.append((label, resolve_solver(sampler), dict(opts)))
        else:
            spec = resolve_solver(case)
            out.append((spec.name, spec, {}))
    labels = [c[0] for c in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"sampler labels must be unique, got {labels}")
    return out


def starting_points(target, n: int, sigma_max: float, seed: int) -> torch.Tensor:
    """``n`` exact samples of the noised marginal at ``sigma_max`` (seeded torch.Generator)."""
    g = torch.Generator(device=target.device)
    g.manual_seed(int(seed))
    return target.sample(n, generator=g, sigma=float(sigma_max))


def start_and_reference(target, n: int, sigma_max: float, sigma_end: float, seed: int,
                        **solve_options) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x_start, x_ref)`` of one sweep: :func:`starting_points` and their exact PF-ODE
    solution at ``sigma_end`` (``solve_options``: rtol/atol of
    :func:`~samplerlab.experiments.reference.solve_pf_ode`). A module-level function, so a study
    can compute the references of several targets or grids as cells
    (:func:`~samplerlab.experiments.executors.map_calls`)."""
    x_start = starting_points(target, n, sigma_max, seed)
    return x_start, solve_pf_ode(target, x_start, sigma_max, sigma_end, **solve_options)


def defect_sweep(target, samplers: Iterable[SamplerCase], steps: Sequence[int],
                 grid: Callable[[int], torch.Tensor], n: int, seed: int = 0, *,
                 x_start: torch.Tensor = None, x_ref: torch.Tensor = None,
                 timing: bool = False) -> List[Dict]:
    """Defect of every sampler for every number of steps M; returns tidy rows.

    Each row: ``sampler`` (label), ``name``, ``steps`` (M), ``nfe`` (counted by the ledger),
    ``defect_mean``, ``defect_median``, ``defect_q90``, ``defect_max`` and, with ``timing``,
    ``seconds`` (wall time of the sampling call) and ``model_seconds`` (inside the denoiser).
    """
    cases = _cases(samplers)
    grids = {m: grid(m) for m in steps}
    first = grids[steps[0]]
    for m, g in grids.items():
        if g.numel() != m + 1 and not (g.numel() == m + 2 and g[-1] == 0):
            raise ValueError(f"grid({m}) returned {g.numel()} levels; expected {m + 1}")
        if abs(float(g[0]) - float(first[0])) > 1e-12 * float(first[0]) or \
                abs(float(g[-1]) - float(first[-1])) > 1e-12 * max(float(first[-1]), 1e-300):
            raise ValueError("every grid of a sweep must share its endpoints")
    sigma_max, sigma_end = float(first[0]), float(first[-1])
    if x_start is None:
        x_start = starting_points(target, n, sigma_max, seed)
    if x_ref is None:
        x_ref = solve_pf_ode(target, x_start, sigma_max, sigma_end)
    # cells run on the current run's executor (experiments.executors): inline by default,
    # on worker processes/Dask under `reproduce --jobs/--dask`; merged in this fixed order.
    # A worker resolves a built-in by name; other samplers only run inline.
    inline = isinstance(current_executor(), SerialExecutor)
    for _, spec, _ in cases:
        if not inline and not spec.builtin:
            raise ValueError(f"sampler {spec.name!r} is not a built-in, so worker processes "
                             "cannot rebuild it: run this sweep with --jobs 1 (serial)")
    cells = [(f"{label} M={m}", (target, spec if inline else spec.name, opts, grids[m],
                                 x_start, x_ref, seed, timing))
             for label, spec, opts in cases for m in steps]
    outs = iter(map_cells(_sweep_cell, cells))
    return [{"sampler": label, "name": spec.name, "steps": m, **next(outs)}
            for label, spec, _ in cases for m in steps]


def _sweep_cell(target, sampler, opts, sig, x_start, x_ref, seed, timing) -> Dict:
    """One cell of a sweep: run ``sampler`` (a SolverSpec, or a built-in's name in a worker
    process) on grid ``sig`` and summarise its defect."""
    spec = resolve_solver(sampler)
    sig = sig.to(dtype=x_start.dtype, device=x_start.device)
    if timing:  # one untimed call first: per-grid coefficient caches, allocator warm-up
        spec(target.denoiser, x_start, sig, generator=seed, **opts)
    counted = NFECounter(target.denoiser)
    start = time.perf_counter()
    out = spec(counted, x_start, sig, generator=seed, **opts)
    seconds = time.perf_counter() - start
    summary = defect(out, x_ref)
    row = {"nfe": counted.count,
           "defect_mean": float(summary.mean), "defect_median": float(summary.median),
           "defect_q90": float(summary.quantiles[0.9]), "defect_max": float(summary.max)}
    if timing:
        row["seconds"] = seconds
        row["model_seconds"] = counted.seconds
    return row


def fit_order(rows: Sequence[Mapping], sampler, *, x: str = "steps",
              y: str = "defect_median", **kwargs):
    """Empirical order of ``sampler`` (its row label, a SolverSpec or a callable) in ``rows``
    (slope of log y vs log x), an OrderEstimate."""
    sampler = _label(sampler)
    sel = [r for r in rows if r["sampler"] == sampler]
    if not sel:
        raise ValueError(f"no rows for sampler {sampler!r}")
    return estimate_order([r[x] for r in sel], [r[y] for r in sel], **kwargs)


def safe_fit(rows, sampler: str, **kwargs):
    """:func:`fit_order` or ``None`` when no order can be reported (fewer points than a fit needs,
    every point at the floor, or no run of consistent local slopes) — a study then reports
    "no fit" instead of failing."""
    sampler = _label(sampler)
    if sum(1 for r in rows if r["sampler"] == sampler) < kwargs.get("min_points", 3):
        return None
    try:
        return fit_order(rows, sampler, **kwargs)
    except OrderEstimationError:
        return None


def order_fields(est) -> dict:
    """Tidy columns of an :class:`OrderEstimate` (``None`` gives empty cells)."""
    if est is None:
        return {"order": None, "ci_low": None, "ci_high": None, "points": 0,
                "n_used": ""}
    return {"order": float(est.order), "ci_low": float(est.ci_low), "ci_high": float(est.ci_high),
            "points": int(est.num_used),
            "n_used": " ".join(f"{v:g}" for v in est.n_used)}
