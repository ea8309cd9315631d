"""Predictor-corrector weights: UniPC and the forward-value F-DPMSolver (seed 000).

One step n (``sigma_n -> sigma_{n+1}``) of a predictor-corrector method in this project
(DESIGN.md, "Predictor-corrector methods"; run by ``solvers.steppers.run_predictor_corrector``)::

    xhat_{n+1} = pred_out_x[n] x_n + sum_j pred_w[n, j] P_{n-j}                       (no NFE)
    F_new      = model output at (xhat_{n+1}, sigma_{n+1})                            (1 NFE)
    x_{n+1}    = corr_out_x[n] x_n + sum_j corr_w[n, j] C_{n-j} + corr_new[n] C_new

The cache entries ``P_m``/``C_m`` are the evaluations at the *evaluated* points -- the predicted
``xhat_m`` (and ``x_0`` or its proxy at m = 0), not the corrected states -- expressed in the
predictor's (``pred_prediction``) and the corrector's (``corr_prediction``) prediction type
(``'data'``: D; ``'noise'``: eps = (x_eval - D)/sigma).  ``initial`` says how the cache starts:
``'evaluate'`` (the model at ``x_0``, 1 NFE) or ``'noise_proxy'`` (the start noise as eps proxy:
``eps_0 = x_0/sigma_0``, i.e. ``D_0 = 0``; no NFE).  A row with ``corr_new[n] == 0`` at the last
step means "no corrector": its corrector coefficients equal the predictor's and the solver
returns ``xhat`` without evaluating.

Methods (:func:`pc_coefficients`)
---------------------------------
``unipc``  UniPC (Zhao, Bai, Rao, Zhou, Lu, NeurIPS 2023), data prediction, multistep, variants
    ``bh1`` (``B(h) = h``) and ``bh2`` (``B(h) = e^h - 1``), as the official ``uni_pc.py``
    (``multistep_uni_pc_bh_update``).  With step order p, ``r_k = (lambda_{n-k} - lambda_n)/h``
    (k < p), ``D1_k = (D_{n-k} - D_n)/r_k``, ``z = -h``::

        R[i, k] = r_k^i,   b_{i+1} = z phi_{i+2}(z) (i+1)! / B(z)         (i = 0, 1, ...)
        UniP-p:  xhat = e^{-h} x + h phi_1(-h) D_n - B(z) sum_{k<p} rho^p_k D1_k,
                 R rho^p = b over the nodes r_1..r_{p-1}
        UniC:    x' = e^{-h} x + h phi_1(-h) D_n - B(z) [sum_{k<p} rho^c_k D1_k + rho^c_p (D_new - D_n)],
                 R rho^c = b over the nodes r_1..r_{p-1}, 1

    (``-B(z) = h`` for bh1, ``h phi_1(-h) = 1 - e^{-h}`` for bh2.)  The system ``R rho = b`` is a
    transposed Vandermonde system, solved here in closed form by the Lagrange-basis formula of
    :func:`samplerlab.theory.multistep.lagrange_weights` (nodes r, "moments" b).  As in the
    official code, UniP-2 and UniC-1 use ``rho = 1/2`` instead of the solved ``b_1`` (the two
    agree as h -> 0; option ``half_rho_low_order``).  With the solved rho, UniP-p equals the exact
    exponential Adams-Bashforth method (``res``) and UniC-p the exact exponential Adams-Moulton
    method through the new node (tested); UniP-2 with bh2 and rho = 1/2 is DPM-Solver++(2M).
    Predictor order p, corrector order p + 1.  Warm-up ``p = min(order, n + 1)``;
    ``lower_order_final`` (default True, official code, no step-count threshold) lowers the last
    rows to ``p <= M - n``.  The corrector is skipped at the last step (its evaluation would serve
    no later step; official code), unless ``final_corrector=True`` (one more NFE).
    ``initial='evaluate'``.

``f_dpmsolver``  F-DPMSolver-k of Jiao, Li, Cai, Li (arXiv 2512.24927; "F-DDIM" for k = 1),
    exactly as the authors' ``sampler.py::Forward_DPMSolver`` (notes-fdpmsolver-and-lagrange-sampler.md
    §1.2), in VE variables:

    * predictor: noise-form exponential Adams of order ``p = min(n + 1, k)`` in lambda on the
      cached lookahead evaluations ``eps(xhat_{n-j}, sigma_{n-j})`` (the weights of
      ``multistep`` method ``deis``); for p = 1 it is DDIM's noise-form step
      ``xhat = x_n - (sigma_n - sigma_{n+1}) eps_n``;
    * corrector: the first-order data-form forward-value step using ONLY the new evaluation,
      ``x_{n+1} = (sigma_{n+1}/sigma_n) x_n + (1 - sigma_{n+1}/sigma_n) D(xhat_{n+1}, sigma_{n+1})``;
    * cache start ``initial='noise_proxy'``: the start noise serves as the eps at sigma_0 (no
      NFE), i.e. ``eps_0 = x_0/sigma_0``, ``D_0 = 0``.  The authors start from ``x_T ~ N(0, I)``
      in VP variables and use that same vector as eps; in VE variables their start is
      ``sqrt(1 + sigma_0^2) z`` with proxy ``z``, ours is ``x_0 = sigma_0 z`` with proxy
      ``x_0/sigma_0 = z`` -- the same proxy, on a start that differs by the factor
      ``sqrt(1 + sigma_0^-2)`` (1 + 8e-5 at sigma_0 = 80).
    * Every step evaluates once (M NFE in all); the corrector is first order, so the method is
      first order whatever k (the predictor order only changes the lookahead error).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Dict, Tuple

import numpy as np
import sympy as sp

from samplerlab.theory.multistep import (
    PREDICTIONS,
    _check_bool,
    check_positive_int,
    exp_adams_weights,
    lagrange_weights,
    lagrange_weights_sym,
    lambda_offsets,
    row_orders,
    validate_grid,
)
from samplerlab.theory.phi_functions import Phi, phi

__all__ = [
    "PCCoefficients",
    "pc_coefficients",
    "PC_METHODS",
    "unipc_b",
    "unipc_b_sym",
    "unipc_rhos",
    "unipc_weights_sym",
]

INITIAL = ("evaluate", "noise_proxy")
UNIPC_VARIANTS = ("bh1", "bh2")


# ----------------------------------------------------------------------------------------------
# result type
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PCCoefficients:
    """Per-step coefficients of a predictor-corrector method (module docstring).

    Attributes
    ----------
    pred_out_x [M], pred_w [M, K], pred_prediction ('data' | 'noise');
    corr_out_x [M], corr_w [M, K], corr_new [M], corr_prediction ('data' | 'noise');
    orders [M] int (the predictor order of each row); initial ('evaluate' | 'noise_proxy').
    ``pred_w[n, j] = corr_w[n, j] = 0`` for ``j >= orders[n]``.
    """

    pred_out_x: np.ndarray
    pred_w: np.ndarray
    pred_prediction: str
    corr_out_x: np.ndarray
    corr_w: np.ndarray
    corr_new: np.ndarray
    corr_prediction: str
    orders: np.ndarray
    initial: str = "evaluate"

    def __post_init__(self):
        for name in ("pred_prediction", "corr_prediction"):
            if getattr(self, name) not in PREDICTIONS:
                raise ValueError(f"PCCoefficients.{name} must be 'data' or 'noise', got "
                                 f"{getattr(self, name)!r}")
        if self.initial not in INITIAL:
            raise ValueError(f"PCCoefficients.initial must be one of {INITIAL}, got {self.initial!r}")
        m = np.shape(self.pred_out_x)[0] if np.ndim(self.pred_out_x) == 1 else None
        if m is None:
            raise ValueError(f"PCCoefficients.pred_out_x must be 1-D [M], got shape "
                             f"{np.shape(self.pred_out_x)}")
        k = np.shape(self.pred_w)[1] if np.ndim(self.pred_w) == 2 else 0
        if k < 1:
            raise ValueError(f"PCCoefficients.pred_w must have shape [M, K>=1], got "
                             f"{np.shape(self.pred_w)}")
        expected = {"pred_out_x": (m,), "pred_w": (m, k), "corr_out_x": (m,), "corr_w": (m, k),
                    "corr_new": (m,)}
        for field, shape in expected.items():
            arr = np.asarray(getattr(self, field), dtype=np.float64)
            if arr.shape != shape:
                raise ValueError(f"PCCoefficients.{field} must have shape {shape}, got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"PCCoefficients.{field} holds NaN or inf")
            object.__setattr__(self, field, arr)
        orders = np.asarray(self.orders)
        if orders.shape != (m,) or orders.dtype.kind not in "iu":
            raise ValueError(f"PCCoefficients.orders must be an int array of shape ({m},), got "
                             f"{orders.dtype} {orders.shape}")
        orders = orders.astype(np.int64)
        if (orders < 1).any() or (orders > k).any():
            raise ValueError(f"PCCoefficients.orders must lie in [1, {k}]")
        unused = np.arange(k)[None, :] >= orders[:, None]
        if (self.pred_w[unused] != 0).any() or (self.corr_w[unused] != 0).any():
            raise ValueError("PCCoefficients.pred_w/corr_w must be 0 beyond orders[n] in row n")
        object.__setattr__(self, "orders", orders)

    @property
    def steps(self) -> int:
        return self.pred_out_x.shape[0]

    @property
    def corrected(self) -> np.ndarray:
        """[M] bool: whether row n runs its corrector (and evaluates the model)."""
        last = np.arange(self.steps) == self.steps - 1
        return ~(last & (self.corr_new == 0))


# ----------------------------------------------------------------------------------------------
# UniPC
# ----------------------------------------------------------------------------------------------

def _check_variant(variant) -> str:
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"variant must be one of {UNIPC_VARIANTS}, got {variant!r}")
    return variant


def unipc_b_sym(q: int, variant: str, h=None):
    """``(b_1..b_q, -B(z))`` of UniPC (data prediction, ``z = -h``) as sympy expressions.

    ``b_i = z phi_{i+1}(z) i! / B(z)``: bh1 ``b_i = i! phi_{i+1}(-h)``; bh2
    ``b_i = i! phi_{i+1}(-h) / phi_1(-h)``.  ``-B(z)`` is ``h`` (bh1) or ``h phi_1(-h)`` (bh2).
    """
    q = check_positive_int(q, "q")
    variant = _check_variant(variant)
    h = sp.Symbol("h", positive=True) if h is None else h
    scale = 1 if variant == "bh1" else Phi(1, -h)
    b = tuple(sp.factorial(i) * Phi(i + 1, -h) / scale for i in range(1, q + 1))
    return b, h * scale


def unipc_b(h: np.ndarray, q: int, variant: str) -> Tuple[np.ndarray, np.ndarray]:
    """Numeric :func:`unipc_b_sym`: ``b [len(h), q]`` and ``-B(z) [len(h)]``."""
    variant = _check_variant(variant)
    h = np.asarray(h, dtype=np.float64)
    scale = np.ones_like(h) if variant == "bh1" else phi(1, -h)
    b = np.stack([math.factorial(i) * phi(i + 1, -h) / scale for i in range(1, q + 1)], axis=-1)
    return b, h * scale


def unipc_rhos(nodes, b) -> np.ndarray:
    """Solve UniPC's ``R rho = b`` (``R[i, k] = nodes_k^i``) in closed form, shapes ``[..., q]``.

    ``sum_k rho_k r_k^i = b_{i+1}`` is the moment system of the Lagrange basis through the nodes
    r, so ``rho = lagrange_weights(r, b)`` (multistep module docstring).
    """
    return lagrange_weights(nodes, b)


@functools.lru_cache(maxsize=None)
def unipc_weights_sym(p: int, variant: str, part: str, half_rho_low_order: bool = True):
    """Sympy weights of one UniPC row of predictor order ``p``.

    ``part='predictor'``: weights of ``D_n, D_{n-1}, ..., D_{n-p+1}`` in ``xhat - e^{-h} x``;
    ``part='corrector'``: those and, last, the weight of ``D_new``.  Free symbols: ``h`` and
    ``r1..r{p-1}`` (``r_k = (lambda_{n-k} - lambda_n)/h``).  Returns ``(h, r, weights)``.
    """
    p = check_positive_int(p, "p")
    variant = _check_variant(variant)
    if part not in ("predictor", "corrector"):
        raise ValueError(f"part must be 'predictor' or 'corrector', got {part!r}")
    h = sp.Symbol("h", positive=True)
    r = sp.symbols(f"r1:{p}", negative=True) if p > 1 else ()
    nodes = list(r) + ([sp.Integer(1)] if part == "corrector" else [])
    q = len(nodes)
    b, bpos = unipc_b_sym(max(q, 1), variant, h)
    head = h * Phi(1, -h)
    if q == 0:
        return h, r, (head,)
    if q == 1 and half_rho_low_order:
        rho = (sp.Rational(1, 2),)
    else:
        s_sym, m_sym, w = lagrange_weights_sym(q)
        subs = dict(zip(s_sym, nodes))
        subs.update(zip(m_sym, b[:q]))
        rho = tuple(wk.subs(subs) for wk in w)
    past = [bpos * rho[k] / nodes[k] for k in range(q)]
    weights = [sp.simplify(head - sum(past))] + [sp.simplify(x) for x in past]
    return h, r, tuple(weights)


def _unipc_row_weights(h, nodes, variant, half_rho):
    """Weights ``[rows, 1 + q]`` of D_n and of the q non-zero nodes (past, then maybe new)."""
    rows, q = nodes.shape
    head = h * phi(1, -h)
    if q == 0:
        return head[:, None]
    b, bpos = unipc_b(h, q, variant)
    if q == 1 and half_rho:
        rho = np.full((rows, 1), 0.5)
    else:
        rho = unipc_rhos(nodes, b)
    past = bpos[:, None] * rho / nodes
    return np.concatenate([(head - past.sum(axis=1))[:, None], past], axis=1)


def _build_unipc(sigmas, order, variant="bh1", lower_order_final=True, final_corrector=False,
                 half_rho_low_order=True):
    variant = _check_variant(variant)
    final_corrector = _check_bool(final_corrector, "final_corrector")
    half_rho_low_order = _check_bool(half_rho_low_order, "half_rho_low_order")
    m = sigmas.shape[0] - 1
    orders = row_orders(m, order, lower_order_final, None)
    h = lambda_offsets(sigmas)
    decay = sigmas[1:] / sigmas[:-1]
    pred_w = np.zeros((m, order))
    corr_w = np.zeros((m, order))
    corr_new = np.zeros(m)
    for p in np.unique(orders):
        p = int(p)
        rows = np.nonzero(orders == p)[0]
        past = np.array([[np.log(sigmas[n] / sigmas[n - k]) for k in range(1, p)] for n in rows])
        past = past.reshape(rows.size, p - 1) / h[rows, None]
        pred_w[rows, :p] = _unipc_row_weights(h[rows], past, variant, half_rho_low_order)
        with_new = np.concatenate([past, np.ones((rows.size, 1))], axis=1)
        cw = _unipc_row_weights(h[rows], with_new, variant, half_rho_low_order)
        corr_w[rows, :p] = cw[:, :p]
        corr_new[rows] = cw[:, p]
    corr_out_x = decay.copy()
    if not final_corrector:
        corr_w[-1] = pred_w[-1]
        corr_new[-1] = 0.0
    return PCCoefficients(pred_out_x=decay, pred_w=pred_w, pred_prediction="data",
                          corr_out_x=corr_out_x, corr_w=corr_w, corr_new=corr_new,
                          corr_prediction="data", orders=orders, initial="evaluate")


# ----------------------------------------------------------------------------------------------
# F-DPMSolver (seed 000)
# ----------------------------------------------------------------------------------------------

def _build_f_dpmsolver(sigmas, order):
    m = sigmas.shape[0] - 1
    orders = row_orders(m, order)
    pred_w = np.zeros((m, order))
    pred_w[:, :int(orders.max())] = exp_adams_weights(sigmas, orders, "noise")
    h = lambda_offsets(sigmas)
    return PCCoefficients(pred_out_x=np.ones(m), pred_w=pred_w, pred_prediction="noise",
                          corr_out_x=sigmas[1:] / sigmas[:-1], corr_w=np.zeros((m, order)),
                          corr_new=-np.expm1(-h), corr_prediction="data", orders=orders,
                          initial="noise_proxy")


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Method:
    build: Callable
    max_order: int
    params: Tuple[str, ...] = ()


PC_METHODS: Dict[str, _Method] = {
    "unipc": _Method(_build_unipc, None, ("variant", "lower_order_final", "final_corrector",
                                          "half_rho_low_order")),
    "f_dpmsolver": _Method(_build_f_dpmsolver, None),
}


def pc_coefficients(method: str, sigmas, order: int, **params) -> PCCoefficients:
    """Coefficients of the predictor-corrector ``method`` on ``sigmas`` (module docstring).

    Parameters
    ----------
    method : ``'unipc'`` or ``'f_dpmsolver'``.
    sigmas : 1-D strictly decreasing array (or tensor) of M+1 noise levels, all > 0.
    order : int >= 1: UniPC's predictor order p (corrector p + 1); F-DPMSolver's k.
    variant, lower_order_final, final_corrector, half_rho_low_order : UniPC options
        (defaults ``'bh1'``, True, False, True).
    """
    if not isinstance(method, str) or method not in PC_METHODS:
        raise ValueError(f"unknown predictor-corrector method {method!r}; known: "
                         f"{sorted(PC_METHODS)}")
    spec = PC_METHODS[method]
    order = check_positive_int(order, "order")
    if spec.max_order is not None and order > spec.max_order:
        raise ValueError(f"order must be between 1 and {spec.max_order} for {method!r}, got {order}")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise TypeError(f"unexpected parameter(s) {unknown} for predictor-corrector method "
                        f"{method!r}; allowed: {sorted(spec.params)}")
    sig = validate_grid(sigmas)
    return spec.build(sig, order, **params)
