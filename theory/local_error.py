"""Leading local truncation errors of first-order samplers and of the accelerated chain sampler.

Convention: the local error of one step is ``E = exact - numerical``, both started from the same
point on the exact trajectory (variance results are the excess ``numerical - exact``).

1. Backward value vs forward value in ``lambda = -log sigma`` (seed 000: Jiao, Li, Cai, Li,
   arXiv 2512.24927; reconstruction of shared/papers/notes-fdpmsolver-and-lagrange-sampler.md
   §1.5). Along the exact trajectory write the denoised path as a Taylor series
   ``D(lambda_n + tau) = D + D' tau + D'' tau^2/2 + D''' tau^3/6`` (``D'`` = total derivative of
   the denoised path in lambda). Exact step (variation of constants, DESIGN.md)::

       x(lambda_n + h) = e^-h x_n + int_0^h e^-(h - tau) D(lambda_n + tau) dtau

   * DDIM / exponential Euler, backward value: ``x_{n+1} = e^-h x_n + (1 - e^-h) D(x_n, lambda_n)``,
     ``E_B = alpha D' (h - 1 + e^-h) + ... = +alpha D' h^2/2 + O(h^3)``;
   * ideal forward value (implicit): ``x_{n+1} = e^-h x_n + (1 - e^-h) D(x_{n+1}, lambda_{n+1})``,
     ``E_F = -alpha D' (1 - e^-h - h e^-h) + ... = -alpha D' h^2/2 + O(h^3)``;
   so the leading terms have opposite signs and ``E_B + E_F = O(h^3)``. ``alpha`` is the VP
   signal scale at the step's end (``x_vp = alpha x_ve``); ``alpha = 1`` in VE variables. The
   implicit solve is expanded with ``J = dD/dx`` at the end point; the neglected curvature term
   ``d^2D/dx^2 E_F^2`` is O(h^4), so the series are exact through h^3.

2. The seed-002 chain samplers (Li et al., arXiv 2403.03852; notes-accelerated-samplers-and-res.md
   §1.2-1.4, §4.1) on Gaussian data ``N(0, v)``: every update multiplies ``Y`` by a number, the
   exact PF-ODE map multiplies it by ``sqrt((1 - abar_{t-1} + v abar_{t-1}) / (1 - abar_t + v abar_t))``.
   Series in the step ``beta = 1 - alpha_t`` with ``abar_t = a``, ``abar_{t-1} = a / (1 - beta)``,
   ``abar_{t+1} = (1 - r beta) a`` (``r = (1 - alpha_{t+1}) / (1 - alpha_t)``). For ``v = 1``
   (exact map = identity) the notes' sanity values: DDIM-type multiplies ``Y`` by
   ``1 + beta^2/8 + O(beta^3)``, the accelerated ODE sampler by ``1 + beta^3 (1/16 - r/8) + O(beta^4)``;
   the per-step variance excess is ``+beta^2`` (DDPM-type) and ``-beta^2/2`` (accelerated SDE).
"""
from __future__ import annotations

import functools

import sympy as sp

__all__ = [
    "H", "ALPHA", "D_DERIVS", "JAC", "BETA", "ABAR", "RATIO", "VAR",
    "backward_value_local_error", "forward_value_local_error", "leading_term",
    "ddim_leading_error", "forward_value_leading_error",
    "gaussian_chain_multiplier", "gaussian_exact_multiplier", "gaussian_chain_local_error",
    "chain_leading_error", "gaussian_chain_variance_excess", "describe",
]

H = sp.Symbol("h", positive=True)                  # step in lambda
ALPHA = sp.Symbol("alpha", positive=True)          # VP signal scale at the step end (1 in VE)
D_DERIVS = sp.symbols("D1:4", real=True)           # D', D'', D''' of the denoised path in lambda
JAC = sp.Symbol("J", real=True)                    # dD/dx at the end point (implicit solve)
BETA = sp.Symbol("beta", positive=True)            # 1 - alpha_t
ABAR = sp.Symbol("a", positive=True)               # abar_t
RATIO = sp.Symbol("r", positive=True)              # (1 - alpha_{t+1}) / (1 - alpha_t)
VAR = sp.Symbol("v", positive=True)                # data variance

_TAU = sp.Symbol("tau", positive=True)
_D0 = sp.Symbol("D0", real=True)


def _path(tau):
    """Taylor model of the denoised path along the exact trajectory (through tau^3)."""
    d1, d2, d3 = D_DERIVS
    return _D0 + d1 * tau + d2 * tau ** 2 / 2 + d3 * tau ** 3 / 6


