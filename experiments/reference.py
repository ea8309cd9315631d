"""Exact reference solutions of the probability-flow ODE (PF-ODE) and exact reference laws.

The PF-ODE of the VE/EDM process ``x = x0 + sigma * eps`` (DESIGN.md) is, in
``lambda = -log(sigma)``,

    dx/dlambda = D(x, e^-lambda) - x,                                            (1)

and, in sigma itself,

    dx/dsigma = (x - D(x, sigma)) / sigma = -sigma * grad log p_sigma(x).         (2)

:func:`solve_pf_ode` integrates (1) with scipy's DOP853 (Hairer-Norsett-Wanner explicit RK 8(5,3))
at tight tolerances. (1) cannot reach sigma = 0 (lambda = +inf), so below ``sigma_switch`` the
solver integrates (2) instead: by Tweedie the right side is ``-sigma * score(x, sigma)``, which
for non-degenerate covariances is an analytic function of sigma through sigma = 0 (the score
depends on sigma^2 only), so DOP853 integrates it to sigma = 0 with no singularity. Both forms
run in either direction (sigma decreasing = sampling, increasing = encoding).

Accuracy in float64 at the default tolerances (tests/test_reference.py): against the closed
form for Gaussian targets (:func:`gaussian_flow_closed_form`; 1-D and an anisotropic 3-D case)
the error is at most 1e-13 when sigma decreases (80 -> 0.002, 80 -> 0, 1e3 -> 1e-4, ...) and at
most 6e-12 (relative 1.4e-12) when it increases to 80; on 1-D mixtures, measured through the
exact monotone-transport identity ``F_sigma_to(x_to) = F_sigma_from(x_from)``, at most 6e-12
(sampling) and 1.4e-9 absolute / 1.8e-12 relative (encoding 1e-4 -> 1e3, |x| ~ 1e3). The
guarantee tested is ``|error| <= 1e-10 * max(1, |x(sigma_to)|)``. An independent mpmath Taylor
solution (30 digits) of the 1-D two-mode mixture from 80 to 0.002 agrees to 4e-13.

The solver is a verification tool, not a sampler: every right-hand-side evaluation moves the
state between numpy (scipy) and torch (the denoiser on ``x``'s device), so it is CPU-bound by
design. The batch is flattened into one system; scipy's error norm is the RMS over all its
components, so a single trajectory could in principle get a looser tolerance than the others.
Measured (1-D two-mode target, modes 6 apart with standard deviations 0.1/0.5, sigma 80 -> 0.002,
error from the exact 1-D monotone-transport identity ``F_0.002(x_end) = F_80(x_start)``): the max
error over 16000 points is 6.1e-12 solved as one system and 6.4e-12 in chunks of 4000, so chunking
buys nothing but time; ``chunk_size`` (default 65536 scalar unknowns per solve) only bounds memory.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Optional, Union

import numpy as np
import torch
from scipy.integrate import solve_ivp

from samplerlab.theory.validation import as_float64_vector, check_noise_level

from samplerlab.experiments.targets import GaussianMixture

__all__ = ["solve_pf_ode", "solve_pf_ode_path", "gaussian_flow_closed_form", "noised_marginal"]

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: default number of scalar unknowns (points * d) per scipy solve, see the module docstring
_DEFAULT_CHUNK_ELEMENTS = 65536


def _level(value, name: str) -> float:
    """A single noise level as a float >= 0 (:func:`samplerlab.theory.validation.check_noise_level`)."""
    return check_noise_level(value, name)


class _Field:
    """The two right-hand sides (1) and (2) for one chunk, on the numpy/torch boundary."""

    def __init__(self, target_or_denoiser, x: torch.Tensor):
        self.shape = x.shape
        self.device = x.device
        if isinstance(target_or_denoiser, GaussianMixture):
            # Evaluate the exact target in float64 on x's device whatever x's dtype is.
            self.dtype = torch.float64
            target = target_or_denoiser.to(device=x.device, dtype=torch.float64)
            self.denoiser = target.denoiser
            self.score = target.score
        elif callable(target_or_denoiser):
            self.dtype = x.dtype
            self.denoiser = target_or_denoiser
            self.score = None
        else:
            raise TypeError("target_or_denoiser must be a GaussianMixture or a callable "
                            f"denoiser(x, sigma), got {type(target_or_denoiser).__name__}")
        self.nfe = 0

    def _tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y).reshape(self.shape).to(device=self.device, dtype=self.dtype)

    def _numpy(self, t: torch.Tensor, what: str) -> np.ndarray:
        if t.shape != self.shape:
            raise ValueError(f"the denoiser returned shape {tuple(t.shape)} for input shape "
                             f"{tuple(self.shape)}")
        out = t.detach().to(device="cpu", dtype=torch.float64).numpy().ravel()
        if not np.isfinite(out).all():
            raise FloatingPointError(f"the {what} returned NaN or inf during the reference solve")
        return out

    def _sigma(self, sigma: float) -> torch.Tensor:
        return torch.tensor(sigma, dtype=self.dtype, device=self.device)

    def in_lambda(self, lam: float, y: np.ndarray) -> np.ndarray:
        """(1): dx/dlambda = D(x, e^-lambda) - x."""
        self.nfe += 1
        x = self._tensor(y)
        with torch.no_grad():
            d = self.denoiser(x, self._sigma(math.exp(-lam)))
        return self._numpy(d, "denoiser") - y

    def in_sigma(self, sigma: float, y: np.ndarray) -> np.ndarray:
        """(2): dx/dsigma = -sigma * score(x, sigma) (= (x - D)/sigma; 0 at sigma = 0)."""
        self.nfe += 1
        if sigma <= 0.0:
            return np.zeros_like(y)
        x = self._tensor(y)
        with torch.no_grad():
            if self.score is not None:
                return -sigma * self._numpy(self.score(x, self._sigma(sigma)), "score")
            d = self.denoiser(x, self._sigma(sigma))
        return (y - self._numpy(d, "denoiser")) / sigma


def _integrate(fun, t0: float, t1: float, y0: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    if t0 == t1:
        return y0
    sol = solve_ivp(fun, (t0, t1), y0, method="DOP853", rtol=rtol, atol=atol)
    if sol.status != 0:
        raise RuntimeError(f"DOP853 failed between {t0!r} and {t1!r}: {sol.message}")
    return sol.y[:, -1]


def _solve_segment(field: _Field, y: np.ndarray, s_from: float, s_to: float,
                   sigma_switch: float, rtol: float, atol: float) -> np.ndarray:
    """One monotone segment from ``s_from`` to ``s_to`` (either order, one of them may be 0)."""
    if s_from == s_to:
        return y
    lo, hi = min(s_from, s_to), max(s_from, s_to)
    if lo > 0.0:                                   # (1) all the way
        return _integrate(field.in_lambda, -math.log(s_from), -math.log(s_to), y, rtol, atol)
    # lo == 0: (2) on [0, min(sigma_switch, hi)], (1) above.
    mid = min(sigma_switch, hi)
    if s_to == 0.0:                                # decreasing to 0
        y = _integrate(field.in_lambda, -math.log(s_from), -math.log(mid), y, rtol, atol)
        return _integrate(field.in_sigma, mid, 0.0, y, rtol, atol)
    y = _integrate(field.in_sigma, 0.0, mid, y, rtol, atol)  # increasing from 0
    return _integrate(field.in_lambda, -math.log(mid), -math.log(s_to), y, rtol, atol)


def _default_switch(target_or_denoiser) -> float:
    if isinstance(target_or_denoiser, GaussianMixture):
        # the smallest standard deviation of the data: below it the score is smooth in sigma.
        return math.sqrt(target_or_denoiser.smallest_variance())
    return 0.1


#: tolerances are raised to at least this many units of the model's rounding (eps of its dtype)
TOLERANCE_FLOOR_EPS = 100.0


def _model_eps(target_or_denoiser, x: torch.Tensor, sigma: float) -> float:
    """The relative precision of the model's outputs: float64 for a mixture target; for a
    callable the coarser of ``x``'s dtype and the dtype of one probe output at ``sigma``."""
    if isinstance(target_or_denoiser, GaussianMixture):
        return float(torch.finfo(torch.float64).eps)
    eps = float(torch.finfo(x.dtype).eps)
    if sigma > 0 and callable(target_or_denoiser):
        with torch.no_grad():
            probe = target_or_denoiser(x[:1], torch.tensor(sigma, dtype=x.dtype, device=x.device))
        if isinstance(probe, torch.Tensor) and probe.is_floating_point():
            eps = max(eps, float(torch.finfo(probe.dtype).eps))
    return eps


