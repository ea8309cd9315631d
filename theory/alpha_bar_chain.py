"""Seed-002 samplers on the discrete alpha-bar chain, compiled into the linear-step form.

Source: Li, Huang, Efimov, Wei, Chi, Chen, *Accelerating convergence of score-based diffusion
models, provably* (arXiv 2403.03852, ICML 2024); algorithms as pinned down in
shared/papers/notes-accelerated-samplers-and-res.md §1.2-§1.4 (tags there: the DDPM-type and the
accelerated SDE updates are sourced from the authors' README/code, the DDIM-type update and the
two-evaluation accelerated ODE update are reconstructions verified to be genuine first/second order
schemes).

The chain (VP, discrete time)
-----------------------------
A VE grid ``sigma_0 > sigma_1 > ... > sigma_M > 0`` is read as the alpha-bar chain
``abar = 1 / (1 + sigma^2)`` run backwards: step n goes from ``t`` (``abar_t = abar(sigma_n)``) to
``t - 1`` (``abar_{t-1} = abar(sigma_{n+1})``) with ``alpha_t = abar_t / abar_{t-1}`` in (0, 1).
The VP state is ``Y = sqrt(abar) x`` (``x`` the VE state) and the VP score, written through the
data prediction ``D = D(x, sigma)`` of the VE denoiser, is::

    s_t(Y) = (sqrt(abar_t) D - Y) / (1 - abar_t)                       (VP score via D)

Each update below is linear in ``Y``, in the denoiser outputs and in the injected noise. It is
written in VP variables with sympy, ``Y = sqrt(abar) x`` is substituted, and the coefficients are
collected into :class:`~samplerlab.theory.step_form.StepCoefficients` (VE units, noise standard
deviations included). The sympy expressions are lambdified once per method and cached.

Registered step methods (``step_coefficients(name, sigma_from, sigma_to, **params)``)
--------------------------------------------------------------------------------------
``li_ddim``       ``Y_{t-1} = (Y_t + (1-alpha_t)/2 s_t(Y_t)) / sqrt(alpha_t)``           1 NFE
``li_ddpm``       ``Y_{t-1} = (Y_t + (1-alpha_t) s_t(Y_t) + sqrt(1-alpha_t) Z) / sqrt(alpha_t)``
``li_accel_ode``  look-back point ``Y^- = sqrt(alpha_{t+1}) (Y_t - (1-alpha_{t+1})/2 s_t(Y_t))``
                  evaluated at time ``t+1``, then ``Psi_t`` (notes §1.3); 2 NFE; param
                  ``sigma_back`` (see :func:`lookback_sigmas`)
``li_accel_sde``  ``Y^+ = Y_t + sqrt((1-alpha_t)/2) Z``;
                  ``Y_{t-1} = (Y^+ + (1-alpha_t) s_t(Y^+)) / sqrt(alpha_t) + sqrt((1-alpha_t)/2) Z^+``
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Dict, List, Tuple

import numpy as np
import sympy as sp

from samplerlab.theory.step_form import StepCoefficients, register_step_method

__all__ = [
    "alpha_bar_of_sigma",
    "vp_score",
    "lookback_sigmas",
    "chain_derivation",
    "CHAIN_METHODS",
    "ChainDerivation",
]

# Symbols shared by every derivation. ``x`` is the VE state the step starts from (after the
# pre-noise, if any); ``D0, D1`` the denoiser outputs of the stages.
SIGMA_FROM, SIGMA_TO, SIGMA_BACK = sp.symbols("sigma_from sigma_to sigma_back", positive=True)
_X = sp.Symbol("x")
_D = sp.symbols("D0:2")
_Z_PRE, _Z_POST = sp.symbols("z_pre z_post")


def alpha_bar_of_sigma(sigma):
    """``abar = 1 / (1 + sigma^2)`` (VE noise level -> VP alpha-bar); sympy or numpy input."""
    return 1 / (1 + sigma ** 2)


def _one_minus_alpha_bar(sigma):
    """``1 - abar = sigma^2 / (1 + sigma^2)``, written without cancellation."""
    return sigma ** 2 / (1 + sigma ** 2)


def vp_score(y, denoised, sigma):
    """VP score through the data prediction: ``s(Y) = (sqrt(abar) D - Y) / (1 - abar)``.

    ``abar = 1/(1+sigma^2)``; sympy expressions (used by the derivations below).
    """
    return (sp.sqrt(alpha_bar_of_sigma(sigma)) * denoised - y) / _one_minus_alpha_bar(sigma)


@dataclasses.dataclass(frozen=True)
class ChainDerivation:
    """One chain update written in VE data variables, as sympy expressions.

    ``stage_sigma[j]`` / ``stage_input[j]``: noise level and VE input of stage j (linear in ``x``
    and ``D0..D_{j-1}``); ``output``: new VE state (linear in ``x``, ``D_k`` and ``z_post``);
    ``pre_noise``: VE standard deviation of the noise added to ``x`` before the stages.
    ``params``: extra grid symbols the coefficients depend on (e.g. ``sigma_back``).
    """

    stage_sigma: Tuple[sp.Expr, ...]
    stage_input: Tuple[sp.Expr, ...]
    output: sp.Expr
    pre_noise: sp.Expr
    params: Tuple[sp.Symbol, ...]


def _to_ve(y, sigma):
    """VE state of the VP state ``y`` at noise level ``sigma``: ``x = Y / sqrt(abar)``."""
    return y / sp.sqrt(alpha_bar_of_sigma(sigma))


def _derive_li_ddim() -> ChainDerivation:
    alpha = alpha_bar_of_sigma(SIGMA_FROM) / alpha_bar_of_sigma(SIGMA_TO)
    y = sp.sqrt(alpha_bar_of_sigma(SIGMA_FROM)) * _X
    s = vp_score(y, _D[0], SIGMA_FROM)
    y_next = (y + (1 - alpha) / 2 * s) / sp.sqrt(alpha)
    return ChainDerivation((SIGMA_FROM,), (_X,), _to_ve(y_next, SIGMA_TO), sp.Integer(0), ())


def _derive_li_ddpm() -> ChainDerivation:
    alpha = alpha_bar_of_sigma(SIGMA_FROM) / alpha_bar_of_sigma(SIGMA_TO)
    y = sp.sqrt(alpha_bar_of_sigma(SIGMA_FROM)) * _X
    s = vp_score(y, _D[0], SIGMA_FROM)
    y_next = (y + (1 - alpha) * s + sp.sqrt(1 - alpha) * _Z_POST) / sp.sqrt(alpha)
    return ChainDerivation((SIGMA_FROM,), (_X,), _to_ve(y_next, SIGMA_TO), sp.Integer(0), ())


def _derive_li_accel_ode() -> ChainDerivation:
    abar_t = alpha_bar_of_sigma(SIGMA_FROM)
    abar_back = alpha_bar_of_sigma(SIGMA_BACK)          # abar_{t+1}
    alpha = abar_t / alpha_bar_of_sigma(SIGMA_TO)       # alpha_t
    alpha_back = abar_back / abar_t                     # alpha_{t+1}
    y = sp.sqrt(abar_t) * _X
    s = vp_score(y, _D[0], SIGMA_FROM)
    y_minus = sp.sqrt(alpha_back) * (y - (1 - alpha_back) / 2 * s)        # Phi_t(Y_t)
    s_back = vp_score(y_minus, _D[1], SIGMA_BACK)                         # s_{t+1}(Y^-)
    y_next = (y + (1 - alpha) / 2 * s
              + (1 - alpha) ** 2 / (4 * (1 - alpha_back)) * (s - sp.sqrt(alpha_back) * s_back)
              ) / sp.sqrt(alpha)                                          # Psi_t(Y_t, Y^-)
    return ChainDerivation((SIGMA_FROM, SIGMA_BACK), (_X, _to_ve(y_minus, SIGMA_BACK)),
                           _to_ve(y_next, SIGMA_TO), sp.Integer(0), (SIGMA_BACK,))


def _derive_li_accel_sde() -> ChainDerivation:
    abar_t = alpha_bar_of_sigma(SIGMA_FROM)
    alpha = abar_t / alpha_bar_of_sigma(SIGMA_TO)
    half_sd = sp.sqrt((1 - alpha) / 2)
    # Y^+ = Y_t + sqrt((1-alpha_t)/2) Z: in VE units the pre-noise sd is half_sd / sqrt(abar_t).
    pre_noise = sp.diff(_to_ve(sp.sqrt(abar_t) * _X + half_sd * _Z_PRE, SIGMA_FROM), _Z_PRE)
    y_plus = sp.sqrt(abar_t) * _X               # _X now stands for the lifted VE state x + pre*z
    s = vp_score(y_plus, _D[0], SIGMA_FROM)
    y_next = (y_plus + (1 - alpha) * s) / sp.sqrt(alpha) + half_sd * _Z_POST
    return ChainDerivation((SIGMA_FROM,), (_X,), _to_ve(y_next, SIGMA_TO), pre_noise, ())


#: name -> symbolic derivation (the registered step methods are compiled from these).
CHAIN_METHODS: Dict[str, Callable[[], ChainDerivation]] = {
    "li_ddim": _derive_li_ddim,
    "li_ddpm": _derive_li_ddpm,
    "li_accel_ode": _derive_li_accel_ode,
    "li_accel_sde": _derive_li_accel_sde,
}


@functools.lru_cache(maxsize=None)
def chain_derivation(name: str) -> ChainDerivation:
    """The sympy derivation of chain method ``name`` (one of :data:`CHAIN_METHODS`)."""
    if name not in CHAIN_METHODS:
        raise ValueError(f"unknown chain method {name!r}; known: {sorted(CHAIN_METHODS)}")
    return CHAIN_METHODS[name]()


def _coefficient(expr: sp.Expr, symbol: sp.Symbol) -> sp.Expr:
    """Coefficient of ``symbol`` in the linear expression ``expr`` (simplified for evaluation)."""
    return sp.factor(sp.simplify(sp.diff(expr, symbol)))


@functools.lru_cache(maxsize=None)
def _compiled(name: str):
    """Lambdified coefficient function of method ``name`` and its stage count (cached)."""
    der = chain_derivation(name)
    s = len(der.stage_sigma)
    exprs: List[sp.Expr] = []
    for j in range(s):
        exprs.append(der.stage_sigma[j])
        exprs.append(_coefficient(der.stage_input[j], _X))
        exprs.extend(_coefficient(der.stage_input[j], _D[k]) for k in range(j))
        for k in range(j, s):          # explicit: a stage never sees its own or later outputs
            if sp.diff(der.stage_input[j], _D[k]) != 0:
                raise AssertionError(f"{name}: stage {j} depends on D{k}")
    exprs.append(_coefficient(der.output, _X))
    exprs.extend(_coefficient(der.output, _D[k]) for k in range(s))
    exprs.append(sp.factor(sp.simplify(der.pre_noise)))
    exprs.append(_coefficient(der.output, _Z_POST))
    args = (SIGMA_FROM, SIGMA_TO) + der.params
    return sp.lambdify(args, exprs, modules="numpy"), s


def _check_decreasing(sigma_from, sigma_to):
    if np.any(sigma_to >= sigma_from):
        raise ValueError("alpha-bar chain steps need sigma_to < sigma_from (alpha_t = "
                         "abar_t/abar_{t-1} in (0, 1)); got a step with sigma_to >= sigma_from")


def _check_param_array(value, name: str, m: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.shape != (m,):
        raise ValueError(f"{name} must be a 1-D array of shape [{m}] (one per step), "
                         f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def _evaluate(name: str, sigma_from: np.ndarray, sigma_to: np.ndarray, *params) -> StepCoefficients:
    fn, s = _compiled(name)
    m = sigma_from.shape[0]
    vals = iter(np.broadcast_to(np.asarray(v, dtype=np.float64), (m,))
                for v in fn(sigma_from, sigma_to, *params))
    stage_sigma = np.zeros((m, s))
    stage_x = np.zeros((m, s))
    stage_w = np.zeros((m, s, s))
    for j in range(s):
        stage_sigma[:, j] = next(vals)
        stage_x[:, j] = next(vals)
        for k in range(j):
            stage_w[:, j, k] = next(vals)
    out_x = next(vals).copy()
    out_w = np.stack([next(vals) for _ in range(s)], axis=1)
    pre_noise = next(vals).copy()
    post_noise = next(vals).copy()
    return StepCoefficients(stage_sigma, stage_x, stage_w, out_x, out_w, pre_noise, post_noise)


def lookback_sigmas(sigmas) -> np.ndarray:
    """``sigma_back`` for :func:`li_accel_ode` on the grid ``sigmas`` (length M+1 -> length M).

    Step n (``sigmas[n] -> sigmas[n+1]``) looks back to the grid point before it:
    ``sigma_back[n] = sigmas[n-1]`` for n >= 1. The first step has no earlier point; the notes
    (§1.1) suggest "evaluating the same schedule formula at t = T+1". For a generic grid we use the
    geometric extrapolation ``sigma_{-1} = sigmas[0]^2 / sigmas[1]``, i.e. the first step in
    ``lambda = -log sigma`` is repeated backwards (constant ``h``). For large sigma this makes
    ``(1-alpha_{T+1}) / (1-alpha_T) ~ 1``, the regime the look-back correction is built for.

    The grid must be strictly decreasing with ``sigmas[0], sigmas[1] > 0`` (a final 0 is allowed:
    the step to 0 is the solver's denoising step and gets no entry's special treatment here).
    """
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.ndim != 1 or sig.shape[0] < 2:
        raise ValueError(f"sigmas must be a 1-D grid of at least 2 noise levels, got shape {sig.shape}")
    if not np.isfinite(sig).all():
        raise ValueError("sigmas must be finite")
    if not (np.diff(sig) < 0).all():
        raise ValueError("sigmas must be strictly decreasing")
    if sig[1] <= 0:
        raise ValueError("sigmas[1] must be > 0 for the look-back extrapolation sigmas[0]^2/sigmas[1]")
    first = sig[0] ** 2 / sig[1]
    return np.concatenate([[first], sig[:-2]])


@register_step_method("li_ddim")
def li_ddim(sigma_from, sigma_to) -> StepCoefficients:
    """DDIM-type chain step ``Y_{t-1} = (Y_t + (1-alpha_t)/2 s_t(Y_t)) / sqrt(alpha_t)``.

    Notes §1.2 (the deterministic sampler analysed by Li et al.; equal to exact DDIM to first
    order, local error O((1-alpha_t)^2)). In VE units ``x' = (1 - c) x + c D(x, sigma_from)`` with
    ``c = (sigma_from^2 - sigma_to^2) / (2 sigma_from^2)``.
    """
    _check_decreasing(sigma_from, sigma_to)
    return _evaluate("li_ddim", sigma_from, sigma_to)


@register_step_method("li_ddpm")
def li_ddpm(sigma_from, sigma_to) -> StepCoefficients:
    """DDPM-type chain step ``Y_{t-1} = (Y_t + (1-alpha_t) s_t(Y_t) + sqrt(1-alpha_t) Z) / sqrt(alpha_t)``.

    Notes §1.2 [sourced: README of the official repo]. ``post_noise`` is the VE standard deviation
    ``sqrt(1-alpha_t) / sqrt(abar_t)``.
    """
    _check_decreasing(sigma_from, sigma_to)
    return _evaluate("li_ddpm", sigma_from, sigma_to)


@register_step_method("li_accel_ode")
def li_accel_ode(sigma_from, sigma_to, sigma_back=None) -> StepCoefficients:
    """Accelerated deterministic sampler of Li et al. (theoretical two-evaluation form, notes §1.3).

    ``Y^- = sqrt(alpha_{t+1}) (Y_t - (1-alpha_{t+1})/2 s_t(Y_t))`` (look-back point Phi_t, one
    inverse DDIM-type step to time t+1), then::

        Y_{t-1} = (Y_t + (1-alpha_t)/2 s_t(Y_t)
                   + (1-alpha_t)^2 / (4 (1-alpha_{t+1})) (s_t(Y_t) - sqrt(alpha_{t+1}) s_{t+1}(Y^-)))
                  / sqrt(alpha_t)

    [reconstructed in the notes; verified there to have local error O((1-alpha_t)^3)]. Stage 0 is
    at ``sigma_from``, stage 1 at ``sigma_back`` (the PREVIOUS, larger grid sigma, time t+1).
    ``sigma_back``: array [M], ``> sigma_from``; :func:`lookback_sigmas` builds it from a grid.
    """
    _check_decreasing(sigma_from, sigma_to)
    if sigma_back is None:
        raise ValueError("li_accel_ode needs sigma_back (array [M], the grid sigma before "
                         "sigma_from; see samplerlab.theory.alpha_bar_chain.lookback_sigmas)")
    sb = _check_param_array(sigma_back, "sigma_back", sigma_from.shape[0])
    if np.any(sb <= sigma_from):
        raise ValueError("sigma_back must be > sigma_from (it is the previous, noisier grid point)")
    return _evaluate("li_accel_ode", sigma_from, sigma_to, sb)


@register_step_method("li_accel_sde")
def li_accel_sde(sigma_from, sigma_to) -> StepCoefficients:
    """Accelerated stochastic sampler of Li et al. (notes §1.4, README / ImageNet-code form).

    ``Y^+ = Y_t + sqrt((1-alpha_t)/2) Z`` (``pre_noise`` = ``sqrt((1-alpha_t)/2) / sqrt(abar_t)``
    in VE units), one score call at ``Y^+`` with time t (``stage_sigma = sigma_from``), then
    ``Y_{t-1} = (Y^+ + (1-alpha_t) s_t(Y^+)) / sqrt(alpha_t) + sqrt((1-alpha_t)/2) Z^+``
    (``post_noise`` = ``sqrt((1-alpha_t)/2) / sqrt(abar_{t-1})``; the second noise is NOT divided
    by ``sqrt(alpha_t)``). The authors' CIFAR code uses ``sqrt(alpha_t (1-alpha_t)/2)`` for the
    first noise instead; that variant is not registered (notes §4.3: slightly worse).
    """
    _check_decreasing(sigma_from, sigma_to)
    return _evaluate("li_accel_sde", sigma_from, sigma_to)