def _series(expr, var, order):
    return sp.expand(sp.series(expr, var, 0, order + 1).removeO())


def _exact_increment():
    """``int_0^h e^-(h-tau) D(tau) dtau`` (exact step minus ``e^-h x_n``)."""
    return sp.integrate(sp.exp(-(H - _TAU)) * _path(_TAU), (_TAU, 0, H))


@functools.lru_cache(maxsize=None)
def backward_value_local_error(order: int = 3) -> sp.Expr:
    """``E_B`` of one DDIM (backward-value exponential Euler) step, series in h through ``h^order``.

    ``order`` <= 4 (the path model carries D''' only).
    """
    _check_series_order(order)
    numerical = (1 - sp.exp(-H)) * _D0
    return _series(ALPHA * (_exact_increment() - numerical), H, order)


@functools.lru_cache(maxsize=None)
def forward_value_local_error(order: int = 3) -> sp.Expr:
    """``E_F`` of one ideal forward-value step (seed 000), series in h through ``h^order``.

    Implicit update ``x_F = e^-h x_n + (1 - e^-h) D(x_F, lambda_{n+1})`` with
    ``D(x_F) = D(h) - J E_F``: ``E_F = int_0^h e^-(h-tau) (D(tau) - D(h)) dtau / (1 - (1 - e^-h) J)``.
    ``order`` <= 3 (curvature of D in x enters at h^4).
    """
    _check_series_order(order, maximum=3)
    explicit = _exact_increment() - (1 - sp.exp(-H)) * _path(H)
    return _series(ALPHA * explicit / (1 - (1 - sp.exp(-H)) * JAC), H, order)


def _check_series_order(order, maximum: int = 4):
    if isinstance(order, bool) or not isinstance(order, int) or not 2 <= order <= maximum:
        raise ValueError(f"order must be an integer in [2, {maximum}], got {order!r}")


def leading_term(expr: sp.Expr, var: sp.Symbol = H) -> sp.Expr:
    """Lowest-order non-zero term of the polynomial ``expr`` in ``var``."""
    poly = sp.Poly(sp.expand(expr), var)
    for (power,), coeff in sorted(poly.terms()):
        c = sp.factor(coeff)
        if c != 0:
            return c * var ** power
    return sp.Integer(0)


def ddim_leading_error() -> sp.Expr:
    """``+alpha D' h^2 / 2``: leading local error of DDIM (backward value) in lambda."""
    return leading_term(backward_value_local_error(3))


def forward_value_leading_error() -> sp.Expr:
    """``-alpha D' h^2 / 2``: leading local error of the ideal forward-value step."""
    return leading_term(forward_value_local_error(3))


# ---- seed 002 on Gaussian data N(0, v) --------------------------------------------------------

def _gaussian_score_factor(abar):
    """``s_gamma(Y) = -Y / (1 - gamma + v gamma)`` for data N(0, v): returns the factor of Y."""
    return -1 / (1 - abar + VAR * abar)


CHAIN_METHODS_GAUSSIAN = ("li_ddim", "li_accel_ode", "lagrange_k1")


def gaussian_exact_multiplier() -> sp.Expr:
    """Exact PF-ODE factor ``Y_{t-1} / Y_t`` for N(0, v) data (closed form, not a series)."""
    abar_prev = ABAR / (1 - BETA)
    return sp.sqrt((1 - abar_prev + VAR * abar_prev) / (1 - ABAR + VAR * ABAR))


def _chain_multiplier_exact_form(method: str) -> sp.Expr:
    alpha = 1 - BETA
    s_t = _gaussian_score_factor(ABAR)
    if method == "li_ddim":
        return (1 + BETA / 2 * s_t) / sp.sqrt(alpha)
    if method == "li_accel_ode":
        alpha_back = 1 - RATIO * BETA
        y_minus = sp.sqrt(alpha_back) * (1 - RATIO * BETA / 2 * s_t)
        s_back = _gaussian_score_factor(alpha_back * ABAR) * y_minus
        return (1 + BETA / 2 * s_t
                + BETA ** 2 / (4 * RATIO * BETA) * (s_t - sp.sqrt(alpha_back) * s_back)) / sp.sqrt(alpha)
    if method == "lagrange_k1":
        return (1 + BETA / (2 * alpha) * s_t) / sp.sqrt(alpha)
    raise ValueError(f"unknown method {method!r}; known: {list(CHAIN_METHODS_GAUSSIAN)}")


