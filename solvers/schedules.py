"""Exact conversions between diffusion parameterisations, and VP noise schedules.

samplerlab works in the VE/EDM convention ``x = x0 + sigma * eps`` (Karras et al. 2022, "Elucidating
the design space of diffusion-based generative models", arXiv 2206.00364). A variance-preserving
(VP) model (Ho et al. 2020; Song et al. 2021) uses ``x_vp = alpha * x0 + sigma_vp * eps`` with
``alpha**2 + sigma_vp**2 = 1``. The two are the same process up to the scaling ``x_vp = alpha * x``:

    sigma     = sigma_vp / alpha                    (VE noise level)
    alpha     = 1 / sqrt(1 + sigma**2),   sigma_vp = sigma / sqrt(1 + sigma**2)
    alpha_bar = alpha**2 = 1 / (1 + sigma**2)       (DDPM's cumulative product)
    lambda    = log(alpha / sigma_vp) = -log(sigma) (half log-SNR)

Every function here is exact (no approximation beyond floating-point rounding) and written so that
the rounding stays at a few ulps over ``sigma`` in ``[1e-4, 1e4]``: ``hypot`` instead of
``sqrt(1 + sigma**2)``, ``log1p``/``expm1`` where a quantity is close to 0 or 1. The one
exception is a conversion *from* ``alpha_bar`` (or ``alpha``) near 1: ``1 - alpha_bar`` is then
already lost in the input, so ``sigma_from_alpha_bar`` has relative error about
``eps_machine / (2 sigma**2)``; use ``sigma_from_log_alpha_bar`` or the VP pair instead.

Input types: the scalar conversions accept a floating-point torch tensor (result keeps its
device and dtype), a numpy array (result is a numpy array) or a Python float (result is a float).
The state and prediction conversions take a tensor state ``x`` of shape ``[batch, ...]`` and a
noise level ``sigma`` that is a number, a 0-d tensor or a ``[batch]`` tensor (cast to ``x``'s
device/dtype and broadcast over the trailing dimensions).

Prediction conversions (VE convention, ``x = x0 + sigma * eps``, ``D`` the data prediction):

    eps   = (x - D) / sigma                 D = x - sigma * eps
    score = (D - x) / sigma**2 = -eps / sigma
    v     = alpha * eps - sigma_vp * D      (Salimans & Ho 2022, arXiv 2202.00512; VP variables)

VP schedules (``VPSchedule``) map a model's time ``t`` to the noise level: the continuous
linear-beta VP-SDE (Song et al. 2021, arXiv 2011.13456), the cosine schedule (Nichol & Dhariwal
2021, arXiv 2102.09672) and discrete ``alphas_cumprod`` tables (DDPM/LDM). The wrappers
``denoiser_from_eps_model`` and ``denoiser_from_v_model`` turn a VP model ``model(x_vp, t)`` into a
samplerlab denoiser ``denoiser(x, sigma) -> x0_hat``.
"""
from __future__ import annotations

import abc
import math
import numbers
from typing import Callable, Tuple

import numpy as np
import torch

from ._checks import as_sigma_tensor, check_in_range

__all__ = [
    # noise-level conversions
    "alpha_from_sigma", "sigma_vp_from_sigma", "vp_from_sigma", "sigma_from_vp",
    "alpha_bar_from_sigma", "log_alpha_bar_from_sigma", "sigma_from_alpha_bar",
    "sigma_from_log_alpha_bar", "sigma_from_alpha", "lambda_from_sigma", "sigma_from_lambda",
    "lambda_from_alpha_bar",
    # states
    "vp_state_from_ve", "ve_state_from_vp",
    # predictions
    "eps_from_data", "data_from_eps", "score_from_data", "data_from_score", "score_from_eps",
    "eps_from_score", "velocity_from_data", "data_from_velocity", "eps_from_velocity",
    # schedules and model wrappers
    "VPSchedule", "LinearVPSchedule", "CosineVPSchedule", "DiscreteVPSchedule", "vp_schedule",
    "VP_SCHEDULES", "denoiser_from_eps_model", "denoiser_from_v_model",
]


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------

