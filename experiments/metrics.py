"""Error metrics: numerical defect of samples, and total-variation (TV) distance estimators.

Interfaces (plain callables, so any target or sampler fits)
-----------------------------------------------------------
* ``LogProb``: ``log_prob(y: Tensor[n, d]) -> Tensor[n]``, a *normalised* log density
  (e.g. ``lambda y: mixture.log_prob(y, sigma)``). ``-inf`` is allowed where the density is 0.
* ``DeterministicMap``: ``sampler_map(x: Tensor[n, d]) -> Tensor[n, d]``, a deterministic sampler
  seen as the map from starting points to outputs. It must be *row-wise* (output row i depends on
  input row i only — no batch statistics), differentiable by torch autograd, and injective (a
  diffeomorphism onto its image, as a PF-ODE discretisation is for small enough steps). In 1-D
  d = 1, i.e. tensors of shape [n, 1].
* ``GaussianTransition``: ``transition(x: Tensor[n, d]) -> (mean: Tensor[n, d], std)``, with
  ``std`` a tensor broadcastable to ``mean``: one stochastic step ``x_{k+1} ~ N(mean(x_k),
  diag std(x_k)^2)``. A stochastic sampler is a sequence of these (the 1-D grid method uses d = 1).

TV(p, q) = sup_A |p(A) - q(A)| = 1/2 int |p - q| = int (q - p)_+ throughout (values in [0, 1]).

Estimators (they cross-check each other in tests/test_metrics.py)
------------------------------------------------------------------
(a) closed forms for Gaussians: :func:`tv_gaussian_1d` (exact, any two 1-D Gaussians),
    :func:`tv_gaussian_same_cov` (exact, equal covariances, any d), :func:`kl_gaussian`,
    :func:`w2_gaussian`, :func:`hellinger_gaussian`, :func:`tv_bounds_gaussian`;
(b) :func:`tv_pushforward`: importance sampling through a deterministic map with the exact
    change-of-variables output density (low d);
(c) :func:`tv_density_1d_deterministic` and :func:`tv_density_1d_stochastic`: density propagation
    on a 1-D grid by quadrature, no Monte-Carlo noise (measured ~1e-16 against exact Gaussian
    cases; the masses ``|1 - mass|`` flag a grid that does not cover or resolve the densities —
    the default ``mass_tol=1e-8`` assumes float64);
(d) :func:`tv_histogram` and :func:`tv_kde`: sample-based fall-backs in 1-D and 2-D (biased by
    binning/smoothing and by noise; for rough cross-checks only).

The numerical defect (:func:`defect`, :func:`signed_error`) measures per-sample distances to a
reference endpoint (e.g. the exact PF-ODE solution from the same starting point).

Every tensor routine keeps the device and dtype of its inputs (float64 for verification). Scalar
closed forms return Python floats.
"""
from __future__ import annotations

import builtins
import dataclasses
import math
import numbers
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import special

from samplerlab.theory.validation import check_finite, check_in_range, check_positive_int

