"""Linear multistep weights: exact integrals of Lagrange basis polynomials, variable step.

Every multistep sampler of samplerlab advances the VE state with one model evaluation per step::

    x_{n+1} = out_x[n] * x_n + sum_{j < orders[n]} weights[n, j] * F_{n-j}

where ``F_m`` is the model output at grid point ``m`` in the method's prediction type (``'data'``:
``D(x_m, sigma_m)``; ``'noise'``: ``eps_m = (x_m - D)/sigma_m``).  The weights are the exact
integrals of the Lagrange basis polynomials through the past nodes against the method's kernel
(DESIGN.md, "Multistep methods"); nothing here uses numerical quadrature.

The generic core
----------------
Write the interpolation variable relative to the current node and normalised by the step,
``s = (v - v_n) / (v_{n+1} - v_n)``, so that the past nodes are ``s_j = (v_{n-j} - v_n)/(v_{n+1} -
v_n) < 0`` (``s_0 = 0``).  For a kernel ``K`` on the step, the weight of ``F_{n-j}`` is
``w_j = int K(s) L_j(s) ds`` with ``L_j`` the Lagrange basis through ``s_0..s_{q-1}``.  Writing
``L_j(s) = sum_k c_{jk} s^k``, ``w_j = sum_k c_{jk} m_k`` with the kernel *moments*
``m_k = int K(s) s^k ds``, and the basis coefficients have the closed form::

    c_{jk} = (-1)^{q-1-k} e_{q-1-k}({s_m}_{m != j}) / prod_{m != j} (s_j - s_m)

(``e_i`` the elementary symmetric polynomials).  Equivalently ``w`` is the unique solution of the
moment (order) conditions ``sum_j w_j s_j^k = m_k, k < q``.  :func:`lagrange_weights_sym` builds
these expressions in sympy for any ``q``; :func:`lagrange_weights` is their lambdified form.  With
all past nodes negative and all moments positive (every kernel below), every term of the numerator
has the same sign, so the evaluation has no cancellation.

Kernels (moments ``m_k`` in the normalised variable; ``h = lambda_{n+1} - lambda_n =
log(sigma_n/sigma_{n+1}) > 0``, ``lambda = -log sigma``, phi-functions at the signs of
:mod:`samplerlab.theory.phi_functions`):

* data form in lambda (``x' = D - x``; variation of constants, DESIGN.md)::

      x_{n+1} = e^{-h} x_n + int_0^h e^{-(h-tau)} D dtau,   m_k = h k! phi_{k+1}(-h)

* noise form in lambda, VE (``dx/dlambda = -e^{-lambda} eps``)::

      x_{n+1} = x_n - sigma_n int_0^h e^{-tau} eps dtau,   m_k = -sigma_{n+1} h k! phi_{k+1}(h)

  (``int_0^h e^{-tau} tau^k dtau = e^{-h} k! h^{k+1} phi_{k+1}(h)`` and ``sigma_n e^{-h} =
  sigma_{n+1}``; for ``k = 0`` this is DDIM, ``-(sigma_n - sigma_{n+1}) eps_n``.)

* polynomial in sigma (``dx/dsigma = eps``)::

      x_{n+1} = x_n + int_{sigma_n}^{sigma_{n+1}} eps dsigma,   m_k = (sigma_{n+1} - sigma_n)/(k+1)

* linear in alpha-bar against ``dsigma`` (seed 002's 1-NFE accelerated ODE sampler), see
  :func:`li_accel_moment_sym`.

Methods (:func:`multistep_coefficients`)
----------------------------------------
``res``    data form, exponential Adams in lambda, exact (any order).  Order 2 is RES-2M of Zhang,
           Song, Chen (arXiv 2308.02157; notes-accelerated-samplers-and-res.md §2.6):
           ``c2 = -h_{n-1}/h``, ``b2 = phi_2(-h)/c2``, ``b1 = phi_1(-h) - b2``.  Order 3 is the
           exact integral of the quadratic interpolant (not from the paper: its generalisation).
``dpmpp``  DPM-Solver++ multistep (Lu et al., arXiv 2211.01095), data form, orders 1-3, exactly
           as the authors' ``dpm_solver_pytorch.py`` (also diffusers and k-diffusion):
           2M ``x' = e^{-h} x + h phi_1 [(1 + 1/(2r)) D_n - D_{n-1}/(2r)]``, ``r = h_{n-1}/h``
           (phi_1 only; its D_{n-1} weight differs from RES-2M by ``phi_1/2`` vs ``phi_2``);
           3M ``x' = e^{-h} x + h phi_1 D_n + h phi_2 D1 + h phi_3 D2`` with the code's divided
           differences ``D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1)``, ``D2 = (D1_0 - D1_1)/(r0+r1)``,
           ``D1_0 = (D_n - D_{n-1})/r0``, ``D1_1 = (D_{n-1} - D_{n-2})/r1``, ``r0 = h_{n-1}/h``,
           ``r1 = h_{n-2}/h``.  **Note (derived and tested here):** for a quadratic field
           ``D1 = h D'`` and ``D2 = h^2 D''/2`` exactly, so the ``D''`` term is weighted
           ``h^3 phi_3 D''/2`` where the exact integral has ``h^3 phi_3 D''``.  3M is therefore
           exact only for linear D; for ``D = c tau^2`` the one-step error is ``-c h^3 phi_3(-h)``
           (local O(h^3)), i.e. the coded 3M is a second-order method in the quadrature sense.
           (The singlestep third-order update of the same code uses ``D2 ~ h^2 D''``, with the
           same phi_3 coefficient.)  ``res`` with order 3 is the exact third-order method.
``deis``   noise form, exponential Adams-Bashforth on eps with Lagrange interpolation in lambda,
           exact (any order).  This is the variable-step "log-rho" variant of DEIS (Zhang & Chen,
           ICLR 2023; diffusers' ``DEISMultistepScheduler``): eps interpolated in ``log rho =
           -lambda`` (rho = sigma_VE) and integrated exactly against ``d rho``.  DEIS' own ``tAB``
           interpolates in the VP time t, whose weights have no closed form (the official code
           uses a 10,000-point Riemann sum); it is not provided.
``ipndm``  improved PNDM (DEIS paper; zju-pi/diff-sampler ``ipndm_sampler``): fixed equal-step
           Adams-Bashforth weights on eps in sigma, ``x' = x + (sigma_{n+1} - sigma_n) sum_j
           beta_j eps_{n-j}`` with beta = (1), (3/2, -1/2), (23/12, -16/12, 5/12),
           (55/24, -59/24, 37/24, -9/24) -- obtained here from the core with nodes ``s_j = -j``.
           Order <= 4; warm-up with the lower-order fixed weights.  ``variable_step=True`` is
           ``ipndm_v``.
``ipndm_v`` the variable-step Adams-Bashforth in sigma, order <= 4 (= ``lms`` capped at 4).
           **Deviation:** diff-sampler's ``ipndm_v_sampler`` writes closed forms for orders 3/4
           that differ from the exact variable-step AB weights: its order-3 weights agree only for
           equal steps, and its order-4 weights reduce on equal steps to (57, -65, 43, -11)/24,
           which is not AB4 (it fails the cubic moment condition).  Here the weights are the exact
           Lagrange integrals.
``lms``    linear multistep in sigma (k-diffusion ``sample_lms``): eps interpolated by the
           Lagrange polynomial in sigma, integrated exactly over [sigma_n, sigma_{n+1}] (k-diffusion
           uses ``scipy.integrate.quad`` with epsrel=1e-4).  Any order.
``li_accel_ode_1nfe``  the 1-NFE practical accelerated ODE sampler of seed 002 (Li et al., arXiv
           2403.03852; authors' ``generalized_steps_accelerated``; notes §1.3): eps linear in
           alpha-bar through the previous and current evaluations, integrated exactly against
           ``d sigma_VE``::

               x_{n+1} = x_n + (sigma_{n+1} - sigma_n) eps_n + K_n (eps_{n-1} - eps_n),
               K_n = [atan sigma_{n+1} - atan sigma_n - abar_n (sigma_{n+1} - sigma_n)]
                     / (abar_{n-1} - abar_n),        abar = 1/(1 + sigma^2)

           which equals the notes' arcsin form ``C_t / sqrt(abar_{t-1})`` (tested).  Order <= 2;
           the first step is DDIM (the repo skips the correction when there is no previous eps).

Options common to every method
------------------------------
* Warm-up: row n uses ``orders[n] = min(order, n + 1)`` past values (``weights[n, j] = 0`` for
  ``j >= orders[n]``).
* ``lower_order_final`` (bool) and ``lower_order_final_below`` (int or None): when
  ``lower_order_final`` and (``lower_order_final_below is None`` or ``M < lower_order_final_below``)
  the last rows use ``orders[n] = min(orders[n], M - n)`` (last step first order, the one before
  at most second order, ...).  Defaults: ``dpmpp`` True / 10, as the DPM-Solver code
  (``steps < 10``; its docstring says 15 and diffusers uses 15); every other method False.
  ``M`` counts the rows, i.e. the steps with ``sigma_{n+1} > 0`` (the final denoising step to
  sigma = 0 is the solver's, DESIGN.md).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Callable, Dict, Tuple

import numpy as np
import sympy as sp

from samplerlab.theory.alpha_bar_chain import alpha_bar_of_sigma
from samplerlab.theory.phi_functions import PHI_MODULE, Phi, phi
from samplerlab.theory.validation import check_positive_int

__all__ = [
    "MultistepCoefficients",
    "multistep_coefficients",
    "MULTISTEP_METHODS",
    "lagrange_weights_sym",
    "lagrange_weights",
    "kernel_moments_sym",
    "exp_adams_weights",
    "polynomial_adams_weights",
    "li_accel_moment_sym",
    "li_accel_correction",
    "dpmpp_weights_sym",
    "multistep_weights_sym",
    "row_orders",
    "validate_grid",
    "check_positive_int",
    "lambda_offsets",
]

PREDICTIONS = ("data", "noise")


# ----------------------------------------------------------------------------------------------
# result type
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MultistepCoefficients:
    """Per-step weights of a linear multistep method (DESIGN.md, "Multistep methods").

    ``x_{n+1} = out_x[n] x_n + sum_j weights[n, j] F_{n-j}``, ``F`` in ``prediction`` form.

    Attributes
    ----------
    prediction : ``'data'`` (F = D) or ``'noise'`` (F = eps = (x - D)/sigma, VE noise).
    out_x      : [M] float64.
    weights    : [M, order] float64; ``weights[n, j] = 0`` for ``j >= orders[n]``.
    orders     : [M] int64, the number of past values row n uses (1 <= orders[n] <= order).
    """

    prediction: str
    out_x: np.ndarray
    weights: np.ndarray
    orders: np.ndarray

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"MultistepCoefficients.prediction must be 'data' or 'noise', got "
                             f"{self.prediction!r}")
        out_x = np.asarray(self.out_x, dtype=np.float64)
        weights = np.asarray(self.weights, dtype=np.float64)
        orders = np.asarray(self.orders)
        if out_x.ndim != 1:
            raise ValueError(f"MultistepCoefficients.out_x must be 1-D [M], got shape {out_x.shape}")
        m = out_x.shape[0]
        if weights.ndim != 2 or weights.shape[0] != m or weights.shape[1] < 1:
            raise ValueError(f"MultistepCoefficients.weights must have shape [M={m}, order>=1], got "
                             f"{weights.shape}")
        if orders.shape != (m,) or orders.dtype.kind not in "iu":
            raise ValueError(f"MultistepCoefficients.orders must be an int array of shape ({m},), "
                             f"got {orders.dtype} {orders.shape}")
        orders = orders.astype(np.int64)
        if (orders < 1).any() or (orders > weights.shape[1]).any():
            raise ValueError(f"MultistepCoefficients.orders must lie in [1, {weights.shape[1]}]")
        for name, arr in (("out_x", out_x), ("weights", weights)):
            if not np.isfinite(arr).all():
                raise ValueError(f"MultistepCoefficients.{name} holds NaN or inf")
        unused = np.arange(weights.shape[1])[None, :] >= orders[:, None]
        if (weights[unused] != 0).any():
            raise ValueError("MultistepCoefficients.weights must be 0 beyond orders[n] in row n")
        object.__setattr__(self, "out_x", out_x)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "orders", orders)

    @property
    def steps(self) -> int:
        return self.out_x.shape[0]

    @property
    def order(self) -> int:
        return self.weights.shape[1]


# ----------------------------------------------------------------------------------------------
# the generic core: Lagrange basis integrals from kernel moments
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def lagrange_weights_sym(q: int):
    """Symbolic Lagrange-basis integrals for ``q`` nodes.

    Returns ``(nodes, moments, weights)``: sympy symbols ``s0..s{q-1}``, ``m0..m{q-1}`` and the
    ``q`` expressions ``w_j = sum_k m_k [s^k] L_j(s)`` (module docstring), i.e. the solution of
    ``sum_j w_j s_j^k = m_k`` for ``k < q``.
    """
    q = check_positive_int(q, "q")
    s = sp.symbols(f"s0:{q}", real=True)
    m = sp.symbols(f"m0:{q}", real=True)
    t = sp.Symbol("t")
    weights = []
    for j in range(q):
        others = [s[i] for i in range(q) if i != j]
        # prod_{m != j} (t - s_m) = sum_k t^k (-1)^{q-1-k} e_{q-1-k}(others)
        poly = sp.Poly(sp.Mul(*[(t - o) for o in others]), t) if others else sp.Poly(1, t)
        coeffs = poly.all_coeffs()[::-1]  # ascending powers of t
        numerator = sp.Add(*[m[k] * coeffs[k] for k in range(q)])
        denominator = sp.Mul(*[(s[j] - o) for o in others])
        weights.append(numerator / denominator)
    return s, m, tuple(weights)


@functools.lru_cache(maxsize=None)
def _lagrange_weights_fn(q: int) -> Callable:
    s, m, w = lagrange_weights_sym(q)
    return sp.lambdify(s + m, list(w), modules="numpy", cse=True)


def lagrange_weights(nodes, moments) -> np.ndarray:
    """Numeric :func:`lagrange_weights_sym`: ``nodes``, ``moments`` float arrays ``[..., q]``.

    Returns the weights ``[..., q]`` (float64).  Nodes must be pairwise distinct.
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    moments = np.asarray(moments, dtype=np.float64)
    if nodes.shape != moments.shape or nodes.ndim < 1:
        raise ValueError(f"nodes and moments must have the same shape [..., q], got {nodes.shape} "
                         f"and {moments.shape}")
    q = nodes.shape[-1]
    if q > 1:
        diff = nodes[..., :, None] - nodes[..., None, :]
        off = ~np.eye(q, dtype=bool)
        if (diff[..., off] == 0).any():
            raise ValueError("nodes must be pairwise distinct")
    fn = _lagrange_weights_fn(q)
    args = [nodes[..., i] for i in range(q)] + [moments[..., i] for i in range(q)]
    out = fn(*args)
    return np.stack([np.broadcast_to(np.asarray(w, dtype=np.float64), nodes.shape[:-1])
                     for w in out], axis=-1)