def _to_tensor(value, name: str):
    """Return ``(tensor, back)``: ``value`` as a floating tensor and a function that converts a
    result tensor back to the caller's type (tensor -> tensor, numpy -> numpy, float -> float)."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        return value, lambda r: r
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating):
            if np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.bool_):
                arr = arr.astype(np.float64)
            else:
                raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
        t = torch.from_numpy(np.array(arr, copy=True))
        if arr.ndim == 0:
            return t, lambda r: r.numpy()[()]
        return t, lambda r: r.numpy()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64), lambda r: float(r)
    raise TypeError(f"{name} must be a float tensor, numpy array or real number, "
                    f"got {type(value).__name__}")


def _like(value, ref: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` (tensor/array/number) as a tensor on ``ref``'s device and dtype."""
    if isinstance(value, torch.Tensor) and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if isinstance(value, bool):
        raise TypeError(f"{name} must be real, got bool")
    return torch.as_tensor(value, dtype=ref.dtype, device=ref.device)


def _check_domain(t: torch.Tensor, name: str, low=None, high=None, *, low_open=False,
                  high_open=False, expected: str = ""):
    """ValueError naming ``name`` unless every entry of ``t`` is finite and in the interval."""
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    bad = torch.zeros((), dtype=torch.bool, device=t.device)
    if low is not None:
        bad = bad | ((t <= low) if low_open else (t < low)).any()
    if high is not None:
        bad = bad | ((t >= high) if high_open else (t > high)).any()
    if bool(bad):
        lb, hb = ("(" if low_open else "["), (")" if high_open else "]")
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        what = expected or f"values in {lb}{lo}, {hi}{hb}"
        raise ValueError(f"{name} must hold {what}; got range "
                         f"[{t.min().item():.6g}, {t.max().item():.6g}]")


def _sigma_like_x(sigma, x: torch.Tensor, *, positive: bool) -> torch.Tensor:
    """Validated ``sigma`` on ``x``'s device/dtype, reshaped to broadcast against ``x``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if isinstance(sigma, torch.Tensor) and not sigma.is_floating_point():
        raise TypeError(f"sigma must be a floating-point tensor, got dtype {sigma.dtype}")
    if x.ndim == 0:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if s.ndim != 0:
            raise ValueError(f"sigma must be a scalar when x is 0-d, got shape {tuple(s.shape)}")
        _check_domain(s, "sigma", 0.0, low_open=positive)
        return s
    s = as_sigma_tensor(sigma, x, "sigma")
    if positive and (s <= 0).any():
        raise ValueError("sigma must be > 0 for this conversion (it divides by sigma)")
    if s.ndim == 1:
        s = s.reshape((-1,) + (1,) * (x.ndim - 1))
    return s


def _same_shape(a: torch.Tensor, b, name_a: str, name_b: str) -> torch.Tensor:
    if not isinstance(b, torch.Tensor):
        raise TypeError(f"{name_b} must be a torch.Tensor, got {type(b).__name__}")
    if b.shape != a.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {tuple(a.shape)}, "
                         f"got {tuple(b.shape)}")
    if b.dtype != a.dtype or b.device != a.device:
        raise TypeError(f"{name_b} must have {name_a}'s dtype/device ({a.dtype}, {a.device}), "
                        f"got ({b.dtype}, {b.device})")
    return b


def _alpha_bar(s: torch.Tensor) -> torch.Tensor:
    """``1 / (1 + s**2)`` (about 2 ulps), as ``(1/s)**2`` where ``s**2`` would overflow."""
    big = s > 1e150
    safe = torch.where(big, torch.zeros_like(s), s)
    return torch.where(big, s.reciprocal() ** 2, 1 / (1 + safe * safe))


def _log1p_square(s: torch.Tensor) -> torch.Tensor:
    """``log(1 + s**2)`` without overflow of ``s**2`` and accurate for small ``s``."""
    big = s > 1
    safe = torch.where(big, s, torch.ones_like(s))
    return torch.where(big, 2 * torch.log(safe) + torch.log1p(safe.reciprocal() ** 2),
                       torch.log1p(s * s))


# ----------------------------------------------------------------------------------------------
# noise levels
# ----------------------------------------------------------------------------------------------

def alpha_from_sigma(sigma):
    """VP signal scale of a VE noise level: ``alpha = 1 / sqrt(1 + sigma**2)`` (``sigma >= 0``)."""
    s, back = _to_tensor(sigma, "sigma")
    _check_domain(s, "sigma", 0.0, expected="noise levels >= 0")
    return back(torch.hypot(torch.ones_like(s), s).reciprocal())


def sigma_vp_from_sigma(sigma):
    """VP noise scale of a VE noise level: ``sigma_vp = sigma / sqrt(1 + sigma**2)``."""
    s, back = _to_tensor(sigma, "sigma")
    _check_domain(s, "sigma", 0.0, expected="noise levels >= 0")
    return back(s / torch.hypot(torch.ones_like(s), s))


def vp_from_sigma(sigma):
    """``(alpha, sigma_vp)`` with ``alpha = 1/sqrt(1+sigma^2)``, ``sigma_vp = sigma * alpha``."""
    return alpha_from_sigma(sigma), sigma_vp_from_sigma(sigma)


def sigma_from_vp(alpha, sigma_vp):
    """VE noise level of a VP pair: ``sigma = sigma_vp / alpha``.

    The pair need not be normalised (``alpha**2 + sigma_vp**2 = 1``): the VE level only depends on
    the ratio, which is how a general ``x = alpha x0 + sigma_vp eps`` maps to ``x / alpha``.
    """
    a, back = _to_tensor(alpha, "alpha")
    sv = _like(sigma_vp, a, "sigma_vp")
    _check_domain(a, "alpha", 0.0, low_open=True, expected="signal scales > 0")
    _check_domain(sv, "sigma_vp", 0.0, expected="noise scales >= 0")
    return back(sv / a)


def log_alpha_bar_from_sigma(sigma):
    """``log(alpha_bar) = -log(1 + sigma**2)`` (log1p; no overflow of ``sigma**2``)."""
    s, back = _to_tensor(sigma, "sigma")
    _check_domain(s, "sigma", 0.0, expected="noise levels >= 0")
    return back(-_log1p_square(s))


def alpha_bar_from_sigma(sigma):
    """DDPM's cumulative product: ``alpha_bar = alpha**2 = 1 / (1 + sigma**2)``."""
    s, back = _to_tensor(sigma, "sigma")
    _check_domain(s, "sigma", 0.0, expected="noise levels >= 0")
    return back(_alpha_bar(s))


