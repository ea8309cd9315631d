"""Exact-density TV of a 2-D stochastic (or deterministic) sampler: propagation of the density on a
fresh tensor grid per level through Gaussian convolutions and diffeomorphisms (no Monte Carlo).

A step of every linear-step sampler (DDPM-type, the accelerated SDE sampler of Li et al., DDIM,
the accelerated ODE sampler, ...) is

    x  ->  x' = x + pre * z            (Gaussian convolution, isotropic std ``pre >= 0``)
       ->  y  = m(x')                  (deterministic step map, a diffeomorphism)
       ->  y + post * z'               (Gaussian convolution, std ``post >= 0``),

so the density ``p`` of the state is carried step by step:

* *convolution* with ``N(0, s^2 I)``: separable, one FFT per axis with the exact multiplier
  ``exp(-w^2 s^2 / 2)`` on the zero-padded grid (exact for the grid's trigonometric interpolant,
  however narrow the kernel — a dense kernel sum would need ``s`` to span grid spacings, which
  fails near the data where ``post ~ sigma sqrt(h)`` is far below the density's scale);
* *push-forward* by ``m`` (change of variables, pulled back to the new grid): on a uniform
  ``n_points x n_points`` grid (over a given box per level, or the bounding box of the image of
  the mass region), each node ``y`` is mapped back by Newton's method on ``m(x) = y`` (exact
  Jacobian ``Dm``, steps halved until the residual falls, started from the source node whose
  image is nearest, corrected by one linearised step), and ``p'(y) = p(x) / det Dm(x)`` with ``p(x)`` from
  the bicubic spline of the previous grid's log-density, exponentiated (O(h^4), exact for a Gaussian, no ripples). ``det Dm > 0`` is required where
  the density has mass (an orientation-preserving diffeomorphism, as a small sampler step is);
  Newton must reach ``newton_tol``, else ``ValueError`` names the step.

Tails below ``trim`` times the maximum are dropped after each operation (as in 1-D). The 1-D
analogue is :func:`samplerlab.experiments.studies.provable_acceleration.propagate_chain_density_1d`
(spline push-forward instead of Newton: in 1-D the mapped nodes are themselves a grid).

TV to a target ``p`` at the last level: ``1/2 int |q - p|`` by the tensor Gauss-Legendre rule on
the final grid's cells split in 2 x 2 panels (``quad_order`` nodes per axis per panel, ``q`` from its bicubic spline),
plus half the target mass outside the grid's box. As in :mod:`.density_2d`, ``|q - p|`` has kinks
the tensor rule does not split at, and the whole propagation is repeated with ``9 n_points / 10``
nodes per axis: ``error_estimate = |TV - TV_coarse|``, an indicator of the discretisation error
(measured on the provable-acceleration 2-D mixture at T = 50: TV at 144, 160, 192, 240 and 320
nodes per axis agree to 6e-6 for DDPM-type and 5e-7 for the accelerated SDE sampler, masses to
1e-5; on Gaussian data the log-density interpolant is exact to ~1e-8); checked in tests/test_metrics_2d_chain.py against Gaussian closed forms and the 1-D
method on product targets).

Cost per step: ``n_points^2`` evaluations of ``m`` and ``Dm`` at the source nodes and per Newton
iteration (typically 3-4 evaluations in all), plus FFTs of the grid. The grid work is numpy/scipy on the CPU (a verification
routine, like experiments.reference); ``step_map`` runs wherever its tensors live.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.interpolate import RectBivariateSpline
from scipy.spatial import cKDTree

from samplerlab.theory.validation import check_in_range, check_positive_int

from .density_2d import GridTV2D, _check_box, _nodes_1d
from .pushforward import _call_log_prob

#: relative density below which an unconverged pull-back node is taken to carry no mass
_NEGLIGIBLE = 1e-12
#: relative density whose image bounds the next grid (with the step's box)
_CORE = 1e-8
#: relative floor of the log-density interpolant (below it the density is taken as 0)
_FLOOR = 1e-30
#: cap of an interpolated value over the largest corner value of its cell
_PEAK = 1.5
#: panels per grid cell and axis of the final TV quadrature
_TV_REFINE = 2

__all__ = ["ChainStep", "ChainTV2D", "GridDensity2D", "propagate_chain_density_2d", "tv_chain_density_2d"]


@dataclasses.dataclass(frozen=True)
class ChainStep:
    """One step ``x -> m(x + pre * z) + post * z'`` of a 2-D chain.

    ``step_map``: ``x [n, 2] -> (m [n, 2], Dm [n, 2, 2])``, row-wise, ``Dm[i, a, b] = dm_a/dx_b``
    (float64 tensors); ``None`` for the identity (a pure convolution). ``pre``, ``post``: standard
    deviations (>= 0) of the isotropic Gaussian noise before and after the map. ``box``: the
    region ``((low0, high0), (low1, high1))`` of the grid the map lands on (e.g. +-8 standard
    deviations of the exact marginal at the new level); ``None``: the image of the region where
    the density exceeds 1e-8 of its maximum. Mass a box misses shows in the mass checks.
    """

    step_map: Optional[Callable] = None
    pre: float = 0.0
    post: float = 0.0
    box: Optional[Tuple[Tuple[float, float], Tuple[float, float]]] = None

    def __post_init__(self):
        if self.step_map is not None and not callable(self.step_map):
            raise TypeError("ChainStep.step_map must be a callable x[n, 2] -> (m, Dm) or None")
        for field in ("pre", "post"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) \
                    or not math.isfinite(float(v)) or float(v) < 0:
                raise ValueError(f"ChainStep.{field} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, field, float(v))
        if self.box is not None:
            object.__setattr__(self, "box", tuple(_check_box(self.box)))


@dataclasses.dataclass(frozen=True)
class GridDensity2D:
    """A density on a uniform tensor grid: ``values[i, j]`` at ``(x0[i], x1[j])`` (numpy)."""

    x0: np.ndarray
    x1: np.ndarray
    values: np.ndarray

    @property
    def mass(self) -> float:
        """Trapezoid mass (spectrally accurate for a smooth density decaying at the box edges)."""
        return float(np.trapezoid(np.trapezoid(self.values, self.x1, axis=1), self.x0))

    def interpolant(self) -> Callable:
        """``f(a, b) -> density`` at points ``(a[i], b[i])``: the bicubic spline of the *log*
        density (floored at ``_FLOOR`` times the maximum), exponentiated; 0 outside the grid.

        A log-density is far smoother than the density (exactly quadratic for one Gaussian,
        which the cubic spline reproduces: 5e-13 relative vs 5e-8 for a spline of the values at
        64 nodes per axis, tests), and it has no ripples in the tails, where a spline of the
        values rings around narrow components (spurious mass, grids widening step after step).
        Where the log-density is not resolved (a sharp valley between narrow components) its
        spline can overshoot; so each value is capped at ``_PEAK`` times the largest of its cell's
        four corner values (a resolved peak, sd >= 0.9 spacings, exceeds its corners by less):
        what the cap removes shows as lost mass in the final check."""
        floor = _FLOOR * float(self.values.max())
        spline = RectBivariateSpline(self.x0, self.x1, np.log(np.maximum(self.values, floor)),
                                     kx=3, ky=3)
        v = self.values

        def f(a, b):
            a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            out = np.exp(spline.ev(a, b))
            inside = (a >= self.x0[0]) & (a <= self.x0[-1]) & (b >= self.x1[0]) & (b <= self.x1[-1])
            i = np.clip(np.searchsorted(self.x0, a) - 1, 0, self.x0.size - 2)
            j = np.clip(np.searchsorted(self.x1, b) - 1, 0, self.x1.size - 2)
            corners = np.maximum(np.maximum(v[i, j], v[i + 1, j]), np.maximum(v[i, j + 1],
                                                                                v[i + 1, j + 1]))
            out = np.minimum(out, _PEAK * corners)
            return np.where(inside & (out > floor), out, 0.0)
        return f


@dataclasses.dataclass(frozen=True)
class ChainTV2D(GridTV2D):
    """:class:`~.density_2d.GridTV2D` plus the propagated end density (``density``)."""

    density: GridDensity2D = None


def _trim(g: GridDensity2D, rel: float) -> GridDensity2D:
    """Drop rows/columns where the density is below ``rel`` times its maximum (keep 2 nodes)."""
    big = g.values > rel * g.values.max()
    rows, cols = np.flatnonzero(big.any(axis=1)), np.flatnonzero(big.any(axis=0))
    a, b = max(int(rows[0]) - 2, 0), min(int(rows[-1]) + 3, g.x0.size)
    c, e = max(int(cols[0]) - 2, 0), min(int(cols[-1]) + 3, g.x1.size)
    return GridDensity2D(g.x0[a:b], g.x1[c:e], g.values[a:b, c:e])


def _convolve_axis(values: np.ndarray, axis_nodes: np.ndarray, std: float, width: float,
                   axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """Convolve along ``axis`` with N(0, std^2): zero-pad by ``width * std``, exact DFT
    multiplier. Returns (new nodes, values)."""
    dx = float(axis_nodes[1] - axis_nodes[0])
    pad = int(math.ceil(width * std / dx)) + 1
    widths = [(0, 0), (0, 0)]
    widths[axis] = (pad, pad)
    q = np.pad(values, widths)
    n = q.shape[axis]
    size = 1 << int(math.ceil(math.log2(2 * n)))
    freq = 2.0 * math.pi * np.fft.rfftfreq(size, d=dx)
    mult = np.exp(-0.5 * (freq * std) ** 2)
    shape = [1, 1]
    shape[axis] = mult.size
    out = np.fft.irfft(np.fft.rfft(q, size, axis=axis) * mult.reshape(shape), size, axis=axis)
    out = np.take(out, np.arange(n), axis=axis)
    nodes = axis_nodes[0] + dx * (np.arange(n) - pad)
    return nodes, out


def _convolve(g: GridDensity2D, std: float, width: float, trim: float) -> GridDensity2D:
    x0, v = _convolve_axis(g.values, g.x0, std, width, 0)
    x1, v = _convolve_axis(v, g.x1, std, width, 1)
    return _trim(GridDensity2D(x0, x1, np.maximum(v, 0.0)), trim)


def _eval_map(step_map, x: np.ndarray, like: torch.Tensor, k: int):
    out = step_map(torch.as_tensor(x, dtype=like.dtype, device=like.device))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"steps[{k}].step_map must return a pair (m [n, 2], Dm [n, 2, 2])")
    m, dm = out
    n = x.shape[0]
    if tuple(m.shape) != (n, 2) or tuple(dm.shape) != (n, 2, 2):
        raise ValueError(f"steps[{k}].step_map must return shapes [{n}, 2] and [{n}, 2, 2], got "
                         f"{tuple(m.shape)} and {tuple(dm.shape)}")
    m = m.detach().double().cpu().numpy()
    dm = dm.detach().double().cpu().numpy()
    if not (np.isfinite(m).all() and np.isfinite(dm).all()):
        raise ValueError(f"steps[{k}].step_map returned NaN or inf")
    return m, dm


def _newton_inverse(step_map, x, y, like, k, newton_tol, max_newton):
    """Solve ``m(x) = y`` row-wise from ``x``: Newton with the exact Jacobian, each step halved
    (up to 20 times, per row) until the residual decreases. Returns ``(x, Dm(x))``."""
    tol = newton_tol * max(float(np.abs(y).max()), 1.0)
    m, dm = _eval_map(step_map, x, like, k)
    res = np.abs(m - y).max(axis=1)
    for _ in range(max_newton):
        todo = np.flatnonzero(res > tol)
        if todo.size == 0:
            return x, dm, res <= tol
        step = np.linalg.solve(dm[todo], (m[todo] - y[todo])[..., None])[..., 0]
        lam = np.ones(todo.size)
        pending = np.arange(todo.size)
        for _halving in range(21):
            rows = todo[pending]
            cand = x[rows] - lam[pending, None] * step[pending]
            m_c, dm_c = _eval_map(step_map, cand, like, k)
            r_c = np.abs(m_c - y[rows]).max(axis=1)
            ok = r_c < res[rows]
            acc = rows[ok]
            x[acc], m[acc], dm[acc], res[acc] = cand[ok], m_c[ok], dm_c[ok], r_c[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            lam[pending] *= 0.5
        if pending.size and float(res[todo[pending]].max()) > tol:
            break      # no decrease possible for some rows
    return x, dm, res <= tol


def _nearest_guess(src: np.ndarray, m_all: np.ndarray, dm_all: np.ndarray,
                   y: np.ndarray) -> np.ndarray:
    """Approximate pre-images from the mapped source grid: the source node ``x_j`` whose image
    ``m(x_j)`` is nearest to ``y`` (k-d tree), corrected by one linearised step
    ``x_j + Dm(x_j)^{-1} (y - m(x_j))`` (error O(h^2) in the source spacing, so 2-3 Newton steps
    with the true map reach round-off)."""
    j = cKDTree(m_all).query(y)[1]
    return src[j] + np.linalg.solve(dm_all[j], (y - m_all[j])[..., None])[..., 0]


def _push_forward(g: GridDensity2D, step_map, k: int, n_points: int, like: torch.Tensor,
                  trim: float, newton_tol: float, max_newton: int, box=None) -> GridDensity2D:
    X0, X1 = np.meshgrid(g.x0, g.x1, indexing="ij")
    src = np.stack([X0.ravel(), X1.ravel()], axis=1)
    relevant = g.values.ravel() > trim * g.values.max()
    m_all, dm_all = _eval_map(step_map, src, like, k)
    m_src, dm_src = m_all[relevant], dm_all[relevant]
    det_src = np.linalg.det(dm_src)
    if not (det_src > 0).all():
        raise ValueError(f"steps[{k}]: the step map is not orientation-preserving where the "
                         f"density has mass (min det Dm = {det_src.min():.3g}); the "
                         "push-forward needs a diffeomorphism (use more steps)")
    # the new grid: the given box, else the bounding box of the image of where the density
    # exceeds 1e-8 of its maximum (~6.1 sd of a Gaussian; not the trim level, whose ripples are
    # spurious). A given box is used as it is: joining it with that image made the grid creep
    # outwards at every step and seeded spurious mass at its old edge (measured while writing
    # this); mass it misses shows in the per-step mass check
    if box is None:
        core = g.values.ravel()[relevant] > _CORE * g.values.max()
        lo, hi = m_src[core].min(axis=0), m_src[core].max(axis=0)
        box = (lo[0], hi[0], lo[1], hi[1])
    y0, y1 = np.linspace(box[0], box[1], n_points), np.linspace(box[2], box[3], n_points)
    Y0, Y1 = np.meshgrid(y0, y1, indexing="ij")
    y = np.stack([Y0.ravel(), Y1.ravel()], axis=1)
    x = _nearest_guess(src, m_all, dm_all, y)
    x, dm, converged = _newton_inverse(step_map, x, y, like, k, newton_tol, max_newton)
    det = np.linalg.det(dm)
    p = g.interpolant()(x[:, 0], x[:, 1])
    # a node whose pull-back did not converge must lie off the image of the mass region (its
    # best iterate sits where the previous density is negligible); else the map folds there
    lost = ~converged & (p > _NEGLIGIBLE * g.values.max())
    if lost.any():
        raise ValueError(f"steps[{k}]: Newton's method on m(x) = y did not converge at "
                         f"{int(lost.sum())} nodes where the density has mass; the step map is "
                         "not invertible there (use more steps)")
    vals = np.where(converged, p / np.abs(det), 0.0)
    return _trim(GridDensity2D(y0, y1, vals.reshape(n_points, n_points)), trim)


def _check_steps(steps) -> list:
    steps = list(steps)
    for k, st in enumerate(steps):
        if not isinstance(st, ChainStep):
            raise TypeError(f"steps[{k}] must be a ChainStep, got {type(st).__name__}")
    return steps


def _initial_grid(initial_log_prob, box, n_points, like) -> GridDensity2D:
    x0 = np.linspace(box[0], box[1], n_points)
    x1 = np.linspace(box[2], box[3], n_points)
    X0, X1 = np.meshgrid(x0, x1, indexing="ij")
    pts = torch.as_tensor(np.stack([X0.ravel(), X1.ravel()], axis=1), dtype=like.dtype,
                          device=like.device)
    lp = _call_log_prob(initial_log_prob, pts, "initial_log_prob")
    vals = torch.exp(lp).double().cpu().numpy().reshape(n_points, n_points)
    if not vals.max() > 0:
        raise ValueError("initial_log_prob is -inf on the whole box")
    return GridDensity2D(x0, x1, vals)


def _propagate(initial_log_prob, steps, box, n_points, width, trim, newton_tol, max_newton,
               like, mass_tol) -> GridDensity2D:
    """The chain on grids; the mass is checked after every step: a grid too coarse for the
    density (e.g. kernels or components narrower than the spacing, whose Fourier/spline
    interpolants ring) shows up as drifting mass, and the run stops there naming the step."""
    g = _trim(_initial_grid(initial_log_prob, box, n_points, like), trim)
    for k, st in enumerate(steps):
        if st.pre > 0:
            g = _convolve(g, st.pre, width, trim)
        if st.step_map is not None:
            g = _push_forward(g, st.step_map, k, n_points, like, trim, newton_tol, max_newton,
                              st.box)
        if st.post > 0:
            g = _convolve(g, st.post, width, trim)
        mass = g.mass
        if not abs(mass - 1.0) <= mass_tol:
            raise ValueError(f"steps[{k}]: the propagated mass is {mass:.8f} (|1 - mass| > "
                             f"mass_tol={mass_tol:g}): {n_points} nodes per axis do not resolve "
                             "the density at this level; use more n_points")
    return g


def _common_args(box, n_points, width, trim, newton_tol, max_newton, dtype, device):
    box = _check_box(box)
    n_points = check_positive_int(n_points, "n_points", minimum=16)
    width = check_in_range(width, "width", 0.0, None, low_open=True)
    trim = check_in_range(trim, "trim", 0.0, 1.0)
    newton_tol = check_in_range(newton_tol, "newton_tol", 0.0, None, low_open=True)
    max_newton = check_positive_int(max_newton, "max_newton")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    like = torch.empty(0, dtype=dtype, device=torch.device("cpu") if device is None else device)
    return box, n_points, width, trim, newton_tol, max_newton, like


def propagate_chain_density_2d(initial_log_prob: Callable, steps: Sequence[ChainStep],
                               box: Sequence[Sequence[float]], *, n_points: int = 128,
                               width: float = 10.0, trim: float = 1e-15,
                               newton_tol: float = 1e-13, max_newton: int = 30,
                               mass_tol: float = 1e-4, dtype: torch.dtype = torch.float64,
                               device=None) -> GridDensity2D:
    """The density after ``steps`` (:class:`ChainStep`) of a 2-D chain started from
    ``exp(initial_log_prob)`` (a callable ``x [n, 2] -> [n]``), on a uniform grid.

    ``box``: ``((low0, high0), (low1, high1))`` holding the initial mass; ``n_points`` per axis
    (every push-forward lands on a fresh ``n_points x n_points`` grid over the image of the mass
    region; a convolution pads by ``width`` standard deviations); ``trim``: relative density
    below which grid edges are dropped; ``newton_tol``: relative residual of the pull-back
    solves; ``mass_tol``: allowed ``|1 - mass|`` after every step (``ValueError`` naming the step
    beyond it). ``dtype``/``device``: of the points handed to the callables. See the module docstring
    for the method; raises ``ValueError`` when a step map is not an orientation-preserving
    diffeomorphism on the mass region or Newton fails.
    """
    steps = _check_steps(steps)
    args = _common_args(box, n_points, width, trim, newton_tol, max_newton, dtype, device)
    if not callable(initial_log_prob):
        raise TypeError("initial_log_prob must be a callable x[n, 2] -> log density [n]")
    mass_tol = check_in_range(mass_tol, "mass_tol", 0.0, None)
    return _propagate(initial_log_prob, steps, *args, mass_tol)


def _tv_on_grid(g: GridDensity2D, target_log_prob, like, quad_order: int):
    """(1/2 int_box |q - p| + 1/2 (1 - mass_p on box), mass_q, mass_p) on the grid's cells."""
    # each grid cell split in _TV_REFINE x _TV_REFINE panels: |q - p| has kinks the tensor rule
    # does not split at (error ~ panel^2), and q's interpolant is cheap to evaluate
    x0, w0 = _nodes_1d(g.x0[0], g.x0[-1], _TV_REFINE * (g.x0.size - 1), quad_order)
    x1, w1 = _nodes_1d(g.x1[0], g.x1[-1], _TV_REFINE * (g.x1.size - 1), quad_order)
    P0, P1 = np.meshgrid(x0, x1, indexing="ij")
    q = g.interpolant()(P0, P1)
    pts = torch.as_tensor(np.stack([P0.ravel(), P1.ravel()], axis=1), dtype=like.dtype,
                          device=like.device)
    p = torch.exp(_call_log_prob(target_log_prob, pts, "target_log_prob"))
    p = p.double().cpu().numpy().reshape(q.shape)
    w = np.outer(w0, w1)
    mass_q, mass_p = float((w * q).sum()), float((w * p).sum())
    tv = 0.5 * float((w * np.abs(q - p)).sum()) + 0.5 * max(0.0, 1.0 - mass_p)
    return tv, mass_q, mass_p, q.size


