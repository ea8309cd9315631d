"""Empirical order of convergence: least-squares slope of log error against log n.

Model
-----
An error sequence ``e_i`` measured at work levels ``n_i`` (number of steps M, or NFE) is modelled
in its asymptotic regime as ::

    e ~= C * n^(-p),   i.e.   log e_i = a - p * log n_i + r_i,   a = log C,

and ``p`` (the order) is the negated ordinary-least-squares slope of ``log e`` against ``log n``
over the points kept by the rule below. The confidence interval is the Student-t interval of the
OLS slope: with ``m`` points, ``x_i = log n_i``, ``S_xx = sum (x_i - mean x)^2`` and residual
variance ``s^2 = sum r_i^2 / (m - 2)``,

    p  +-  t_{(1 + confidence)/2, m - 2} * s / sqrt(S_xx).

With exactly two points (allowed only with ``min_points=2``) the line is exact and the interval is
reported as ``nan`` (there are no degrees of freedom for it) — the order itself is finite.

Which points are fitted (the rule, applied to the points sorted by n)
---------------------------------------------------------------------
1. *Floor.* A point is at the floor when its error is exactly 0, or, if ``floor`` is given, when
   ``e_i <= floor_factor * floor`` (default ``floor_factor = 100``: a point kept then carries at
   most 1 % of floor contamination, comparable to typical noise; within a decade of the floor the
   floor's own scatter visibly biases the slope).
2. *Stagnant tail.* Among the remaining points, every point with larger n than the smallest
   error is at the floor too: once the error has stopped decreasing it no longer measures the
   discretisation (round-off accumulation, reference error, Monte-Carlo floor).
3. *Asymptotic run.* With local slopes ``s_i = -(log e_{i+1} - log e_i) / (log n_{i+1} - log n_i)``
   between consecutive remaining points, a *run* is a set of ``>= min_points`` consecutive
   remaining points whose local slopes all lie within ``slope_tol`` of the run's median local
   slope, and whose median local slope is ``>= min_order`` (a run that does not decrease is a
   plateau, i.e. a floor, not convergence). The longest run is chosen; among equally long runs
   the one at the largest n (the most asymptotic).
4. *End trimming.* While the run is longer than ``max(min_points, 4)``, its worse end point is
   dropped if the line through the other points does not predict it: externally studentized
   residual beyond the two-sided Student-t critical value at level ``outlier_alpha / 2``
   (Bonferroni over the two ends, ``m - 3`` degrees of freedom). This removes the last
   pre-asymptotic / near-floor points that step 3's tolerance lets through; residuals below
   1e-9 in ``log e`` never count (exact power laws are not trimmed by round-off).
   ``outlier_alpha=None`` switches it off.
5. Remaining points before the final run are labelled "pre-asymptotic", those after it
   "near-floor". If no run exists (e.g. everything is at the floor) :class:`OrderEstimationError`
   (a ``ValueError``) is raised with the reason — never a ``nan`` order.

Choosing ``slope_tol``: a relative error scatter ``eta`` in the errors scatters the local slopes by
about ``sqrt(2) * eta / log(n_{i+1}/n_i)`` (0.04 for 2 % noise and doubling n); the default 0.25
suits smooth deterministic errors and mildly noisy ones on doubling sequences. Noisier data or
denser n need a larger tolerance. Pure noise at a floor with large scatter can mimic a short run;
pass ``floor`` when the floor level is known.

What the interval means (measured, see tests/test_order.py): for ``C n^-p (1 + 2 % noise)`` data
with a sharp pre-asymptotic bump and a round-off floor, the 95 % interval covers the true p in
92-95 % of seeds. It is a statistical statement about scatter only. A *smooth* correction such as
``e = C n^-p (1 + c/n)`` cannot be separated from the power law point by point; it biases p by
about the drift of the local slopes over the run (0.01-0.05 for c = 2 on n = 2..2^15) and the
interval does not account for it — inspect :attr:`OrderEstimate.local_slopes`. For noise-free
(deterministic) errors the interval only reflects the curvature left in the run.

This module works on plain numbers (numpy float64): it is not a tensor hot path. Torch tensors
are accepted and converted. Convention follows the anchor survey (shared/papers,
notes-anchor-libraries.md §5: least squares, not a mean of pairwise ratios; automatic exclusion
of the pre-asymptotic regime and the round-off floor; n need not double).
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
from scipy import stats

__all__ = ["OrderEstimate", "OrderEstimationError", "estimate_order", "fit_power_law"]


class OrderEstimationError(ValueError):
    """No order can be reported (every point at the floor, or no consistent run of points)."""


@dataclasses.dataclass(frozen=True, eq=False)
class OrderEstimate:
    """Result of :func:`estimate_order`.

    Attributes
    ----------
    order : fitted order p (``e ~ C n^-p``; > 0 for converging data).
    ci_low, ci_high : Student-t confidence interval of p (nan with 2 points).
    intercept : fitted ``log C`` (natural log); :attr:`constant` is ``C``.
    n_used, errors_used : the points of the fit, sorted by n.
    mask : bool array in the *input* order, True for the points of the fit.
    stderr : standard error of p (nan with 2 points).
    confidence : level of the interval.
    labels : per input point, one of "used", "pre-asymptotic", "near-floor", "floor".
    local_slopes : the ``m - 1`` local slopes between consecutive fitted points (a drift in them
        betrays a smooth pre-asymptotic correction the interval does not cover).
    """

    order: float
    ci_low: float
    ci_high: float
    intercept: float
    n_used: np.ndarray
    errors_used: np.ndarray
    mask: np.ndarray
    stderr: float = math.nan
    confidence: float = 0.95
    labels: tuple = ()
    local_slopes: np.ndarray = None

    @property
    def constant(self) -> float:
        """``C`` in ``e ~ C n^-p``."""
        return math.exp(self.intercept)

    @property
    def num_used(self) -> int:
        return int(self.n_used.size)

    def predict(self, n) -> np.ndarray:
        """Fitted error ``C n^-p`` at ``n``."""
        return np.exp(self.intercept - self.order * np.log(np.asarray(n, dtype=np.float64)))

    def contains(self, p: float) -> bool:
        """Whether ``p`` lies in the confidence interval (False when the interval is nan)."""
        return bool(self.ci_low <= p <= self.ci_high)

    def __str__(self) -> str:
        return (f"{self.order:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}] "
                f"on {self.num_used} points")


def _as_float_array(values, name: str) -> np.ndarray:
    try:
        import torch
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    if isinstance(values, (str, bytes)) or np.isscalar(values):
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {type(values).__name__}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D sequence of real numbers") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def fit_power_law(n, errors, *, confidence: float = 0.95):
    """OLS fit of ``log e = a - p log n`` on all given points (no point selection).

    Returns ``(p, stderr, ci_low, ci_high, a)``; with two points ``stderr`` and the interval are
    ``nan``. Inputs must be positive and finite (see :func:`estimate_order` for validation).
    """
    n_arr = np.asarray(n, dtype=np.float64)
    e_arr = np.asarray(errors, dtype=np.float64)
    for name, arr in (("n", n_arr), ("errors", e_arr)):
        if not (np.isfinite(arr).all() and (arr > 0).all()):
            raise ValueError(f"{name} must be finite and > 0 for a power-law fit, got {arr.tolist()}")
    x = np.log(n_arr)
    y = np.log(e_arr)
    m = x.size
    if m < 2:
        raise ValueError(f"a power-law fit needs at least 2 points, got {m}")
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    if sxx <= 0.0:
        raise ValueError("n must hold at least two distinct values")
    slope = float(np.sum((x - xm) * (y - ym)) / sxx)
    a = float(ym - slope * xm)
    p = -slope
    if m == 2:
        return p, math.nan, math.nan, math.nan, a
    resid = y - (a + slope * x)
    s2 = float(np.sum(resid ** 2)) / (m - 2)
    se = math.sqrt(s2 / sxx)
    t = float(stats.t.ppf(0.5 * (1.0 + confidence), m - 2))
    return p, se, p - t * se, p + t * se, a


def _best_run(slopes: np.ndarray, min_points: int, slope_tol: float, min_order: float):
    """Longest window of consecutive points whose local slopes agree (see module docstring).

    ``slopes[i]`` is the local slope between points i and i+1. Returns ``(first, last)`` point
    indices (inclusive) or None.
    """
    m = slopes.size + 1
    best = None
    for a in range(m):
        for b in range(a + min_points - 1, m):
            s = slopes[a:b]
            if s.size == 0:  # a single point (min_points == 1 is rejected earlier)
                continue
            med = float(np.median(s))
            if med < min_order or float(np.max(np.abs(s - med))) > slope_tol:
                continue
            length = b - a + 1
            if best is None or length > best[1] - best[0] + 1 or (
                    length == best[1] - best[0] + 1 and b > best[1]):
                best = (a, b)
    return best


def _external_residual(x: np.ndarray, y: np.ndarray, i: int) -> float:
    """Externally studentized residual of point ``i`` from the OLS line through the others.

    ``(y_i - yhat_i) / (s_(i) * sqrt(1 + 1/m' + (x_i - xbar')^2 / S_xx'))`` with the fit, its
    residual scale ``s_(i)`` and ``m' = m - 1`` taken without point i (Student t with m' - 2
    degrees of freedom under the linear model). Differences below ``1e-9`` in ``log e`` (relative
    error agreement to 1e-9) count as zero, so exact power laws are never trimmed by round-off.
    """
    others = np.ones(x.size, dtype=bool)
    others[i] = False
    xo, yo = x[others], y[others]
    xm, ym = xo.mean(), yo.mean()
    sxx = float(np.sum((xo - xm) ** 2))
    slope = float(np.sum((xo - xm) * (yo - ym)) / sxx)
    resid_o = yo - (ym + slope * (xo - xm))
    r = float(y[i] - (ym + slope * (x[i] - xm)))
    if abs(r) <= 1e-9:
        return 0.0
    s = math.sqrt(float(np.sum(resid_o ** 2)) / (xo.size - 2))
    scale = s * math.sqrt(1.0 + 1.0 / xo.size + (x[i] - xm) ** 2 / sxx)
    return math.inf if scale == 0.0 else r / scale


def _trim_ends(x, y, first, last, min_points, outlier_alpha):
    """Drop run end points that the line through the rest of the run does not predict.

    An end point is dropped when its externally studentized residual exceeds the two-sided
    Student-t critical value at level ``outlier_alpha / 2`` (Bonferroni over the two ends) with
    ``m - 3`` degrees of freedom (m = run length); the worse end goes first, and the test repeats
    while the run is longer than ``max(min_points, 4)``.
    """
    while last - first + 1 > max(min_points, 4):
        xs, ys = x[first:last + 1], y[first:last + 1]
        z_first = abs(_external_residual(xs, ys, 0))
        z_last = abs(_external_residual(xs, ys, xs.size - 1))
        crit = float(stats.t.ppf(1.0 - outlier_alpha / 4.0, xs.size - 3))
        if max(z_first, z_last) <= crit:
            break
        if z_first >= z_last:
            first += 1
        else:
            last -= 1
    return first, last


def estimate_order(n, errors, *, confidence: float = 0.95, floor: float | None = None,
                   floor_factor: float = 100.0, slope_tol: float = 0.25, min_order: float = 0.2,
                   min_points: int = 3, outlier_alpha: float | None = 0.01) -> OrderEstimate:
    """Empirical order ``p`` of ``errors ~ C n^-p`` with a confidence interval.

    Parameters
    ----------
    n : 1-D sequence of work levels (steps M or NFE), positive, finite, pairwise distinct (any
        order; need not double).
    errors : 1-D sequence of the same length, finite and >= 0 (0 counts as "at the floor").
    confidence : level of the Student-t interval of the slope, in (0, 1).
    floor : optional known error floor (absolute, >= 0); errors ``<= floor_factor * floor`` are
        dropped.
    floor_factor : how close to ``floor`` (as a factor, >= 1) a point may come and still count.
    slope_tol : how far (in order units) a local slope may stray from the run's median.
    min_order : smallest median local slope for a run to count as converging.
    min_points : fewest points of the fitted run (>= 2; 2 gives a nan interval).
    outlier_alpha : level of the end-trimming test (step 4), in (0, 1), or None to skip it.

    Returns
    -------
    :class:`OrderEstimate`. The point-selection rule is the one in the module docstring.

    Raises
    ------
    ValueError naming the argument for malformed input; :class:`OrderEstimationError` (a
    ``ValueError``) when no order can be reported.
    """
    n_arr = _as_float_array(n, "n")
    e_arr = _as_float_array(errors, "errors")
    if n_arr.size != e_arr.size:
        raise ValueError(f"n and errors must have equal lengths, got {n_arr.size} and {e_arr.size}")
    if n_arr.size < 2:
        raise ValueError(f"n must hold at least 2 points, got {n_arr.size}")
    if not np.all(np.isfinite(n_arr)):
        raise ValueError("n must be finite (no NaN or inf)")
    if np.any(n_arr <= 0):
        raise ValueError(f"n must be positive (steps or NFE), got min {n_arr.min()!r}")
    if np.unique(n_arr).size != n_arr.size:
        raise ValueError("n must hold pairwise distinct values")
    if not np.all(np.isfinite(e_arr)):
        raise ValueError("errors must be finite (no NaN or inf)")
    if np.any(e_arr < 0):
        raise ValueError(f"errors must be >= 0, got min {e_arr.min()!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not (
            0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if floor is not None:
        if isinstance(floor, bool) or not isinstance(floor, numbers.Real) or not (
                math.isfinite(floor) and floor >= 0):
            raise ValueError(f"floor must be a finite number >= 0 or None, got {floor!r}")
    if not (isinstance(floor_factor, numbers.Real) and math.isfinite(floor_factor)
            and floor_factor >= 1):
        raise ValueError(f"floor_factor must be a finite number >= 1, got {floor_factor!r}")
    if not (isinstance(slope_tol, numbers.Real) and math.isfinite(slope_tol) and slope_tol > 0):
        raise ValueError(f"slope_tol must be a finite number > 0, got {slope_tol!r}")
    if not (isinstance(min_order, numbers.Real) and math.isfinite(min_order)):
        raise ValueError(f"min_order must be a finite number, got {min_order!r}")
    if outlier_alpha is not None and not (isinstance(outlier_alpha, numbers.Real)
                                          and 0.0 < float(outlier_alpha) < 1.0):
        raise ValueError(f"outlier_alpha must lie in (0, 1) or be None, got {outlier_alpha!r}")
    if isinstance(min_points, bool) or not isinstance(min_points, numbers.Integral) or min_points < 2:
        raise ValueError(f"min_points must be an integer >= 2, got {min_points!r}")

    order_idx = np.argsort(n_arr, kind="stable")
    ns, es = n_arr[order_idx], e_arr[order_idx]
    labels = np.full(ns.size, "floor", dtype=object)

    # 1. exact zeros and the explicit floor
    keep = es > 0
    if floor is not None:
        keep &= es > floor_factor * floor
    # 2. stagnant tail: everything after the smallest remaining error
    kept = np.flatnonzero(keep)
    if kept.size:
        k_min = kept[int(np.argmin(es[kept]))]
        keep[k_min + 1:] = False
        kept = np.flatnonzero(keep)
    if kept.size < min_points:
        raise OrderEstimationError(
            f"only {kept.size} point(s) lie above the floor (need {min_points}); errors="
            f"{es.tolist()} at n={ns.tolist()}")

    # 3. the asymptotic run
    x, y = np.log(ns[kept]), np.log(es[kept])
    slopes = -np.diff(y) / np.diff(x)
    run = _best_run(slopes, min_points, float(slope_tol), float(min_order))
    if run is None:
        raise OrderEstimationError(
            f"no run of {min_points} consecutive points with local slopes within {slope_tol} of "
            f"each other and decreasing at order >= {min_order}; local slopes: "
            f"{np.round(slopes, 3).tolist()}")
    first, last = run
    # 4. trim run ends that the line through the other points does not predict
    if outlier_alpha is not None:
        first, last = _trim_ends(x, y, first, last, min_points, float(outlier_alpha))
    labels[kept[:first]] = "pre-asymptotic"
    labels[kept[last + 1:]] = "near-floor"
    used_sorted = kept[first:last + 1]
    labels[used_sorted] = "used"

    n_used, e_used = ns[used_sorted], es[used_sorted]
    p, se, lo, hi, a = fit_power_law(n_used, e_used, confidence=float(confidence))

    mask = np.zeros(ns.size, dtype=bool)
    mask[order_idx[used_sorted]] = True
    labels_input = np.empty(ns.size, dtype=object)
    labels_input[order_idx] = labels
    local = -np.diff(np.log(e_used)) / np.diff(np.log(n_used))
    for arr in (n_used, e_used, mask, local):
        arr.setflags(write=False)
    return OrderEstimate(order=p, ci_low=lo, ci_high=hi, intercept=a, n_used=n_used,
                         errors_used=e_used, mask=mask, stderr=se, confidence=float(confidence),
                         labels=tuple(labels_input.tolist()), local_slopes=local)