def sigma_from_log_alpha_bar(log_alpha_bar):
    """``sigma = sqrt(1/alpha_bar - 1) = sqrt(expm1(-log alpha_bar))`` (``log alpha_bar <= 0``).

    Accurate also where ``alpha_bar`` is close to 1, unlike ``sigma_from_alpha_bar``.
    """
    la, back = _to_tensor(log_alpha_bar, "log_alpha_bar")
    _check_domain(la, "log_alpha_bar", high=0.0, expected="values <= 0 (alpha_bar in (0, 1])")
    return back(torch.sqrt(torch.expm1(-la)))


def sigma_from_alpha_bar(alpha_bar):
    """``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` for ``alpha_bar`` in ``(0, 1]``.

    Conditioning: ``1 - alpha_bar`` is formed from the stored ``alpha_bar``, so the result carries
    a relative error of about ``eps_machine / (2 sigma**2)`` for small sigma (intrinsic to the
    input; pass ``log(alpha_bar)`` to ``sigma_from_log_alpha_bar`` when it is available).
    """
    ab, back = _to_tensor(alpha_bar, "alpha_bar")
    _check_domain(ab, "alpha_bar", 0.0, 1.0, low_open=True, expected="values in (0, 1]")
    return back(torch.sqrt((1 - ab) / ab))


def sigma_from_alpha(alpha):
    """``sigma = sqrt(1 - alpha**2) / alpha = sqrt((1 - alpha)(1 + alpha)) / alpha``, alpha in (0, 1]."""
    a, back = _to_tensor(alpha, "alpha")
    _check_domain(a, "alpha", 0.0, 1.0, low_open=True, expected="values in (0, 1]")
    return back(torch.sqrt((1 - a) * (1 + a)) / a)