@functools.lru_cache(maxsize=None)
def gaussian_chain_multiplier(method: str, order: int = 3) -> sp.Expr:
    """Series in ``beta`` (through ``beta^order``) of the factor one step of ``method`` applies to Y.

    ``method``: ``"li_ddim"``, ``"li_accel_ode"`` or ``"lagrange_k1"`` (the K = 1 Lagrange step);
    data N(0, v), symbols ``BETA, ABAR, RATIO, VAR``.
    """
    _check_series_order(order, maximum=6)
    return sp.collect(_series(_chain_multiplier_exact_form(method), BETA, order), BETA, sp.factor)


@functools.lru_cache(maxsize=None)
def gaussian_chain_local_error(method: str, order: int = 3) -> sp.Expr:
    """``exact - numerical`` factor of Y for one step of ``method`` on N(0, v) data (series in beta)."""
    _check_series_order(order, maximum=6)
    diff = gaussian_exact_multiplier() - _chain_multiplier_exact_form(method)
    return sp.collect(_series(diff, BETA, order), BETA, sp.factor)


def chain_leading_error(method: str, variance=None) -> sp.Expr:
    """Leading term in beta of :func:`gaussian_chain_local_error` (``variance`` substitutes v).

    Searched through beta^3 (enough for every method here); 0 if no term up to beta^3 survives.
    """
    expr = gaussian_chain_local_error(method)
    if variance is not None:
        expr = expr.subs(VAR, variance)
    return leading_term(expr, BETA)


@functools.lru_cache(maxsize=None)
def gaussian_chain_variance_excess(method: str, order: int = 3) -> sp.Expr:
    """Per-step variance excess (numerical - exact) of the stochastic chain samplers on N(0, v).

    Starting from the exact marginal ``Y_t ~ N(0, 1 - a + v a)``: ``"li_ddpm"``
    ``Y' = (Y + beta s + sqrt(beta) Z)/sqrt(1-beta)``; ``"li_accel_sde"`` ``Y+ = Y + sqrt(beta/2) Z``,
    ``Y' = (Y+ + beta s(Y+))/sqrt(1-beta) + sqrt(beta/2) Z+``. Series in beta.
    """
    _check_series_order(order, maximum=6)
    var_t = 1 - ABAR + VAR * ABAR
    abar_prev = ABAR / (1 - BETA)
    var_prev = 1 - abar_prev + VAR * abar_prev
    s_t = _gaussian_score_factor(ABAR)
    if method == "li_ddpm":
        numerical = ((1 + BETA * s_t) ** 2 * var_t + BETA) / (1 - BETA)
    elif method == "li_accel_sde":
        numerical = (1 + BETA * s_t) ** 2 * (var_t + BETA / 2) / (1 - BETA) + BETA / 2
    else:
        raise ValueError(f"unknown method {method!r}; known: ['li_ddpm', 'li_accel_sde']")
    return sp.collect(_series(numerical - var_prev, BETA, order), BETA, sp.factor)


def describe() -> str:
    """Human-readable summary of the leading local errors derived in this module."""
    lines = [
        "Local error E = exact - numerical (one step from the exact trajectory).",
        f"DDIM (backward value), lambda-step h:   E_B = {ddim_leading_error()} + O(h^3)",
        f"ideal forward value (seed 000):          E_F = {forward_value_leading_error()} + O(h^3)",
        f"E_B + E_F through h^3:                   {sp.factor(backward_value_local_error(3) + forward_value_local_error(3))}",
        "Seed-002 chain on N(0, v) data, beta = 1 - alpha_t, a = abar_t, r = (1-alpha_{t+1})/(1-alpha_t):",
        f"  DDIM-type:       E/Y = {chain_leading_error('li_ddim')}",
        f"  accelerated ODE: E/Y = {chain_leading_error('li_accel_ode')}",
        f"  v = 1: DDIM-type multiplier {gaussian_chain_multiplier('li_ddim', 3).subs(VAR, 1)}, "
        f"accelerated {gaussian_chain_multiplier('li_accel_ode', 3).subs(VAR, 1)}",
        f"  variance excess (v = 1): DDPM-type {leading_term(gaussian_chain_variance_excess('li_ddpm').subs(VAR, 1), BETA)}, "
        f"accelerated SDE {leading_term(gaussian_chain_variance_excess('li_accel_sde').subs(VAR, 1), BETA)}",
    ]
    return "\n".join(lines)