__all__ = [
    "DefectSummary", "defect", "signed_error",
    "tv_gaussian_1d", "tv_gaussian_same_cov", "kl_gaussian", "w2_gaussian",
    "hellinger_gaussian", "tv_bounds_gaussian",
    "MCEstimate", "log_density_pushforward", "tv_pushforward",
    "GridTV", "tv_density_1d_deterministic", "propagate_density_1d", "tv_density_1d_stochastic",
    "tv_histogram", "tv_kde", "half_l1_1d",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# ------------------------------------------------------------------------------------------------
# numerical defect
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class DefectSummary:
    """Per-sample distances ``||x_i - x_ref_i||_2`` and their summary statistics (floats).

    ``quantiles`` maps each requested level to its value (linear interpolation between order
    statistics, as ``torch.quantile``); ``rms`` is ``sqrt(mean d_i^2)``.
    """

    per_sample: torch.Tensor
    mean: float
    median: float
    quantiles: dict
    max: float
    rms: float
    relative: bool = False

    def __str__(self) -> str:
        qs = ", ".join(f"q{100 * k:g}={v:.3e}" for k, v in sorted(self.quantiles.items()))
        kind = "relative defect" if self.relative else "defect"
        return (f"{kind} over {self.per_sample.numel()} samples: mean={self.mean:.3e} "
                f"median={self.median:.3e} {qs} max={self.max:.3e}")


def _check_pair(x, x_ref, name_x="x", name_ref="x_ref"):
    for v, nm in ((x, name_x), (x_ref, name_ref)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{nm} must be a torch.Tensor, got {type(v).__name__}")
        if not v.is_floating_point():
            raise TypeError(f"{nm} must be a floating-point tensor, got dtype {v.dtype}")
    if x.shape != x_ref.shape:
        raise ValueError(f"{name_x} and {name_ref} must have the same shape, got "
                         f"{tuple(x.shape)} and {tuple(x_ref.shape)}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{name_x} must have a batch dimension with >= 1 sample, got shape "
                         f"{tuple(x.shape)}")
    if x.dtype != x_ref.dtype or x.device != x_ref.device:
        raise TypeError(f"{name_x} ({x.dtype}, {x.device}) and {name_ref} ({x_ref.dtype}, "
                        f"{x_ref.device}) must share dtype and device")
    check_finite(x, name_x)
    check_finite(x_ref, name_ref)


def _quantile_sorted(s: torch.Tensor, q: float) -> float:
    pos = q * (s.numel() - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, s.numel() - 1)
    frac = pos - lo
    return float(s[lo] + frac * (s[hi] - s[lo]))


def defect(x: torch.Tensor, x_ref: torch.Tensor, *,
           quantiles: Sequence[float] = (0.1, 0.25, 0.75, 0.9),
           relative: bool = False) -> DefectSummary:
    """Numerical defect ``d_i = ||x_i - x_ref_i||_2`` over all non-batch dimensions.

    ``x`` and ``x_ref``: tensors of the same shape ``[n, ...]`` (dim 0 is the batch), same
    dtype/device, finite. With ``relative=True`` the distances are divided by ``||x_ref_i||_2``
    (which must then be > 0). Returns a :class:`DefectSummary` (``per_sample`` stays on the
    input's device).
    """
    _check_pair(x, x_ref)
    qs = tuple(check_in_range(q, "quantiles", 0.0, 1.0) for q in quantiles)
    diff = (x - x_ref).reshape(x.shape[0], -1)
    d = torch.linalg.vector_norm(diff, dim=1)
    if relative:
        scale = torch.linalg.vector_norm(x_ref.reshape(x.shape[0], -1), dim=1)
        if (scale == 0).any():
            raise ValueError("x_ref has a sample of norm 0; relative defect is undefined there")
        d = d / scale
    s = torch.sort(d).values
    return DefectSummary(per_sample=d, mean=float(d.mean()), median=_quantile_sorted(s, 0.5),
                         quantiles={q: _quantile_sorted(s, q) for q in qs}, max=float(s[-1]),
                         rms=float(torch.sqrt(torch.mean(d * d))), relative=bool(relative))


def signed_error(x: torch.Tensor, x_ref: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Signed error along a unit direction: ``e_i = <x_i - x_ref_i, u_i>``, ``u_i = v_i/||v_i||``.

    ``direction`` has the shape of ``x`` (one direction per sample) or of one sample
    ``x.shape[1:]`` (a common direction). Projecting two samplers' errors (e.g. DDIM and a
    forward-value corrector) on the same direction shows whether they cancel. Returns ``[n]``.
    """
    _check_pair(x, x_ref)
    if not isinstance(direction, torch.Tensor):
        raise TypeError(f"direction must be a torch.Tensor, got {type(direction).__name__}")
    if direction.dtype != x.dtype or direction.device != x.device:
        raise TypeError("direction must share dtype and device with x")
    if direction.shape == x.shape[1:] and direction.shape != x.shape:
        direction = direction.unsqueeze(0).expand_as(x)
    if direction.shape != x.shape:
        raise ValueError(f"direction must have shape {tuple(x.shape)} or {tuple(x.shape[1:])}, "
                         f"got {tuple(direction.shape)}")
    check_finite(direction, "direction")
    v = direction.reshape(x.shape[0], -1)
    norm = torch.linalg.vector_norm(v, dim=1)
    if (norm == 0).any():
        raise ValueError("direction has a sample of norm 0; a unit direction is undefined there")
    return ((x - x_ref).reshape(x.shape[0], -1) * v).sum(dim=1) / norm


# ------------------------------------------------------------------------------------------------
# (a) closed forms for Gaussians
# ------------------------------------------------------------------------------------------------

def _real(value, name, *, positive=False) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0 (a standard deviation), got {value!r}")
    return v


def _normal_mass(lo: float, hi: float, m: float, s: float) -> float:
    """P(lo < X < hi), X ~ N(m, s^2), evaluated on the tail side for accuracy."""
    a, b = (lo - m) / s, (hi - m) / s
    if a > 0:
        return float(special.ndtr(-a) - special.ndtr(-b))
    return float(special.ndtr(b) - special.ndtr(a))


def tv_gaussian_1d(m1, s1, m2, s2) -> float:
    """Exact TV between ``N(m1, s1^2)`` and ``N(m2, s2^2)`` (standard deviations ``s > 0``).

    The densities cross where ``log p1 = log p2``, i.e. at the real roots of
    ``A x^2 + B x + C = 0`` with ``A = 1/(2 s2^2) - 1/(2 s1^2)``, ``B = m1/s1^2 - m2/s2^2``,
    ``C = m2^2/(2 s2^2) - m1^2/(2 s1^2) + log(s2/s1)`` (two roots when ``s1 != s2``, one when only
    the means differ). On each interval between crossings one density dominates, so
    ``TV = 1/2 sum_I |P1(I) - P2(I)|`` with normal CDFs. Equal standard deviations use the
    cancellation-free ``TV = erf(|m1 - m2| / (2 sqrt(2) s))``. Absolute accuracy ~1e-16.
    """
    m1, m2 = _real(m1, "m1"), _real(m2, "m2")
    s1, s2 = _real(s1, "s1", positive=True), _real(s2, "s2", positive=True)
    if s1 == s2:
        return float(special.erf(abs(m1 - m2) / (2.0 * math.sqrt(2.0) * s1)))
    a = 0.5 / s2 ** 2 - 0.5 / s1 ** 2
    b = m1 / s1 ** 2 - m2 / s2 ** 2
    c = m2 ** 2 / (2 * s2 ** 2) - m1 ** 2 / (2 * s1 ** 2) + math.log(s2 / s1)
    disc = b * b - 4 * a * c  # >= 0 for two Gaussians of different widths
    q = -0.5 * (b + math.copysign(math.sqrt(max(disc, 0.0)), b))
    roots = sorted(r for r in ((q / a) if a != 0 else math.inf, (c / q) if q != 0 else math.inf)
                   if math.isfinite(r))
    cuts = [-math.inf] + roots + [math.inf]
    total = 0.0
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        total += abs(_normal_mass(lo, hi, m1, s1) - _normal_mass(lo, hi, m2, s2))
    return min(1.0, 0.5 * total)


def _gaussian_params(m, cov, name_m, name_c, like=None):
    """Mean [d] and covariance [d, d] tensors (float64 unless tensors are given), validated.

    ``cov`` may be a full [d, d] symmetric positive-definite matrix, a [d] vector (diagonal) or a
    scalar (isotropic).
    """
    ref = like if like is not None else (m if isinstance(m, torch.Tensor) else
                                         cov if isinstance(cov, torch.Tensor) else None)
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float64
    device = ref.device if ref is not None else torch.device("cpu")
    try:
        m = torch.as_tensor(m, dtype=dtype, device=device)
        cov = torch.as_tensor(cov, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name_m} and {name_c} must be numbers, arrays or tensors") from exc
    if m.ndim == 0:
        m = m.reshape(1)
    if m.ndim != 1:
        raise ValueError(f"{name_m} must be a vector [d], got shape {tuple(m.shape)}")
    d = m.shape[0]
    check_finite(m, name_m)
    check_finite(cov, name_c)
    if cov.ndim == 0:
        cov = cov * torch.eye(d, dtype=dtype, device=device)
    elif cov.ndim == 1:
        if cov.shape[0] != d:
            raise ValueError(f"{name_c} as a diagonal must have shape [{d}], got {tuple(cov.shape)}")
        cov = torch.diag(cov)
    elif cov.shape != (d, d):
        raise ValueError(f"{name_c} must be [{d}, {d}], [{d}] or a scalar, got {tuple(cov.shape)}")
    scale = float(cov.abs().max())
    if not torch.allclose(cov, cov.T, rtol=0, atol=1e-12 * max(scale, 1e-300)):
        raise ValueError(f"{name_c} must be symmetric")
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise ValueError(f"{name_c} must be positive definite")
    return m, cov, chol


def _pair_params(m1, C1, m2, C2):
    m1, C1, L1 = _gaussian_params(m1, C1, "m1", "C1")
    m2, C2, L2 = _gaussian_params(m2, C2, "m2", "C2", like=m1)
    if m1.shape != m2.shape:
        raise ValueError(f"m1 and m2 must have the same dimension, got {m1.shape[0]} and "
                         f"{m2.shape[0]}")
    return m1, C1, L1, m2, C2, L2


def _logdet_from_chol(chol):
    return 2.0 * torch.log(torch.diagonal(chol)).sum()


def tv_gaussian_same_cov(m1, m2, cov) -> float:
    """Exact TV between ``N(m1, C)`` and ``N(m2, C)`` in any dimension.

    Along the whitened mean difference the problem is 1-D: ``TV = erf(delta / (2 sqrt 2))`` with
    the Mahalanobis distance ``delta = ||L^-1 (m1 - m2)||``, ``C = L L^T``.
    """
    m1, C, L = _gaussian_params(m1, cov, "m1", "cov")
    m2, _, _ = _gaussian_params(m2, cov, "m2", "cov", like=m1)
    if m1.shape != m2.shape:
        raise ValueError("m1 and m2 must have the same dimension")
    z = torch.linalg.solve_triangular(L, (m1 - m2).unsqueeze(1), upper=False)
    delta = float(torch.linalg.vector_norm(z))
    return float(special.erf(delta / (2.0 * math.sqrt(2.0))))


def kl_gaussian(m1, C1, m2, C2) -> float:
    """``KL(N(m1, C1) || N(m2, C2))`` in any dimension.

    ``KL = 1/2 [tr(C2^-1 C1) - d - log det(C2^-1 C1) + (m2 - m1)^T C2^-1 (m2 - m1)]``, evaluated
    as ``1/2 [sum_i (lam_i - 1 - log lam_i) + ||L2^-1 (m1 - m2)||^2]`` with ``lam`` the eigenvalues
    of ``L2^-1 C1 L2^-T`` (``C2 = L2 L2^T``), which avoids cancellation for nearby Gaussians.
    Covariances: [d, d], [d] (diagonal) or scalar.
    """
    m1, C1, L1, m2, C2, L2 = _pair_params(m1, C1, m2, C2)
    a = torch.linalg.solve_triangular(L2, C1, upper=False)
    a = torch.linalg.solve_triangular(L2, a.T, upper=False)
    lam = torch.linalg.eigvalsh(0.5 * (a + a.T))
    u = lam - 1.0
    # lam - 1 - log lam: through log1p near lam = 1 (no cancellation), through log lam away
    # from it (log1p(lam - 1) is -inf once lam - 1 rounds to -1, for lam < 1e-16)
    term = torch.where(u.abs() < 0.5, u - torch.log1p(u), u - torch.log(lam))
    z = torch.linalg.solve_triangular(L2, (m1 - m2).unsqueeze(1), upper=False)
    return float(0.5 * (term.sum() + (z * z).sum()))


def _sqrtm_psd(a):
    w, v = torch.linalg.eigh(0.5 * (a + a.T))
    return (v * torch.sqrt(torch.clamp(w, min=0.0))) @ v.T


def w2_gaussian(m1, C1, m2, C2) -> float:
    """2-Wasserstein distance between ``N(m1, C1)`` and ``N(m2, C2)`` (Gelbrich / Dowson-Landau).

    ``W2^2 = ||m1 - m2||^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2)``; round-off below 0
    is clamped. Returns ``W2`` (not squared).
    """
    m1, C1, L1, m2, C2, L2 = _pair_params(m1, C1, m2, C2)
    r1 = _sqrtm_psd(C1)
    cross = _sqrtm_psd(r1 @ C2 @ r1)
    w2sq = float(((m1 - m2) ** 2).sum() + torch.trace(C1) + torch.trace(C2) - 2 * torch.trace(cross))
    return math.sqrt(max(w2sq, 0.0))


def hellinger_gaussian(m1, C1, m2, C2) -> float:
    """Hellinger distance ``H``, ``H^2 = 1 - BC``, between two Gaussians in any dimension.

    Bhattacharyya coefficient ``BC = det(C1)^1/4 det(C2)^1/4 / det(Cbar)^1/2
    * exp(-(m1 - m2)^T Cbar^-1 (m1 - m2) / 8)``, ``Cbar = (C1 + C2)/2``; ``H^2 = -expm1(log BC)``.
    """
    m1, C1, L1, m2, C2, L2 = _pair_params(m1, C1, m2, C2)
    cbar = 0.5 * (C1 + C2)
    lb = torch.linalg.cholesky(cbar)
    z = torch.linalg.solve_triangular(lb, (m1 - m2).unsqueeze(1), upper=False)
    log_bc = (0.25 * _logdet_from_chol(L1) + 0.25 * _logdet_from_chol(L2)
              - 0.5 * _logdet_from_chol(lb) - 0.125 * (z * z).sum())
    h2 = float(-torch.expm1(torch.clamp(log_bc, max=0.0)))
    return math.sqrt(max(h2, 0.0))


def tv_bounds_gaussian(m1, C1, m2, C2) -> tuple:
    """Lower and upper bounds on TV between two Gaussians in any dimension.

    Lower: ``H^2 <= TV`` (``H^2 = 1 - BC``). Upper: the smallest of Le Cam's ``H sqrt(2 - H^2)``,
    Pinsker's ``sqrt(KL/2)`` and Bretagnolle-Huber's ``sqrt(1 - exp(-KL))``, with KL the smaller of
    the two directions. Returns ``(lower, upper)``.
    """
    h = hellinger_gaussian(m1, C1, m2, C2)
    kl = min(kl_gaussian(m1, C1, m2, C2), kl_gaussian(m2, C2, m1, C1))
    upper = min(h * math.sqrt(max(2.0 - h * h, 0.0)), math.sqrt(kl / 2.0),
                math.sqrt(-math.expm1(-kl)), 1.0)
    return h * h, upper


# ------------------------------------------------------------------------------------------------
# (b) push-forward importance sampling
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MCEstimate:
    """Monte-Carlo estimate ``value`` with its standard error ``stderr`` from ``n_samples``."""

    value: float
    stderr: float
    n_samples: int

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:.4e} +- {self.stderr:.1e} (n={self.n_samples})"


def _call_log_prob(log_prob, y, name):
    if not callable(log_prob):
        raise TypeError(f"{name} must be a callable y[n, d] -> log density [n]")
    out = log_prob(y)
    if not isinstance(out, torch.Tensor) or out.shape != (y.shape[0],):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must return a tensor of shape [{y.shape[0]}], got {shape}")
    if torch.isnan(out).any() or (out == math.inf).any():
        raise ValueError(f"{name} returned NaN or +inf")
    return out


def _map_with_log_abs_det(sampler_map, x):
    """``y = T(x)`` and ``log |det dT/dx|`` per sample (row-wise map, autograd, d backward passes).

    Row i of every sample's Jacobian is the gradient of ``sum_n y[n, i]`` with respect to x
    (valid because the map is row-wise). Returns ``(y, log_abs_det, sign)``.
    """
    if not callable(sampler_map):
        raise TypeError("sampler_map must be a callable x[n, d] -> y[n, d]")
    d = x.shape[1]
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        y = sampler_map(xg)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"sampler_map must return a tensor of shape {tuple(x.shape)}, "
                             f"got {shape}")
        if not y.requires_grad:
            raise ValueError("sampler_map output does not depend differentiably on its input "
                             "(no autograd graph: does the sampler run under torch.no_grad or "
                             "detach its state?)")
        rows = []
        for i in range(d):
            (g,) = torch.autograd.grad(y[:, i].sum(), xg, retain_graph=i < d - 1,
                                       allow_unused=True)
            rows.append(torch.zeros_like(xg) if g is None else g)
    jac = torch.stack(rows, dim=1)  # jac[n, i, j] = d y_i / d x_j
    if d == 1:
        j = jac[:, 0, 0]
        sign, logabs = torch.sign(j), torch.log(torch.abs(j))
    else:
        sign, logabs = torch.linalg.slogdet(jac)
    y = y.detach()
    check_finite(y, "sampler_map(x)")
    if (sign == 0).any() or not torch.isfinite(logabs).all():
        raise ValueError("sampler_map has a singular or non-finite Jacobian at some points; "
                         "the change of variables needs an invertible map")
    return y, logabs.detach(), sign.detach()


def _check_points(x, name, d=None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [n, d], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape [n, d], got {tuple(x.shape)}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} must have {d} column(s), got shape {tuple(x.shape)}")
    check_finite(x, name)


def log_density_pushforward(sampler_map: Callable, x: torch.Tensor, base_log_prob: Callable):
    """Output points and output log density of a deterministic map at ``y = T(x)``.

    Change of variables: ``log q(T(x)) = log p_base(x) - log |det dT/dx (x)|``, with the Jacobian
    from autograd (d backward passes over the batch). Returns ``(y [n, d], log_q [n])``.
    """
    _check_points(x, "x")
    y, logabs, _ = _map_with_log_abs_det(sampler_map, x)
    return y, _call_log_prob(base_log_prob, x, "base_log_prob") - logabs


def tv_pushforward(sampler_map: Callable, base_sample: torch.Tensor, base_log_prob: Callable,
                   target_log_prob: Callable, *, batch_size: int = 8192) -> MCEstimate:
    """TV between the law q of ``T(X)``, ``X ~ base``, and a target p, by importance sampling.

    ``TV = int (q - p)_+ = E_{y~q}[(1 - p(y)/q(y))_+]``; with ``y_i = T(x_i)`` for the given base
    samples ``x_i`` and ``q(y_i)`` from :func:`log_density_pushforward`, the estimate is the sample
    mean of ``t_i = (1 - exp(log p(y_i) - log q(y_i)))_+ in [0, 1]``, its standard error
    ``std(t) / sqrt(n)``. Unbiased; the terms are bounded, so the error is ~``stderr``.

    ``base_sample``: [n, d] tensor of draws from the base law (draw them with a seeded
    generator); ``base_log_prob``/``target_log_prob``: log-density callables (module docstring).
    Processed in batches of ``batch_size`` rows.
    """
    _check_points(base_sample, "base_sample")
    batch_size = check_positive_int(batch_size, "batch_size")
    n = base_sample.shape[0]
    if n < 2:
        raise ValueError("base_sample must hold at least 2 samples for a standard error")
    terms = []
    for start in range(0, n, batch_size):
        x = base_sample[start:start + batch_size]
        y, log_q = log_density_pushforward(sampler_map, x, base_log_prob)
        if not torch.isfinite(log_q).all():
            raise ValueError("base_log_prob is -inf at some of base_sample's points")
        log_p = _call_log_prob(target_log_prob, y, "target_log_prob")
        terms.append(torch.clamp(-torch.expm1(log_p - log_q), min=0.0))
    t = torch.cat(terms)
    return MCEstimate(value=float(t.mean()), stderr=float(t.std(unbiased=True) / math.sqrt(n)),
                      n_samples=n)


# ------------------------------------------------------------------------------------------------
# (c) density propagation on a 1-D grid
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GridTV:
    """TV from a 1-D quadrature and its diagnostics.

    ``value``: ``1/2 int |q - p|`` over the grid's range; ``mass_q``, ``mass_p``: the mass of each
    density on that range by the same quadrature; ``mass_error = max |1 - mass|``: uncovered tails
    (which can change TV by at most half the missing mass) and unresolved features (quadrature
    error) both show up here, with the same order of magnitude as the error of ``value`` — an
    indicator, checked against ``mass_tol``, not a rigorous bound; ``n_crossings``: sign changes
    of ``q - p`` that were located and split at.
    """

    value: float
    mass_q: float
    mass_p: float
    mass_error: float
    n_crossings: int

    def __float__(self) -> float:
        return self.value


def _check_grid(grid, name="grid", uniform=False):
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"{name} must be a 1-D torch.Tensor of increasing points, got "
                        f"{type(grid).__name__}")
    if not grid.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {grid.dtype}")
    if grid.ndim != 1 or grid.numel() < 3:
        raise ValueError(f"{name} must be 1-D with >= 3 points, got shape {tuple(grid.shape)}")
    check_finite(grid, name)
    steps = grid[1:] - grid[:-1]
    if not (steps > 0).all():
        raise ValueError(f"{name} must be strictly increasing")
    if uniform:
        h = (grid[-1] - grid[0]) / (grid.numel() - 1)
        slack = 1e-6 * float(h) + 8 * torch.finfo(grid.dtype).eps * float(grid.abs().max())
        if float((steps - h).abs().max()) > slack:
            raise ValueError(f"{name} must be uniformly spaced (e.g. torch.linspace)")


def _gauss_legendre(order, like):
    t, w = np.polynomial.legendre.leggauss(order)
    return (torch.as_tensor(t, dtype=like.dtype, device=like.device),
            torch.as_tensor(w, dtype=like.dtype, device=like.device))


def _panel_integrals(fn, lo, hi, t, w):
    """GL integrals over [lo_k, hi_k] of the (q, p) pair returned by ``fn(points)``."""
    half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
    nodes = mid[:, None] + half[:, None] * t[None, :]
    q, p = fn(nodes.reshape(-1))
    wk = half[:, None] * w[None, :]
    return (wk * q.reshape(nodes.shape)).sum(1), (wk * p.reshape(nodes.shape)).sum(1), nodes, \
        (q - p).reshape(nodes.shape)


def half_l1_1d(fn, edges, quad_order, *, negligible=1e-15, bisection_steps=64):
    """``(1/2 int |q - p|, int q, int p, n_crossings)`` over ``[edges[0], edges[-1]]``.

    ``fn(points[k]) -> (q[k], p[k])`` evaluates the two densities. Composite Gauss-Legendre of
    ``quad_order`` nodes per panel; ``f = q - p`` is sampled at the panel edges and nodes, every
    sign change between consecutive samples is located by bisection (``bisection_steps`` halvings,
    to float resolution) and the panel is split there, so each piece integrates a smooth
    function of one sign (no kink error). Panels whose possible kink error
    ``width * max|f|`` is below ``negligible`` are not split (round-off sign flips where q = p).
    """
    t, w = _gauss_legendre(quad_order, edges)
    lo, hi = edges[:-1], edges[1:]
    int_q, int_p, nodes, f_nodes = _panel_integrals(fn, lo, hi, t, w)
    qe, pe = fn(edges)
    f_edges = qe - pe
    pts = torch.cat([lo[:, None], nodes, hi[:, None]], dim=1)
    vals = torch.cat([f_edges[:-1, None], f_nodes, f_edges[1:, None]], dim=1)
    prod = vals[:, :-1] * vals[:, 1:]
    change = (prod < 0) | ((prod == 0) & ((vals[:, :-1] != 0) | (vals[:, 1:] != 0)))
    significant = (hi - lo) * vals.abs().max(dim=1).values > negligible
    split = change.any(dim=1) & significant
    total = (int_q - int_p)[~split].abs().sum()
    n_cross = 0
    if split.any():
        change = change & split[:, None]
        pi, ki = change.nonzero(as_tuple=True)
        a, b = pts[pi, ki].clone(), pts[pi, ki + 1].clone()
        fa = vals[pi, ki].clone()
        for _ in range(bisection_steps):
            m = 0.5 * (a + b)
            qm, pm = fn(m)
            fm = qm - pm
            right = (torch.sign(fm) == torch.sign(fa)) & (fa != 0)
            a = torch.where(right, m, a)
            fa = torch.where(right, fm, fa)
            b = torch.where(right, b, m)
        roots = 0.5 * (a + b)
        n_cross = int(roots.numel())
        sub_lo, sub_hi = [], []
        split_idx = split.nonzero(as_tuple=True)[0]
        for i in split_idx.tolist():
            cuts = torch.sort(torch.cat([lo[i:i + 1], roots[pi == i], hi[i:i + 1]])).values
            sub_lo.append(cuts[:-1])
            sub_hi.append(cuts[1:])
        sub_lo, sub_hi = torch.cat(sub_lo), torch.cat(sub_hi)
        sq, sp, _, _ = _panel_integrals(fn, sub_lo, sub_hi, t, w)
        total = total + (sq - sp).abs().sum()
    mass_q, mass_p = float(int_q.sum()), float(int_p.sum())
    return 0.5 * float(total), mass_q, mass_p, n_cross


def _grid_result(tv, mass_q, mass_p, n_cross, mass_tol):
    mass_error = max(abs(1.0 - mass_q), abs(1.0 - mass_p))
    if not mass_error <= mass_tol:
        raise ValueError(f"the quadrature gives mass {mass_q:.12f} to q and {mass_p:.12f} to p "
                         f"(both should be 1; |1 - mass| = {mass_error:.2e} > mass_tol={mass_tol:g}): "
                         f"the grid does not cover the mass or does not resolve the densities; "
                         f"widen or refine the grid (or raise mass_tol)")
    return GridTV(value=min(max(tv, 0.0), 1.0), mass_q=mass_q, mass_p=mass_p,
                  mass_error=mass_error, n_crossings=n_cross)


def tv_density_1d_deterministic(sampler_map: Callable, base_log_prob: Callable,
                                target_log_prob: Callable, grid: torch.Tensor, *,
                                quad_order: int = 8, mass_tol: float = 1e-8) -> GridTV:
    """TV between the law q of ``T(X)``, ``X ~ base`` (1-D, T monotone) and a target p, by quadrature.

    Change of variables in the TV integral itself: with ``y = T(x)``,

        TV = 1/2 int |q(y) - p(y)| dy = 1/2 int |p_base(x) - p(T(x)) |T'(x)|| dx,

    because ``q(T(x)) |T'(x)| = p_base(x)``. The integral runs over the *starting points*
    ``x in [grid[0], grid[-1]]``, so no output density has to be interpolated (this replaces
    "push a grid through T and interpolate q onto a common grid", whose interpolation error would
    dominate). ``T'`` comes from autograd through ``sampler_map`` (exact up to round-off), the
    integral from :func:`half_l1_1d`: composite Gauss-Legendre (``quad_order`` nodes per panel of
    ``grid``), split at the located sign changes of the integrand.

    ``grid``: strictly increasing 1-D tensor of panel edges in x-space (any spacing, so it can be
    refined where T expands). It must cover the base mass *and* the preimage of the target's mass,
    and resolve both integrands: a panel of width h maps to width ``~ h |T'|`` in y, which must be
    small against the target's narrowest feature. Sizing rule: ``h * max|T'| <~ (narrowest
    feature)/5`` with the default ``quad_order=8``. Measured: affine maps vs the exact Gaussian TV
    ~1e-17 with 500 panels over [-12, 12]; DDIM on a 1-D mixture (sigma 2 -> 0.1, T' up to 18)
    needs 8000 panels over [-20, 20] for |1 - mass| ~ 1e-12, while 2000 panels give 3e-7 (and are
    rejected by the default ``mass_tol``). Raises ``ValueError`` if the map is not monotone on the
    grid or if ``|1 - mass|`` of either density exceeds ``mass_tol`` (see :class:`GridTV`).
    """
    _check_grid(grid)
    quad_order = check_positive_int(quad_order, "quad_order")
    mass_tol = check_in_range(mass_tol, "mass_tol", 0.0, None)
    signs = set()

    def densities(x):
        xs = x.reshape(-1, 1)
        y, logabs, sign = _map_with_log_abs_det(sampler_map, xs)
        signs.update(torch.unique(sign).tolist())
        if len(signs) > 1:
            raise ValueError("sampler_map must be monotone on the grid (T' changes sign)")
        base = torch.exp(_call_log_prob(base_log_prob, xs, "base_log_prob"))
        pulled = torch.exp(_call_log_prob(target_log_prob, y, "target_log_prob") + logabs)
        return base, pulled

    tv, mq, mp, nc = half_l1_1d(densities, grid, quad_order)
    return _grid_result(tv, mq, mp, nc, mass_tol)


def _eval_transition(transition, grid, k):
    if not callable(transition):
        raise TypeError(f"transitions[{k}] must be a callable x[n, 1] -> (mean, std)")
    out = transition(grid[:, None])
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"transitions[{k}] must return a pair (mean, std)")
    mean, std = out
    mean = torch.as_tensor(mean, dtype=grid.dtype, device=grid.device)
    std = torch.as_tensor(std, dtype=grid.dtype, device=grid.device)
    if mean.shape != (grid.numel(), 1):
        raise ValueError(f"transitions[{k}] mean must have shape [{grid.numel()}, 1], got "
                         f"{tuple(mean.shape)}")
    try:
        std = torch.broadcast_to(std, mean.shape)
    except RuntimeError as exc:
        raise ValueError(f"transitions[{k}] std must broadcast to the mean's shape") from exc
    check_finite(mean, f"transitions[{k}] mean")
    check_finite(std, f"transitions[{k}] std")
    if (std <= 0).any():
        raise ValueError(f"transitions[{k}] std must be > 0 everywhere on the grid")
    return mean.reshape(-1), std.reshape(-1)


def _kernel_apply(y, mean, std, weights, chunk_elems=1 << 22):
    """``out(y_i) = sum_j weights_j N(y_i; mean_j, std_j^2)`` (dense, chunked over y)."""
    coef = weights / (std * math.sqrt(2.0 * math.pi))
    out = torch.empty_like(y)
    rows = max(1, chunk_elems // max(1, mean.numel()))
    for s in range(0, y.numel(), rows):
        z = (y[s:s + rows, None] - mean[None, :]) / std[None, :]
        out[s:s + rows] = torch.exp(-0.5 * z * z) @ coef
    return out


def _trapezoid_weights(grid):
    h = (grid[-1] - grid[0]) / (grid.numel() - 1)
    w = torch.full_like(grid, float(h))
    w[0] = w[-1] = 0.5 * float(h)
    return w


def _check_resolution(mean, std, wq, h, min_resolution, k):
    """Kernel width ``min(std, std/|mean'|)`` must span >= ``min_resolution`` grid spacings
    wherever the weighted density ``wq`` is above 1e-14 of its maximum."""
    relevant = wq > 1e-14 * float(wq.max())
    slope = torch.gradient(mean, spacing=h)[0].abs()
    width = torch.minimum(std, std / torch.clamp(slope, min=1e-300))
    res = float((width[relevant] / h).min())
    if res < min_resolution:
        raise ValueError(f"transitions[{k}]: the kernel width (std / |d mean/dx|) is only "
                         f"{res:.2f} grid spacings where the density has mass; need >= "
                         f"{min_resolution} (refine the grid)")


def _propagate(initial_log_prob, transitions, grid, min_resolution):
    """Density values on ``grid`` after the given transitions (trapezoid/Nystrom quadrature)."""
    if not callable(initial_log_prob):
        raise TypeError("initial_log_prob must be a callable x[n, 1] -> log density [n]")
    q = torch.exp(_call_log_prob(initial_log_prob, grid[:, None], "initial_log_prob"))
    w = _trapezoid_weights(grid)
    h = float(w[1])
    for k, tr in enumerate(transitions):
        mean, std = _eval_transition(tr, grid, k)
        wq = w * q
        _check_resolution(mean, std, wq, h, min_resolution, k)
        q = _kernel_apply(grid, mean, std, wq)
    return q


def propagate_density_1d(initial_log_prob: Callable, transitions: Sequence[Callable],
                         grid: torch.Tensor, *, min_resolution: float = 1.5) -> torch.Tensor:
    """Density of a 1-D Gaussian-transition chain on a uniform grid, by quadrature.

    With ``q_0 = exp(initial_log_prob)`` and kernels ``k_n(y | x) = N(y; mean_n(x), std_n(x)^2)``,

        q_{n+1}(y_i) = int k_n(y_i | x) q_n(x) dx  ~=  sum_j w_j k_n(y_i | x_j) q_n(x_j),

    with trapezoid weights ``w_j`` on the uniform ``grid``. For a smooth integrand decaying at
    the grid's ends the trapezoid rule converges geometrically, with error ~``2 exp(-2 pi^2 r^2)``
    where ``r`` = kernel width in grid spacings: ``r >= 1.5`` (the default ``min_resolution``,
    checked at every step where the density has mass; the width is ``min(std, std / |mean'|)``)
    makes each step exact to ~1e-19 relative, so no Monte-Carlo noise and only round-off remain.
    ``q_0`` must itself be resolved by the grid. Cost O(N G^2) for N steps and G points
    (chunked, so memory stays O(G)).

    Returns the density after all transitions at the grid points ([G], grid's dtype/device).
    """
    _check_grid(grid, uniform=True)
    min_resolution = check_in_range(min_resolution, "min_resolution", 0.0, None, low_open=True)
    return _propagate(initial_log_prob, list(transitions), grid, min_resolution)


def tv_density_1d_stochastic(initial_log_prob: Callable, transitions: Sequence[Callable],
                             target_log_prob: Callable, grid: torch.Tensor, *,
                             quad_order: int = 8, min_resolution: float = 1.5,
                             mass_tol: float = 1e-8) -> GridTV:
    """TV between the end law of a 1-D Gaussian-transition chain and a target, without MC noise.

    The density is propagated through all but the last transition by
    :func:`propagate_density_1d`; the end density is then a smooth function of y given by the
    quadrature formula itself (Nystrom interpolation) ``q_N(y) = sum_j w_j k_N(y | x_j)
    q_{N-1}(x_j)`` and ``TV = 1/2 int |q_N - p|`` is integrated over ``[grid[0], grid[-1]]`` with
    composite Gauss-Legendre (``quad_order`` per grid panel) split at the located sign changes of
    ``q_N - p``. With no transitions it compares ``exp(initial_log_prob)`` with the target.

    ``grid``: uniform 1-D tensor (e.g. ``torch.linspace``) covering the mass of every q_n and of p
    and resolving the kernels (``min_resolution``, see :func:`propagate_density_1d`) and the
    target. Measured (tests/test_metrics.py): ~5e-16 against the exact TV of a 4-step
    linear-Gaussian chain on 401 points over [-12, 12]. Raises ``ValueError`` if ``|1 - mass|``
    of either density exceeds ``mass_tol`` (see :class:`GridTV`).
    """
    _check_grid(grid, uniform=True)
    quad_order = check_positive_int(quad_order, "quad_order")
    min_resolution = check_in_range(min_resolution, "min_resolution", 0.0, None, low_open=True)
    mass_tol = check_in_range(mass_tol, "mass_tol", 0.0, None)
    transitions = list(transitions)
    if not callable(target_log_prob):
        raise TypeError("target_log_prob must be a callable y[n, 1] -> log density [n]")

    if not transitions:
        def end_density(y):
            return torch.exp(_call_log_prob(initial_log_prob, y[:, None], "initial_log_prob"))
    else:
        q_prev = _propagate(initial_log_prob, transitions[:-1], grid, min_resolution)
        k_last = len(transitions) - 1
        mean, std = _eval_transition(transitions[-1], grid, k_last)
        w = _trapezoid_weights(grid)
        wq = w * q_prev
        _check_resolution(mean, std, wq, float(w[1]), min_resolution, k_last)

        def end_density(y):
            return _kernel_apply(y, mean, std, wq)

    def densities(y):
        return end_density(y), torch.exp(_call_log_prob(target_log_prob, y[:, None],
                                                        "target_log_prob"))

    tv, mq, mp, nc = half_l1_1d(densities, grid, quad_order)
    return _grid_result(tv, mq, mp, nc, mass_tol)


# ------------------------------------------------------------------------------------------------
# (d) sample-based fall-backs: histogram and KDE
# ------------------------------------------------------------------------------------------------

def _as_samples(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of samples [n] or [n, d], got "
                        f"{type(x).__name__}")
    if x.ndim == 1:
        x = x[:, None]
    _check_points(x, name)
    if x.shape[1] not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D samples ([n], [n, 1] or [n, 2]), got "
                         f"{tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 samples")
    return x


def _resolve_q(q, d, like):
    if isinstance(q, torch.Tensor):
        qs = _as_samples(q, "q")
        if qs.shape[1] != d:
            raise ValueError(f"q samples must have dimension {d}, got {qs.shape[1]}")
        if qs.dtype != like.dtype or qs.device != like.device:
            raise TypeError("q samples must share dtype and device with samples_p")
        return qs, None
    if callable(q):
        return None, q
    raise TypeError("q must be a tensor of samples or a log-density callable y[n, d] -> [n]")


def _resolve_range(range_, samples, d, pad):
    if range_ is None:
        allx = torch.cat([s for s in samples if s is not None])
        lo, hi = allx.min(dim=0).values, allx.max(dim=0).values
        span = torch.clamp(hi - lo, min=1e-12)
        return [(float(lo[k] - pad * span[k]), float(hi[k] + pad * span[k])) for k in range(d)]
    rng = [range_] if d == 1 and len(range_) == 2 and isinstance(range_[0], numbers.Real) \
        else list(range_)
    if len(rng) != d:
        raise ValueError(f"range must give (low, high) for each of the {d} dimension(s)")
    out = []
    for lo, hi in rng:
        lo, hi = check_in_range(lo, "range"), check_in_range(hi, "range")
        if not hi > lo:
            raise ValueError(f"range must have high > low, got ({lo}, {hi})")
        out.append((lo, hi))
    return out


def _bin_probs(x, edges_lo, widths, bins, d):
    idx = torch.floor((x - edges_lo) / widths).long()
    inside = ((idx >= 0) & (idx < bins)).all(dim=1)
    idx = idx[inside]
    flat = idx[:, 0] if d == 1 else idx[:, 0] * bins + idx[:, 1]
    counts = torch.bincount(flat, minlength=bins ** d).to(x.dtype)
    return counts / x.shape[0]


def _cell_quadrature(log_prob, lows, widths, bins, d, order, like):
    """Probabilities of the grid cells under exp(log_prob) (tensor-product Gauss-Legendre)."""
    t, w = _gauss_legendre(order, like)
    axes = []
    for k in range(d):
        left = lows[k] + widths[k] * torch.arange(bins, dtype=like.dtype, device=like.device)
        nodes = left[:, None] + 0.5 * widths[k] * (t[None, :] + 1.0)  # [bins, order]
        axes.append((nodes, 0.5 * widths[k] * w))
    if d == 1:
        nodes, wt = axes[0]
        dens = torch.exp(_call_log_prob(log_prob, nodes.reshape(-1, 1), "q"))
        return (dens.reshape(bins, order) * wt).sum(1)
    (n0, w0), (n1, w1) = axes
    g0 = n0.reshape(bins, 1, order, 1).expand(bins, bins, order, order)
    g1 = n1.reshape(1, bins, 1, order).expand(bins, bins, order, order)
    pts = torch.stack([g0.reshape(-1), g1.reshape(-1)], dim=1)
    dens = torch.exp(_call_log_prob(log_prob, pts, "q")).reshape(bins, bins, order, order)
    return (dens * w0[None, None, :, None] * w1[None, None, None, :]).sum((2, 3)).reshape(-1)


def tv_histogram(samples_p: torch.Tensor, q, *, bins: int = 50, range=None,
                 quad_order: int = 4) -> float:
    """Histogram TV between samples of p and q (samples or a log-density callable), 1-D or 2-D.

    ``TV_hist = 1/2 sum_b |P_b - Q_b| + 1/2 (P_out + Q_out)`` over ``bins`` (per dimension) equal
    cells on ``range`` (default: the samples' span padded by 5 %), where ``P_b`` are empirical
    cell frequencies, ``Q_b`` too when ``q`` is a sample tensor, or the cell probabilities by
    Gauss-Legendre quadrature (``quad_order`` per dimension and cell) when ``q`` is a log-density
    callable; ``*_out`` is the mass outside the range. Biases: binning lowers TV (it coarse-grains
    both laws); sampling noise raises it by about ``1/2 sum_b E|P_b - E P_b| ~ sqrt(B / (2 pi n))``
    for B occupied cells. A rough cross-check, not a convergence metric.
    """
    p = _as_samples(samples_p, "samples_p")
    d = p.shape[1]
    q_samples, q_logp = _resolve_q(q, d, p)
    bins = check_positive_int(bins, "bins")
    quad_order = check_positive_int(quad_order, "quad_order")
    rng = _resolve_range(range, [p, q_samples], d, 0.05)
    lows = torch.tensor([r[0] for r in rng], dtype=p.dtype, device=p.device)
    widths = torch.tensor([(r[1] - r[0]) / bins for r in rng], dtype=p.dtype, device=p.device)
    pb = _bin_probs(p, lows, widths, bins, d)
    if q_samples is not None:
        qb = _bin_probs(q_samples, lows, widths, bins, d)
    else:
        qb = _cell_quadrature(q_logp, lows, widths, bins, d, quad_order, p)
    p_out = max(0.0, 1.0 - float(pb.sum()))
    q_out = max(0.0, 1.0 - float(qb.sum()))
    return min(1.0, 0.5 * float((pb - qb).abs().sum()) + 0.5 * (p_out + q_out))


def _linear_binning(x, lows, spacing, size):
    """Counts of samples spread on the grid nodes with linear (cloud-in-cell) weights, / n."""
    n, d = x.shape
    u = (x - lows) / spacing
    base = torch.floor(u).long()
    frac = u - base
    counts = torch.zeros(size ** d, dtype=x.dtype, device=x.device)
    for corner in range(2 ** d):
        offs = [(corner >> k) & 1 for k in range(d)]
        idx = base + torch.tensor(offs, device=x.device)
        wgt = torch.ones(n, dtype=x.dtype, device=x.device)
        for k in range(d):
            wgt = wgt * (frac[:, k] if offs[k] else 1.0 - frac[:, k])
        inside = ((idx >= 0) & (idx < size)).all(dim=1)
        idx = idx.clamp(0, size - 1)
        flat = idx[:, 0] if d == 1 else idx[:, 0] * size + idx[:, 1]
        counts.index_add_(0, flat, torch.where(inside, wgt, torch.zeros_like(wgt)))
    return counts.reshape((size,) * d) / n


def _binned_kde(x, lows, spacing, size, bandwidth):
    """Gaussian product-kernel KDE of ``x`` [n, d] on the uniform grid (linear binning, then a
    separable discrete convolution with the kernel sampled on the grid out to 5 bandwidths)."""
    d = x.shape[1]
    dens = _linear_binning(x, lows, spacing, size)
    for k in range(d):
        half = int(math.ceil(5.0 * float(bandwidth[k]) / float(spacing[k])))
        offs = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device) * spacing[k]
        kern = torch.exp(-0.5 * (offs / bandwidth[k]) ** 2) / (math.sqrt(2 * math.pi) * bandwidth[k])
        moved = dens.movedim(k, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, size)
        conv = torch.nn.functional.conv1d(flat, kern.flip(0).reshape(1, 1, -1), padding=half)
        dens = conv.reshape(shape).movedim(-1, k)
    return dens.reshape(-1)


def tv_kde(samples_p: torch.Tensor, q, *, bandwidth=None, grid_size: int | None = None,
           range=None) -> float:
    """KDE TV between samples of p and q (samples or a log-density callable), 1-D or 2-D.

    ``p`` (and ``q`` when given as samples) are replaced by Gaussian kernel density estimates with
    per-dimension bandwidth ``h_k = sigma_k n^(-1/(d+4))`` (Scott's rule) unless ``bandwidth`` is
    given, evaluated on a uniform ``grid_size``^d grid over ``range`` (default: the samples' span
    padded by 3 bandwidths; ``grid_size`` 1024 in 1-D, 128 in 2-D), and
    ``TV ~= 1/2 sum |p_hat - q| dA`` plus half of the mass each density leaves outside the grid.
    The KDE is computed by linear binning of the samples onto the grid and a separable discrete
    Gaussian convolution (kernel cut at 5 bandwidths): cost O(n + grid_size^d * bandwidth/spacing).
    Smoothing biases TV (it blurs both laws; against an exact q it *raises* TV by the KDE bias
    O(h^2)); noise raises it too; the grid spacing should be well below the bandwidth. A rough
    cross-check only.
    """
    p = _as_samples(samples_p, "samples_p")
    d = p.shape[1]
    q_samples, q_logp = _resolve_q(q, d, p)
    if grid_size is None:
        grid_size = 1024 if d == 1 else 128
    grid_size = check_positive_int(grid_size, "grid_size", minimum=8)

    def scott(x):
        return x.std(dim=0, unbiased=True) * x.shape[0] ** (-1.0 / (d + 4))

    if bandwidth is None:
        bw_p = scott(p)
        bw_q = scott(q_samples) if q_samples is not None else None
    else:
        bw = torch.as_tensor(bandwidth, dtype=p.dtype, device=p.device).reshape(-1)
        if bw.numel() == 1:
            bw = bw.expand(d)
        if bw.numel() != d or not torch.isfinite(bw).all() or (bw <= 0).any():
            raise ValueError(f"bandwidth must be a positive number or {d} positive numbers")
        bw_p = bw_q = bw
    if (bw_p <= 0).any():
        raise ValueError("samples_p are degenerate (zero spread); cannot choose a bandwidth")
    if bw_q is not None and (bw_q <= 0).any():
        raise ValueError("q's samples are degenerate (zero spread); cannot choose a bandwidth "
                         "(give bandwidth=...)")
    pad_bw = bw_p if bw_q is None else torch.maximum(bw_p, bw_q)
    if range is None:
        allx = torch.cat([s for s in (p, q_samples) if s is not None])
        lo = allx.min(dim=0).values - 3 * pad_bw
        hi = allx.max(dim=0).values + 3 * pad_bw
        rng = [(float(lo[k]), float(hi[k])) for k in builtins.range(d)]
    else:
        rng = _resolve_range(range, [p], d, 0.0)
    axes = [torch.linspace(a, b, grid_size, dtype=p.dtype, device=p.device) for a, b in rng]
    lows = torch.tensor([a for a, _ in rng], dtype=p.dtype, device=p.device)
    spacing = torch.tensor([(b - a) / (grid_size - 1) for a, b in rng], dtype=p.dtype,
                           device=p.device)
    cell = float(torch.prod(spacing))
    if d == 1:
        pts = axes[0][:, None]
    else:
        g0, g1 = torch.meshgrid(axes[0], axes[1], indexing="ij")
        pts = torch.stack([g0.reshape(-1), g1.reshape(-1)], dim=1)
    p_hat = _binned_kde(p, lows, spacing, grid_size, bw_p)
    if q_samples is not None:
        q_val = _binned_kde(q_samples, lows, spacing, grid_size, bw_q)
    else:
        q_val = torch.exp(_call_log_prob(q_logp, pts, "q"))
    p_out = max(0.0, 1.0 - float(p_hat.sum()) * cell)
    q_out = max(0.0, 1.0 - float(q_val.sum()) * cell)
    tv = 0.5 * float((p_hat - q_val).abs().sum()) * cell + 0.5 * (p_out + q_out)
    if not math.isfinite(tv):  # never hidden by the clamp to 1 (min(1, nan) is 1)
        raise FloatingPointError("tv_kde: the density estimates are not finite (q's log-density "
                                 "or the samples overflow)")
    return min(1.0, tv)