def lambda_from_sigma(sigma):
    """Half log-SNR ``lambda = log(alpha / sigma_vp) = -log(sigma)`` (``sigma > 0``)."""
    s, back = _to_tensor(sigma, "sigma")
    _check_domain(s, "sigma", 0.0, low_open=True, expected="noise levels > 0")
    return back(-torch.log(s))


def sigma_from_lambda(lam):
    """``sigma = exp(-lambda)``; ValueError where the result is not a finite positive number."""
    lt, back = _to_tensor(lam, "lam")
    _check_domain(lt, "lam")
    out = torch.exp(-lt)
    if not (torch.isfinite(out) & (out > 0)).all():
        raise ValueError("lam is outside the range where exp(-lam) is a finite positive number")
    return back(out)


def lambda_from_alpha_bar(alpha_bar):
    """``lambda = (log(alpha_bar) - log(1 - alpha_bar)) / 2`` for ``alpha_bar`` in ``(0, 1)``."""
    ab, back = _to_tensor(alpha_bar, "alpha_bar")
    _check_domain(ab, "alpha_bar", 0.0, 1.0, low_open=True, high_open=True,
                  expected="values in (0, 1)")
    return back(0.5 * (torch.log(ab) - torch.log1p(-ab)))


# ----------------------------------------------------------------------------------------------
# states
# ----------------------------------------------------------------------------------------------

def vp_state_from_ve(x, sigma):
    """``x_vp = alpha * x = x / sqrt(1 + sigma**2)`` (``sigma`` the VE level)."""
    s = _sigma_like_x(sigma, x, positive=False)
    return x / torch.hypot(torch.ones_like(s), s)


def ve_state_from_vp(x_vp, sigma):
    """``x = x_vp / alpha = x_vp * sqrt(1 + sigma**2)`` (``sigma`` the VE level)."""
    s = _sigma_like_x(sigma, x_vp, positive=False)
    return x_vp * torch.hypot(torch.ones_like(s), s)


# ----------------------------------------------------------------------------------------------
# predictions (VE state x = x0 + sigma * eps)
# ----------------------------------------------------------------------------------------------

def eps_from_data(x, denoised, sigma):
    """Noise prediction from the data prediction: ``eps = (x - D) / sigma`` (VE state ``x``)."""
    s = _sigma_like_x(sigma, x, positive=True)
    _same_shape(x, denoised, "x", "denoised")
    return (x - denoised) / s


def data_from_eps(x, eps, sigma):
    """Data prediction from the noise prediction: ``D = x - sigma * eps`` (VE state ``x``)."""
    s = _sigma_like_x(sigma, x, positive=False)
    _same_shape(x, eps, "x", "eps")
    return x - s * eps


def score_from_data(x, denoised, sigma):
    """Score of the VE marginal (Tweedie): ``score = (D - x) / sigma**2``."""
    s = _sigma_like_x(sigma, x, positive=True)
    _same_shape(x, denoised, "x", "denoised")
    return (denoised - x) / (s * s)


def data_from_score(x, score, sigma):
    """Tweedie's formula: ``D = x + sigma**2 * score`` (VE state ``x``)."""
    s = _sigma_like_x(sigma, x, positive=False)
    _same_shape(x, score, "x", "score")
    return x + (s * s) * score


def score_from_eps(eps, sigma):
    """``score = -eps / sigma`` (VE score of the state ``x = x0 + sigma * eps``).

    The score of the VP state is ``-eps / sigma_vp`` instead (``= score_ve / alpha``).
    """
    s = _sigma_like_x(sigma, eps, positive=True)
    return -eps / s


def eps_from_score(score, sigma):
    """``eps = -sigma * score`` (VE score)."""
    s = _sigma_like_x(sigma, score, positive=False)
    return -s * score


def velocity_from_data(x, denoised, sigma):
    """v-prediction (Salimans & Ho 2022) from the data prediction.

    Defined in VP variables, ``x_vp = alpha x0 + sigma_vp eps`` and ``v = alpha eps - sigma_vp x0``,
    with ``alpha = 1/sqrt(1+sigma^2)``, ``sigma_vp = sigma alpha``; here ``x`` is the samplerlab
    (VE) state, ``eps = (x - D)/sigma``, so ``v = alpha (x - D)/sigma - sigma_vp D``
    ``= alpha (x - (1 + sigma^2) D) / sigma``.
    """
    s = _sigma_like_x(sigma, x, positive=True)
    _same_shape(x, denoised, "x", "denoised")
    alpha = torch.hypot(torch.ones_like(s), s).reciprocal()
    return alpha * ((x - denoised) / s - s * denoised)