def _check_tolerances(rtol, atol):
    for name, val in (("rtol", rtol), ("atol", atol)):
        if isinstance(val, bool) or not isinstance(val, numbers.Real) or not (
                math.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {val!r}")


def _check_x(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape [n, ...], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x must have shape [n, ...] with n >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite (no NaN or inf)")


def solve_pf_ode_path(target_or_denoiser: Union[GaussianMixture, Denoiser], x: torch.Tensor,
                      sigmas, *, rtol: float = 1e-13, atol: float = 1e-13,
                      sigma_switch: Optional[float] = None,
                      chunk_size: Optional[int] = None) -> torch.Tensor:
    """The exact PF-ODE trajectory through the noise levels ``sigmas`` (a grid).

    Parameters
    ----------
    target_or_denoiser : a :class:`GaussianMixture` (evaluated in float64 on ``x``'s device,
        with its exact score below ``sigma_switch``) or any ``denoiser(x, sigma)`` callable
        (called with ``x``'s dtype/device and a 0-d ``sigma``; then (2) uses ``(x - D)/sigma``).
    x : ``[n, ...]`` starting points at noise level ``sigmas[0]``.
    sigmas : strictly monotone 1-D sequence/array/tensor of noise levels ``>= 0`` (decreasing
        for sampling, increasing for encoding); so 0 can only be an end point.
    rtol, atol : DOP853 tolerances, raised to at least ``TOLERANCE_FLOOR_EPS x eps`` of the
        model's precision (the dtype it is evaluated in: float64 for a mixture target, ``x``'s
        dtype or the dtype a callable returns, whichever is coarser; probed with one call):
        a tolerance below the model's rounding is unreachable and DOP853 would shrink its steps
        without end (float32 at the default 1e-13 never returned).
    sigma_switch : below this level equation (2) in sigma is used instead of (1) in lambda (only
        for segments that touch 0). Default: the smallest standard deviation of a Gaussian-mixture
        target (``sqrt(min eigenvalue)``), 0.1 for a generic denoiser.
    chunk_size : at most this many points per scipy solve (default ``max(1, 65536 // d)``).

    Returns
    -------
    ``[len(sigmas), *x.shape]`` on ``x``'s device and dtype: entry ``m`` is the exact solution
    at ``sigmas[m]`` (entry 0 is ``x``). Each grid interval is a separate DOP853 solve started
    from the previous endpoint, so no dense-output interpolation error enters.
    """
    _check_x(x)
    _check_tolerances(rtol, atol)
    grid = as_float64_vector(sigmas, "sigmas", "noise levels")
    if (grid < 0).any():
        raise ValueError("sigmas must be finite and >= 0")
    if grid.size > 1:
        step = np.diff(grid)
        if not ((step < 0).all() or (step > 0).all()):
            raise ValueError("sigmas must be strictly monotone (decreasing or increasing)")
    if sigma_switch is None:
        sigma_switch = _default_switch(target_or_denoiser)
    elif not (isinstance(sigma_switch, numbers.Real) and math.isfinite(sigma_switch)
              and sigma_switch > 0):
        raise ValueError(f"sigma_switch must be a finite number > 0, got {sigma_switch!r}")
    n = x.shape[0]
    per_point = max(1, x[0].numel())
    if chunk_size is None:
        chunk_size = max(1, _DEFAULT_CHUNK_ELEMENTS // per_point)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")

    eps = _model_eps(target_or_denoiser, x, float(grid.max()))
    rtol = max(float(rtol), TOLERANCE_FLOOR_EPS * eps)
    atol = max(float(atol), TOLERANCE_FLOOR_EPS * eps)
    out = torch.empty((grid.size,) + tuple(x.shape), dtype=x.dtype, device=x.device)
    out[0] = x
    for start in range(0, n, chunk_size):
        xc = x[start:start + chunk_size]
        field = _Field(target_or_denoiser, xc)
        y = xc.detach().to(device="cpu", dtype=torch.float64).numpy().ravel().copy()
        for m in range(1, grid.size):
            y = _solve_segment(field, y, float(grid[m - 1]), float(grid[m]), float(sigma_switch),
                               float(rtol), float(atol))
            out[m, start:start + chunk_size] = torch.from_numpy(y).reshape(xc.shape).to(
                device=x.device, dtype=x.dtype)
    return out


def solve_pf_ode(target_or_denoiser: Union[GaussianMixture, Denoiser], x: torch.Tensor,
                 sigma_from, sigma_to, *, rtol: float = 1e-13, atol: float = 1e-13,
                 sigma_switch: Optional[float] = None,
                 chunk_size: Optional[int] = None) -> torch.Tensor:
    """The exact PF-ODE solution from ``sigma_from`` to ``sigma_to`` for a batch ``x [n, ...]``.

    ``sigma_from`` and ``sigma_to`` are numbers (or one-element tensors) ``>= 0``, in either
    order; either may be 0. Equations, method and options: see the module docstring and
    :func:`solve_pf_ode_path` (this is its two-level case). Returns a tensor of ``x``'s shape,
    device and dtype (error below ``1e-10 * max(1, |x(sigma_to)|)`` in float64 at the default
    tolerances, see the module docstring).
    """
    s0 = _level(sigma_from, "sigma_from")
    s1 = _level(sigma_to, "sigma_to")
    _check_x(x)
    if s0 == s1:
        return x.clone()
    return solve_pf_ode_path(target_or_denoiser, x, [s0, s1], rtol=rtol, atol=atol,
                             sigma_switch=sigma_switch, chunk_size=chunk_size)[1]


def gaussian_flow_closed_form(mean, cov, x: torch.Tensor, sigma_from, sigma_to) -> torch.Tensor:
    """The exact PF-ODE flow map of a single Gaussian target ``N(mean, cov)``.

    For a Gaussian target (2) is linear, ``dx/dsigma = sigma (C + sigma^2 I)^{-1} (x - mu)``,
    and the flow from s to s' is

        x(s') = mu + (C + s'^2 I)^{1/2} (C + s^2 I)^{-1/2} (x - mu),

    (all matrices commute), evaluated in the eigenbasis ``C = U diag(e) U^T`` as
    ``mu + U diag(sqrt((e + s'^2) / (e + s^2))) U^T (x - mu)``.

    ``mean`` [d]; ``cov`` [d, d], [d] (diagonal) or a scalar (validated as in
    :meth:`GaussianMixture.single_gaussian`); ``x`` [n, d] or [n, *event] in float32/64;
    ``sigma_from``/``sigma_to`` numbers >= 0 (either may be 0). Returns ``x``'s shape, device and
    dtype.
    """
    _check_x(x)
    s0 = _level(sigma_from, "sigma_from")
    s1 = _level(sigma_to, "sigma_to")
    g = GaussianMixture.single_gaussian(mean, cov, dtype=x.dtype, device=x.device)
    x2, shape = g._flatten(x)
    u = g.eigenvectors[0]
    e = g.eigenvalues[0]
    mu = g.means[0]
    ratio = torch.sqrt((e + s1 * s1) / (e + s0 * s0))
    return (mu + ((x2 - mu) @ u) * ratio @ u.T).reshape(shape)


def noised_marginal(target: GaussianMixture, sigma) -> GaussianMixture:
    """The exact law of ``x0 + sigma * eps`` (``x0 ~ target``): the reference for a sampler's
    final law at ``sigma`` (``sigma = 0``: the target itself).
    ``p_sigma = sum_k w_k N(mu_k, C_k + sigma^2 I)``; see :meth:`GaussianMixture.marginal`."""
    if not isinstance(target, GaussianMixture):
        raise TypeError(f"target must be a GaussianMixture, got {type(target).__name__}")
    return target.marginal(sigma)