def _coarse(n_points: int) -> int:
    """Nodes per axis of the error-estimate pass: 9/10 of ``n_points`` (a nearby resolution:
    much coarser passes fall below the resolution threshold of the narrow components, where the
    propagation stops conserving mass, measured while writing this, and estimate nothing)."""
    return (9 * n_points) // 10


def tv_chain_density_2d(initial_log_prob: Callable, steps: Sequence[ChainStep],
                        target_log_prob: Callable, box: Sequence[Sequence[float]], *,
                        n_points: int = 128, quad_order: int = 4, mass_tol: float = 1e-4,
                        width: float = 10.0, trim: float = 1e-15, newton_tol: float = 1e-13,
                        max_newton: int = 30, dtype: torch.dtype = torch.float64,
                        device=None, keep_density: bool = False):
    """TV between the end law of a 2-D chain (:func:`propagate_chain_density_2d`) and a target.

    The propagation runs twice, with ``n_points`` and ``9 n_points / 10`` nodes per axis;
    ``value`` is the fine one, ``error_estimate = |value - coarse_value|`` (an indicator of the
    propagation's error, not a bound, and blind to the ~1e-6 kink error of the final quadrature:
    the module docstring and tests/test_metrics_2d_chain.py have the measured accuracy); ``mass_q`` is the
    propagated mass (should be 1: lost mass means the grids did not resolve or cover it),
    ``mass_p`` the target's mass on the final box (the rest is added to TV); ``ValueError`` if
    either is off by more than ``mass_tol`` (the default 1e-4 sits above the method's own mass
    drift, ~1e-5 at 128 nodes per axis over a dozen coarse steps, measured on Gaussian data).
    Returns :class:`~.density_2d.GridTV2D`; with ``keep_density=True`` a :class:`ChainTV2D`
    (the same fields plus ``density``, the fine pass's :class:`GridDensity2D`).
    """
    steps = _check_steps(steps)
    box, n_points, width, trim, newton_tol, max_newton, like = _common_args(
        box, n_points, width, trim, newton_tol, max_newton, dtype, device)
    if n_points < 32:
        raise ValueError(f"n_points must be >= 32 (the coarse pass uses 9/10 of them), got "
                         f"{n_points}")
    quad_order = check_positive_int(quad_order, "quad_order")
    mass_tol = check_in_range(mass_tol, "mass_tol", 0.0, None)
    for fn, name in ((initial_log_prob, "initial_log_prob"), (target_log_prob, "target_log_prob")):
        if not callable(fn):
            raise TypeError(f"{name} must be a callable x[n, 2] -> log density [n]")
    results, grids = [], []
    for n in (n_points, _coarse(n_points)):
        g = _propagate(initial_log_prob, steps, box, n, width, trim, newton_tol, max_newton, like,
                       mass_tol if n == n_points else max(mass_tol, 1e-2))
        results.append(_tv_on_grid(g, target_log_prob, like, quad_order))
        grids.append(g)
    (tv, mq, mp, npts), (tv_c, _, _, npts_c) = results
    mass_error = max(abs(1.0 - mq), abs(1.0 - mp))
    if not mass_error <= mass_tol:
        raise ValueError(f"the propagated density has mass {mq:.10f} and the target {mp:.10f} on "
                         f"the final grid (both should be 1; |1 - mass| = {mass_error:.2e} > "
                         f"mass_tol={mass_tol:g}): use more n_points or a wider box")
    fields = dict(value=min(max(tv, 0.0), 1.0), coarse_value=min(max(tv_c, 0.0), 1.0),
                  error_estimate=abs(tv - tv_c), mass_q=mq, mass_p=mp, mass_error=mass_error,
                  n_points=npts + npts_c)
    if keep_density:
        return ChainTV2D(**fields, density=grids[0])
    return GridTV2D(**fields)