def data_from_velocity(x, v, sigma):
    """Data prediction from the v-prediction: ``D = alpha * x_vp - sigma_vp * v``.

    With the VE state ``x`` (``x_vp = alpha x``) this is ``D = alpha^2 x - sigma_vp v``
    ``= (x - sigma v sqrt(1 + sigma^2)) / (1 + sigma^2)``. Follows from ``alpha^2 + sigma_vp^2 = 1``.
    """
    s = _sigma_like_x(sigma, x, positive=False)
    _same_shape(x, v, "x", "v")
    alpha = torch.hypot(torch.ones_like(s), s).reciprocal()
    return alpha * (alpha * x - s * v)


def eps_from_velocity(x, v, sigma):
    """Noise prediction from the v-prediction: ``eps = sigma_vp * x_vp + alpha * v``
    ``= alpha (sigma alpha x + v)`` with the VE state ``x`` (``x_vp = alpha x``)."""
    s = _sigma_like_x(sigma, x, positive=False)
    _same_shape(x, v, "x", "v")
    alpha = torch.hypot(torch.ones_like(s), s).reciprocal()
    return alpha * (s * alpha * x + v)


# ----------------------------------------------------------------------------------------------
# VP schedules
# ----------------------------------------------------------------------------------------------

class VPSchedule(abc.ABC):
    """A VP noise schedule: the model time ``t`` <-> the VE noise level ``sigma(t)``.

    Subclasses implement ``sigma(t)`` and its exact inverse ``t_from_sigma(sigma)`` (both increasing);
    ``alpha_bar``, ``alpha``, ``log_alpha_bar`` and ``half_log_snr`` follow from ``sigma`` through the
    conversions above. ``t_min``/``t_max`` bound the domain of ``t``; ``t_end`` is the conventional
    last time (the start of sampling) used by default by the time grids. Inputs may be tensors
    (device/dtype kept), numpy arrays or floats; times outside the domain raise ValueError.
    """

    t_min: float = 0.0
    t_max: float = math.inf
    t_max_open: bool = False
    t_end: float = 1.0

    def _check_t(self, t, name="t"):
        tt, back = _to_tensor(t, name)
        _check_domain(tt, name, self.t_min, self.t_max, high_open=self.t_max_open,
                      expected=f"times in [{self.t_min}, {self.t_max}{')' if self.t_max_open else ']'}"
                               f" for {type(self).__name__}")
        return tt, back

    def _check_sigma(self, sigma, name="sigma"):
        s, back = _to_tensor(sigma, name)
        _check_domain(s, name, 0.0, expected="noise levels >= 0")
        return s, back

    @abc.abstractmethod
    def _sigma(self, t: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor: ...

    def sigma(self, t):
        """VE noise level ``sigma(t) = sqrt(1/alpha_bar(t) - 1)``."""
        tt, back = self._check_t(t)
        out = self._sigma(tt)
        if not torch.isfinite(out).all():
            raise ValueError(f"t: sigma(t) overflows {out.dtype} for t up to {tt.max().item():.6g}")
        return back(out)

    def t_from_sigma(self, sigma):
        """Inverse of ``sigma(t)``."""
        s, back = self._check_sigma(sigma)
        return back(self._t_from_sigma(s))

    def log_alpha_bar(self, t):
        """``log alpha_bar(t) = -log(1 + sigma(t)**2)``."""
        tt, back = self._check_t(t)
        return back(-_log1p_square(self._sigma(tt)))

    def alpha_bar(self, t):
        """``alpha_bar(t) = 1 / (1 + sigma(t)**2)``."""
        tt, back = self._check_t(t)
        return back(_alpha_bar(self._sigma(tt)))

    def alpha(self, t):
        """``alpha(t) = sqrt(alpha_bar(t))``."""
        tt, back = self._check_t(t)
        s = self._sigma(tt)
        return back(torch.hypot(torch.ones_like(s), s).reciprocal())

    def half_log_snr(self, t):
        """``lambda(t) = -log sigma(t)`` (t must give sigma > 0)."""
        tt, back = self._check_t(t)
        s = self._sigma(tt)
        if (s <= 0).any():
            raise ValueError("t: lambda is infinite where sigma(t) = 0")
        return back(-torch.log(s))

    def t_and_alpha(self, sigma):
        """``(t_from_sigma(sigma), alpha_from_sigma(sigma))``: what a VP model wrapper needs."""
        return self.t_from_sigma(sigma), alpha_from_sigma(sigma)


class LinearVPSchedule(VPSchedule):
    """Continuous linear-beta VP-SDE (Song et al. 2021, arXiv 2011.13456, eq. 33).

    ``beta(t) = beta_min + t (beta_max - beta_min)`` on ``t >= 0`` (conventionally ``[0, 1]``)::

        -log alpha_bar(t) = B(t) = beta_min t + (beta_max - beta_min) t^2 / 2
        sigma(t)          = sqrt(expm1(B(t)))
        t(sigma)          = 2 B / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) B)),
                            B = log1p(sigma^2)          (the cancellation-free root of the quadratic)

    The formula is exact for every ``t >= 0``; times beyond 1 are allowed (they extrapolate the SDE).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = check_in_range(beta_min, "beta_min", 0.0, low_open=True)
        self.beta_max = check_in_range(beta_max, "beta_max", self.beta_min)
        self.t_end = 1.0

    def __repr__(self):
        return f"LinearVPSchedule(beta_min={self.beta_min}, beta_max={self.beta_max})"

    def _sigma(self, t):
        b = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t
        return torch.sqrt(torch.expm1(b))

    def _t_from_sigma(self, sigma):
        big_b = _log1p_square(sigma)
        d = self.beta_max - self.beta_min
        return 2 * big_b / (self.beta_min + torch.sqrt(self.beta_min ** 2 + 2 * d * big_b))


class CosineVPSchedule(VPSchedule):
    """Cosine schedule of Nichol & Dhariwal 2021 (arXiv 2102.09672, eq. 17), continuous in t.

    ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos^2(a(t))``, ``a(t) = (t + s)/(1 + s) * pi/2``,
    ``t`` in ``[0, 1)`` (``sigma -> inf`` as ``t -> 1``). With ``a0 = a(0)`` and
    ``delta = a - a0 = t pi / (2 (1 + s))`` the identity ``cos^2 a0 - cos^2 a = sin(delta) sin(a + a0)``
    gives the cancellation-free forms::

        sigma(t)^2 = sin(delta) sin(2 a0 + delta) / cos^2(a),  cos(a) = sin((1 - t) pi / (2 (1 + s)))
        t(sigma)   = (2 (1 + s) / pi) * atan2(c0 sigma^2 / (sqrt(sigma^2 + s0^2) + s0),
                                              c0^2 + s0 sqrt(sigma^2 + s0^2))

    with ``c0 = cos a0``, ``s0 = sin a0`` (the second line is ``a - a0`` written by the
    subtraction formula for sine and cosine, with ``cos a = c0 / sqrt(1 + sigma^2)``).
    ``t_end = 0.9946`` is the end time DPM-Solver uses for this schedule (sigma ~ 119,
    lambda ~ -4.8) to stay away from the singularity at ``t = 1``.
    """

    def __init__(self, s: float = 0.008):
        self.s = check_in_range(s, "s", 0.0, low_open=True)
        self.t_min, self.t_max, self.t_max_open = 0.0, 1.0, True
        self.t_end = 0.9946

    def __repr__(self):
        return f"CosineVPSchedule(s={self.s})"

    def _sigma(self, t):
        scale = math.pi / (2 * (1 + self.s))
        a0 = self.s * scale
        delta = t * scale
        cos_a = torch.sin((1 - t) * scale)
        return torch.sqrt(torch.sin(delta) * torch.sin(2 * a0 + delta)) / cos_a

    def _t_from_sigma(self, sigma):
        scale = math.pi / (2 * (1 + self.s))
        a0 = self.s * scale
        c0, s0 = math.cos(a0), math.sin(a0)
        root = torch.hypot(sigma, torch.full_like(sigma, s0))      # sqrt(sigma^2 + s0^2)
        delta = torch.atan2(c0 * sigma * (sigma / (root + s0)), c0 * c0 + s0 * root)
        return delta / scale


class DiscreteVPSchedule(VPSchedule):
    """A discrete DDPM schedule given by its table ``alphas_cumprod[i]``, ``i = 0..N-1``.

    ``t`` is the (fractional) table index, ``t`` in ``[0, N-1]``. At integer ``t = i``,
    ``sigma(i) = sqrt((1 - alpha_bar_i) / alpha_bar_i)``; in between, ``log sigma`` is interpolated
    linearly in ``t`` (as k-diffusion's ``DiscreteSchedule``), so ``alpha_bar(t)`` between integers is
    ``1/(1 + sigma(t)^2)``, not the linear interpolation of the table. ``t_from_sigma`` is the
    exact inverse of this piecewise-linear map and raises ValueError outside
    ``[sigma(0), sigma(N-1)]`` (allowing a rounding slack of 8 ulps of the input's dtype).
    The table must be strictly decreasing in ``(0, 1)``; it is stored in float64.
    """

    def __init__(self, alphas_cumprod):
        ab = alphas_cumprod
        if isinstance(ab, (list, tuple)):
            ab = np.asarray(ab, dtype=np.float64)
        if isinstance(ab, np.ndarray):
            ab = torch.from_numpy(np.array(ab, dtype=np.float64))
        if not isinstance(ab, torch.Tensor) or not ab.is_floating_point():
            raise TypeError("alphas_cumprod must be a 1-D float tensor, numpy array or list")
        ab = ab.detach().to(dtype=torch.float64, device="cpu")
        if ab.ndim != 1 or ab.numel() < 2:
            raise ValueError(f"alphas_cumprod must be 1-D with at least 2 entries, "
                             f"got shape {tuple(ab.shape)}")
        _check_domain(ab, "alphas_cumprod", 0.0, 1.0, low_open=True, high_open=True,
                      expected="values in (0, 1)")
        if not (ab[1:] < ab[:-1]).all():
            raise ValueError("alphas_cumprod must be strictly decreasing")
        self.alphas_cumprod = ab
        self.sigmas = torch.sqrt((1 - ab) / ab)
        self.log_sigmas = torch.log(self.sigmas)
        self.num_steps = ab.numel()
        self.t_min, self.t_max, self.t_max_open = 0.0, float(self.num_steps - 1), False
        self.t_end = self.t_max

    def __repr__(self):
        return f"DiscreteVPSchedule(N={self.num_steps})"

    def _sigma(self, t):
        ls = self.log_sigmas.to(device=t.device, dtype=t.dtype)
        lo = torch.floor(t).clamp(max=self.num_steps - 2).long()
        w = t - lo.to(t.dtype)
        return torch.exp((1 - w) * ls[lo] + w * ls[lo + 1])

    def _t_from_sigma(self, sigma):
        ls_table = self.log_sigmas.to(device=sigma.device, dtype=sigma.dtype)
        if (sigma <= 0).any():
            raise ValueError(f"sigma must lie in the table's range "
                             f"[{self.sigmas[0].item():.6g}, {self.sigmas[-1].item():.6g}]")
        ls = torch.log(sigma)
        slack = 8 * torch.finfo(sigma.dtype).eps
        lo_b, hi_b = ls_table[0], ls_table[-1]
        if ((ls < lo_b - slack) | (ls > hi_b + slack)).any():
            raise ValueError(f"sigma must lie in the table's range "
                             f"[{self.sigmas[0].item():.6g}, {self.sigmas[-1].item():.6g}], got "
                             f"[{sigma.min().item():.6g}, {sigma.max().item():.6g}]")
        ls = ls.clamp(lo_b, hi_b)
        idx = (torch.searchsorted(ls_table, ls.contiguous(), right=True) - 1)
        idx = idx.clamp(0, self.num_steps - 2)
        w = (ls - ls_table[idx]) / (ls_table[idx + 1] - ls_table[idx])
        return idx.to(sigma.dtype) + w


VP_SCHEDULES = {"linear": LinearVPSchedule, "cosine": CosineVPSchedule}


def vp_schedule(schedule) -> VPSchedule:
    """A ``VPSchedule`` from a name (``'linear'``, ``'cosine'``, default parameters) or an instance."""
    if isinstance(schedule, VPSchedule):
        return schedule
    if isinstance(schedule, str) and schedule in VP_SCHEDULES:
        return VP_SCHEDULES[schedule]()
    raise ValueError(f"schedule must be a VPSchedule or one of {sorted(VP_SCHEDULES)}, "
                     f"got {schedule!r}")


# ----------------------------------------------------------------------------------------------
# VP model -> samplerlab denoiser
# ----------------------------------------------------------------------------------------------

def _resolve_schedule(schedule):
    if isinstance(schedule, str):
        return vp_schedule(schedule)
    if isinstance(schedule, VPSchedule) or callable(schedule):
        return schedule
    raise TypeError(f"schedule must be a VPSchedule, a name in {sorted(VP_SCHEDULES)} or a "
                    f"callable sigma -> (t, alpha), got {type(schedule).__name__}")


def _time_and_alpha(schedule, sigma: torch.Tensor):
    if isinstance(schedule, VPSchedule):
        return schedule.t_from_sigma(sigma), alpha_from_sigma(sigma)
    if callable(schedule):
        out = schedule(sigma)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("schedule(sigma) must return a pair (t, alpha)")
        return out
    raise TypeError(f"schedule must be a VPSchedule or a callable sigma -> (t, alpha), "
                    f"got {type(schedule).__name__}")


def _check_model(model, name):
    if not callable(model):
        raise TypeError(f"{name} must be callable as {name}(x_vp, t), got {type(model).__name__}")


def _vp_inputs(schedule, x, sigma):
    s = _sigma_like_x(sigma, x, positive=False)
    s_flat = s.reshape(-1) if s.ndim else s
    t, alpha = _time_and_alpha(schedule, s_flat)
    alpha = _like(alpha, x, "alpha").reshape(s.shape)
    return s, t, alpha


def denoiser_from_eps_model(eps_model: Callable, schedule) -> Callable:
    """Turn a VP noise-predicting model into a samplerlab denoiser ``denoiser(x, sigma) -> D``.

    ``eps_model(x_vp, t)`` predicts ``eps`` of ``x_vp = alpha x0 + sigma_vp eps``. For a VE state
    ``x`` at level ``sigma`` the wrapper calls it with ``x_vp = alpha x`` and
    ``t = schedule.t_from_sigma(sigma)`` (``t`` has the shape of ``sigma``: 0-d or ``[batch]``) and
    returns ``D = x - sigma * eps`` (the eps of the VP and the VE state coincide).
    ``schedule``: a ``VPSchedule``, a name (``'linear'``, ``'cosine'``) or a callable
    ``sigma -> (t, alpha)``.
    """
    _check_model(eps_model, "eps_model")
    schedule = _resolve_schedule(schedule)

    def denoiser(x, sigma):
        s, t, alpha = _vp_inputs(schedule, x, sigma)
        eps = eps_model(alpha * x, t)
        return x - s * eps

    return denoiser


def denoiser_from_v_model(v_model: Callable, schedule) -> Callable:
    """Turn a VP v-predicting model (Salimans & Ho 2022) into a samplerlab denoiser.

    ``v_model(x_vp, t)`` predicts ``v = alpha eps - sigma_vp x0``; then
    ``D = alpha x_vp - sigma_vp v`` with ``x_vp = alpha x``, ``sigma_vp = sigma alpha`` and
    ``t = schedule.t_from_sigma(sigma)`` (same shape as ``sigma``).
    ``schedule``: a ``VPSchedule``, a name (``'linear'``, ``'cosine'``) or a callable
    ``sigma -> (t, alpha)``.
    """
    _check_model(v_model, "v_model")
    schedule = _resolve_schedule(schedule)

    def denoiser(x, sigma):
        s, t, alpha = _vp_inputs(schedule, x, sigma)
        x_vp = alpha * x
        v = v_model(x_vp, t)
        return alpha * x_vp - (s * alpha) * v

    return denoiser