def kernel_moments_sym(kernel: str, q: int, h=None):
    """Moments ``m_0..m_{q-1}`` of a kernel in the normalised variable (module docstring).

    ``kernel``: ``'exp_data'`` (``h k! phi_{k+1}(-h)``), ``'exp_noise'`` (``h k! phi_{k+1}(h)``,
    to be multiplied by ``-sigma_{n+1}``) or ``'poly'`` (``1/(k+1)``, to be multiplied by
    ``sigma_{n+1} - sigma_n``).  ``h`` defaults to the positive symbol ``h``.
    """
    q = check_positive_int(q, "q")
    h = sp.Symbol("h", positive=True) if h is None else h
    if kernel == "exp_data":
        return tuple(h * sp.factorial(k) * Phi(k + 1, -h) for k in range(q))
    if kernel == "exp_noise":
        return tuple(h * sp.factorial(k) * Phi(k + 1, h) for k in range(q))
    if kernel == "poly":
        return tuple(sp.Rational(1, k + 1) for k in range(q))
    raise ValueError(f"kernel must be 'exp_data', 'exp_noise' or 'poly', got {kernel!r}")


def _exp_moments(h: np.ndarray, q: int, sign: float) -> np.ndarray:
    """``h k! phi_{k+1}(sign * h)`` for k < q, shape [len(h), q]."""
    return np.stack([h * math.factorial(k) * phi(k + 1, sign * h) for k in range(q)], axis=-1)


