"""Closed forms between Gaussians: TV (exact in 1-D and for equal covariances), KL, W2, Hellinger, TV bounds.

Part of :mod:`samplerlab.experiments.metrics` (see its docstring for the interfaces).
"""
from __future__ import annotations

import math
import numbers
import numpy as np
import torch
from scipy import special
from samplerlab.theory.validation import check_finite

__all__ = ['tv_gaussian_1d', 'tv_gaussian_same_cov', 'kl_gaussian', 'w2_gaussian', 'hellinger_gaussian', 'tv_bounds_gaussian']


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