# ----------------------------------------------------------------------------------------------
# grids, orders
# ----------------------------------------------------------------------------------------------

def validate_grid(sigmas, name: str = "sigmas") -> np.ndarray:
    """A strictly decreasing 1-D grid of >= 2 finite noise levels, all > 0, as float64 numpy.

    Accepts a list, tuple, numpy array or torch tensor (moved to the CPU; coefficients are
    computed once per grid in float64).  Raises ``TypeError``/``ValueError`` naming ``name``.
    """
    if hasattr(sigmas, "detach") and hasattr(sigmas, "cpu"):  # torch tensor
        if not sigmas.is_floating_point():
            raise TypeError(f"{name} must be a floating-point array of noise levels, got dtype "
                            f"{sigmas.dtype}")
        sigmas = sigmas.detach().cpu().double().numpy()
    if not isinstance(sigmas, (list, tuple, np.ndarray)):
        raise TypeError(f"{name} must be a 1-D array of noise levels, got {type(sigmas).__name__}")
    arr = np.asarray(sigmas)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size < 2:
        raise ValueError(f"{name} must hold at least 2 noise levels, got {arr.size}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if (arr <= 0).any():
        raise ValueError(f"{name} must be > 0 everywhere (the step to sigma = 0 is the solver's "
                         f"final denoising step), got min {arr.min()!r}")
    if not (arr[1:] < arr[:-1]).all():
        raise ValueError(f"{name} must be strictly decreasing")
    return arr


def lambda_offsets(sigmas: np.ndarray) -> np.ndarray:
    """``h[n] = lambda_{n+1} - lambda_n = log(sigma_n / sigma_{n+1})`` for a validated grid."""
    return np.log(sigmas[:-1] / sigmas[1:])


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def row_orders(m: int, order: int, lower_order_final: bool = False,
               lower_order_final_below=None) -> np.ndarray:
    """Orders used per row: ``min(order, n + 1)``, lowered at the end (module docstring)."""
    lower_order_final = _check_bool(lower_order_final, "lower_order_final")
    if lower_order_final_below is not None:
        lower_order_final_below = check_positive_int(lower_order_final_below,
                                                     "lower_order_final_below")
    n = np.arange(m)
    orders = np.minimum(order, n + 1)
    if lower_order_final and (lower_order_final_below is None or m < lower_order_final_below):
        orders = np.minimum(orders, m - n)
    return orders.astype(np.int64)


def _past_offsets(values: np.ndarray, n: int, q: int) -> np.ndarray:
    """``values[n - j] - values[n]`` for j < q (values in the interpolation variable)."""
    return np.array([values[n - j] - values[n] for j in range(q)])


def _rows_by_order(orders: np.ndarray):
    for q in np.unique(orders):
        yield int(q), np.nonzero(orders == q)[0]


# ----------------------------------------------------------------------------------------------
# exponential Adams (data and noise form) and polynomial Adams (in sigma)
# ----------------------------------------------------------------------------------------------

def exp_adams_weights(sigmas: np.ndarray, orders: np.ndarray, form: str) -> np.ndarray:
    """Exact exponential Adams-Bashforth weights in lambda, ``[M, max(orders)]``.

    ``form='data'``: weights of ``D_{n-j}`` in ``x_{n+1} = e^{-h} x_n + sum_j w_j D_{n-j}``;
    ``form='noise'``: weights of ``eps_{n-j}`` in ``x_{n+1} = x_n + sum_j w_j eps_{n-j}``.
    Nodes ``s_j = (lambda_{n-j} - lambda_n)/h = log(sigma_n/sigma_{n-j})/h``.
    """
    if form not in PREDICTIONS:
        raise ValueError(f"form must be 'data' or 'noise', got {form!r}")
    m = sigmas.shape[0] - 1
    h = lambda_offsets(sigmas)
    weights = np.zeros((m, int(orders.max())))
    for q, rows in _rows_by_order(orders):
        nodes = np.array([[np.log(sigmas[n] / sigmas[n - j]) for j in range(q)] for n in rows])
        nodes = nodes / h[rows, None]
        if form == "data":
            mom = _exp_moments(h[rows], q, -1.0)
            weights[rows, :q] = lagrange_weights(nodes, mom)
        else:
            mom = _exp_moments(h[rows], q, +1.0)
            weights[rows, :q] = -sigmas[rows + 1, None] * lagrange_weights(nodes, mom)
    return weights


def polynomial_adams_weights(sigmas: np.ndarray, orders: np.ndarray,
                             equal_steps: bool = False) -> np.ndarray:
    """Exact Adams-Bashforth weights in sigma for ``x_{n+1} = x_n + sum_j w_j eps_{n-j}``.

    Nodes ``s_j = (sigma_{n-j} - sigma_n)/(sigma_{n+1} - sigma_n)``; with ``equal_steps`` the
    nodes are ``s_j = -j`` whatever the grid (fixed AB coefficients times the step, iPNDM).
    """
    m = sigmas.shape[0] - 1
    step = sigmas[1:] - sigmas[:-1]
    weights = np.zeros((m, int(orders.max())))
    for q, rows in _rows_by_order(orders):
        if equal_steps:
            nodes = np.broadcast_to(-np.arange(q, dtype=np.float64), (rows.size, q))
        else:
            nodes = np.array([_past_offsets(sigmas, n, q) for n in rows]) / step[rows, None]
        mom = np.broadcast_to(1.0 / np.arange(1, q + 1), (rows.size, q))
        weights[rows, :q] = step[rows, None] * lagrange_weights(nodes, mom)
    return weights


# ----------------------------------------------------------------------------------------------
# seed 002: eps linear in alpha-bar, integrated against d sigma
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def li_accel_moment_sym():
    """Symbolic derivation of seed 002's 1-NFE correction (module docstring, ``li_accel_ode_1nfe``).

    Returns ``(sigma_prev, sigma_n, sigma_next, K)`` where ``K`` is the weight of
    ``eps_{n-1} - eps_n`` obtained by integrating the linear-in-alpha-bar interpolant of eps
    through ``(abar_{n-1}, eps_{n-1})``, ``(abar_n, eps_n)`` exactly over ``d sigma`` from
    ``sigma_n`` to ``sigma_{n+1}`` (sympy ``integrate``; gives ``atan``).
    """
    sp_prev, sp_n, sp_next, s = sp.symbols("sigma_prev sigma_n sigma_next s", positive=True)
    a = alpha_bar_of_sigma
    # eps(s) = eps_n + (a(s) - a_n)/(a_prev - a_n) (eps_prev - eps_n)
    integral = sp.integrate(a(s) - a(sp_n), (s, sp_n, sp_next))
    k_expr = integral / (a(sp_prev) - a(sp_n))
    return sp_prev, sp_n, sp_next, k_expr


def _atan_minus_identity(u: np.ndarray) -> np.ndarray:
    """``atan(u) - u`` without cancellation (odd series for |u| < 0.5)."""
    u = np.asarray(u, dtype=np.float64)
    small = np.abs(u) < 0.5
    us = np.where(small, u, 0.0)
    u2 = us * us
    acc = np.zeros_like(us)
    for k in range(40, 0, -1):  # sum_{k>=1} (-1)^k u^{2k+1}/(2k+1), Horner in u^2
        acc = ((-1.0) ** k) / (2 * k + 1) + u2 * acc
    series = us * u2 * acc
    return np.where(small, series, np.arctan(u) - u)


def li_accel_correction(sigma_prev, sigma_n, sigma_next) -> np.ndarray:
    """Numeric ``K`` of :func:`li_accel_moment_sym`, evaluated without cancellation.

    ``int_{sigma_n}^{sigma_next} (abar(s) - abar_n) ds = atan(u) - d/(1 + sigma_n^2)`` with
    ``d = sigma_next - sigma_n`` and ``u = d/(1 + sigma_n sigma_next)`` (so ``atan(u)`` is the
    difference of the two arctangents), rewritten as
    ``-d^2 sigma_n / ((1 + sigma_n sigma_next)(1 + sigma_n^2)) + (atan(u) - u)``; the denominator
    ``abar_prev - abar_n = (sigma_n - sigma_prev)(sigma_n + sigma_prev)/((1+sigma_prev^2)(1+sigma_n^2))``.
    """
    sp_, sn, sx = (np.asarray(v, dtype=np.float64) for v in (sigma_prev, sigma_n, sigma_next))
    d = sx - sn
    c = 1.0 + sn * sx
    numerator = -d * d * sn / (c * (1.0 + sn * sn)) + _atan_minus_identity(d / c)
    denominator = (sn - sp_) * (sn + sp_) / ((1.0 + sp_ * sp_) * (1.0 + sn * sn))
    return numerator / denominator


# ----------------------------------------------------------------------------------------------
# DPM-Solver++ multistep (the authors' formulas, derived into weights)
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def dpmpp_weights_sym(order: int):
    """DPM-Solver++ multistep weights as sympy expressions in ``h, s1, s2`` and ``Phi(k, -h)``.

    ``s1 = (lambda_{n-1} - lambda_n)/h = -r0``, ``s2 = (lambda_{n-2} - lambda_n)/h = -(r0 + r1)``.
    Returns ``(h, (s1, s2), weights)`` with the weights of ``D_n, D_{n-1}, ...`` (module docstring).
    """
    order = check_positive_int(order, "order")
    if order > 3:
        raise ValueError(f"order must be 1, 2 or 3 for dpmpp, got {order}")
    h = sp.Symbol("h", positive=True)
    s1, s2 = sp.symbols("s1 s2", negative=True)
    m = sp.symbols("D0:3")
    p1, p2, p3 = (Phi(k, -h) for k in (1, 2, 3))
    if order == 1:
        update = h * p1 * m[0]
    elif order == 2:
        r = -s1
        update = h * p1 * ((1 + 1 / (2 * r)) * m[0] - m[1] / (2 * r))
    else:
        r0, r1 = -s1, s1 - s2
        d1_0 = (m[0] - m[1]) / r0
        d1_1 = (m[1] - m[2]) / r1
        d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        update = h * p1 * m[0] + h * p2 * d1 + h * p3 * d2
    update = sp.expand(update)
    weights = tuple(sp.factor(update.coeff(m[j])) for j in range(order))
    return h, (s1, s2), weights


@functools.lru_cache(maxsize=None)
def _dpmpp_fn(order: int):
    h, (s1, s2), w = dpmpp_weights_sym(order)
    return sp.lambdify((h, s1, s2), list(w), modules=[PHI_MODULE, "numpy"], cse=True)


def _dpmpp_weights(sigmas: np.ndarray, orders: np.ndarray) -> np.ndarray:
    m = sigmas.shape[0] - 1
    h = lambda_offsets(sigmas)
    weights = np.zeros((m, int(orders.max())))
    for q, rows in _rows_by_order(orders):
        hh = h[rows]
        s1 = np.array([np.log(sigmas[n] / sigmas[n - 1]) if q > 1 else -1.0 for n in rows]) / hh
        s2 = np.array([np.log(sigmas[n] / sigmas[n - 2]) if q > 2 else -2.0 for n in rows]) / hh
        out = _dpmpp_fn(q)(hh, s1, s2)
        for j in range(q):
            weights[rows, j] = np.broadcast_to(np.asarray(out[j], dtype=np.float64), hh.shape)
    return weights


# ----------------------------------------------------------------------------------------------
# method registry
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Method:
    build: Callable  # (sigmas, orders, **params) -> (prediction, out_x, weights)
    max_order: int   # None: any order
    lower_order_final: bool = False
    lower_order_final_below: int = None
    params: Tuple[str, ...] = ()


def _build_res(sigmas, orders):
    return "data", sigmas[1:] / sigmas[:-1], exp_adams_weights(sigmas, orders, "data")


def _build_deis(sigmas, orders):
    return "noise", np.ones(sigmas.shape[0] - 1), exp_adams_weights(sigmas, orders, "noise")


def _build_dpmpp(sigmas, orders):
    return "data", sigmas[1:] / sigmas[:-1], _dpmpp_weights(sigmas, orders)


def _build_lms(sigmas, orders):
    return "noise", np.ones(sigmas.shape[0] - 1), polynomial_adams_weights(sigmas, orders)


def _build_ipndm(sigmas, orders, variable_step=False):
    variable_step = _check_bool(variable_step, "variable_step")
    w = polynomial_adams_weights(sigmas, orders, equal_steps=not variable_step)
    return "noise", np.ones(sigmas.shape[0] - 1), w


def _build_li_accel(sigmas, orders):
    m = sigmas.shape[0] - 1
    weights = np.zeros((m, int(orders.max())))
    step = sigmas[1:] - sigmas[:-1]
    weights[:, 0] = step
    rows = np.nonzero(orders == 2)[0]
    if rows.size:
        k = li_accel_correction(sigmas[rows - 1], sigmas[rows], sigmas[rows + 1])
        weights[rows, 0] = step[rows] - k
        weights[rows, 1] = k
    return "noise", np.ones(m), weights


MULTISTEP_METHODS: Dict[str, _Method] = {
    "res": _Method(_build_res, None),
    "dpmpp": _Method(_build_dpmpp, 3, lower_order_final=True, lower_order_final_below=10),
    "deis": _Method(_build_deis, None),
    "ipndm": _Method(_build_ipndm, 4, params=("variable_step",)),
    "ipndm_v": _Method(functools.partial(_build_ipndm, variable_step=True), 4),
    "lms": _Method(_build_lms, None),
    "li_accel_ode_1nfe": _Method(_build_li_accel, 2),
}


def multistep_coefficients(method: str, sigmas, order: int, **params) -> MultistepCoefficients:
    """Weights of the multistep ``method`` of ``order`` on the grid ``sigmas`` (module docstring).

    Parameters
    ----------
    method : one of :data:`MULTISTEP_METHODS` (``res``, ``dpmpp``, ``deis``, ``ipndm``,
        ``ipndm_v``, ``lms``, ``li_accel_ode_1nfe``).
    sigmas : 1-D strictly decreasing array (or tensor) of M+1 noise levels, all > 0.
    order : int >= 1 (``dpmpp`` <= 3, ``ipndm``/``ipndm_v`` <= 4, ``li_accel_ode_1nfe`` <= 2).
    lower_order_final, lower_order_final_below : see the module docstring.
    variable_step : ``ipndm`` only (True: exact variable-step weights = ``ipndm_v``).
    """
    if not isinstance(method, str) or method not in MULTISTEP_METHODS:
        raise ValueError(f"unknown multistep method {method!r}; known: {sorted(MULTISTEP_METHODS)}")
    spec = MULTISTEP_METHODS[method]
    order = check_positive_int(order, "order")
    if spec.max_order is not None and order > spec.max_order:
        raise ValueError(f"order must be between 1 and {spec.max_order} for {method!r}, got {order}")
    allowed = set(spec.params) | {"lower_order_final", "lower_order_final_below"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TypeError(f"unexpected parameter(s) {unknown} for multistep method {method!r}; "
                        f"allowed: {sorted(allowed)}")
    sig = validate_grid(sigmas)
    m = sig.shape[0] - 1
    orders = row_orders(m, order,
                        params.pop("lower_order_final", spec.lower_order_final),
                        params.pop("lower_order_final_below", spec.lower_order_final_below))
    prediction, out_x, weights = spec.build(sig, orders, **params)
    full = np.zeros((m, order))
    full[:, :weights.shape[1]] = weights
    return MultistepCoefficients(prediction=prediction, out_x=out_x, weights=full, orders=orders)


# ----------------------------------------------------------------------------------------------
# symbolic weight sets (for printing and for high-precision checks)
# ----------------------------------------------------------------------------------------------

def multistep_weights_sym(method: str, q: int):
    """Sympy expressions of the weights of ``method`` for a row using ``q`` past values.

    Returns ``(symbols, weights)``; ``symbols`` is a dict naming the free symbols:

    * ``res`` / ``deis``: ``h`` and the nodes ``s1..s{q-1}`` (``s_j = (lambda_{n-j} -
      lambda_n)/h``); ``deis`` also ``sigma_next`` (``sigma_{n+1}``).  Phi-functions stay
      unevaluated (``Phi(k, -h)``).
    * ``dpmpp``: ``h, s1, s2`` (:func:`dpmpp_weights_sym`).
    * ``lms`` / ``ipndm_v``: ``step`` (``sigma_{n+1} - sigma_n``) and the nodes ``s_j =
      (sigma_{n-j} - sigma_n)/step``; ``ipndm``: ``step`` only (nodes ``-j``).
    * ``li_accel_ode_1nfe``: ``sigma_prev, sigma_n, sigma_next``.
    """
    q = check_positive_int(q, "q")
    if not isinstance(method, str) or method not in MULTISTEP_METHODS:
        raise ValueError(f"unknown multistep method {method!r}; known: {sorted(MULTISTEP_METHODS)}")
    spec = MULTISTEP_METHODS[method]
    if spec.max_order is not None and q > spec.max_order:
        raise ValueError(f"q must be between 1 and {spec.max_order} for {method!r}, got {q}")
    names, weights = _multistep_weights_sym(method, q)
    return dict(names), weights


@functools.lru_cache(maxsize=None)
def _multistep_weights_sym(method: str, q: int):
    if method == "dpmpp":
        h, (s1, s2), w = dpmpp_weights_sym(q)
        return (("h", h), ("s1", s1), ("s2", s2)), w
    if method == "li_accel_ode_1nfe":
        sp_prev, sn, sx, k = li_accel_moment_sym()
        names = (("sigma_prev", sp_prev), ("sigma_n", sn), ("sigma_next", sx))
        return names, ((sx - sn,) if q == 1 else (sx - sn - k, k))
    nodes, moments, w = lagrange_weights_sym(q)
    free = {f"s{j}": nodes[j] for j in range(1, q)}
    subs = {nodes[0]: 0}
    if method in ("res", "deis"):
        h = sp.Symbol("h", positive=True)
        kernel = "exp_data" if method == "res" else "exp_noise"
        subs.update(zip(moments, kernel_moments_sym(kernel, q, h)))
        free["h"] = h
        scale = sp.Integer(1)
        if method == "deis":
            free["sigma_next"] = sp.Symbol("sigma_next", positive=True)
            scale = -free["sigma_next"]
    else:
        step = sp.Symbol("step", negative=True)
        subs.update(zip(moments, kernel_moments_sym("poly", q)))
        scale = step
        free["step"] = step
        if method == "ipndm":
            subs.update({nodes[j]: -j for j in range(1, q)})
            free = {"step": step}
    return tuple(free.items()), tuple(sp.simplify(scale * wj.subs(subs)) for wj in w)
