"""Orders that theory/ assigns from order conditions: exponential RK tableaux and weight sets.

* :func:`exp_rk_orders` — from the stiff (Hochbruck-Ostermann) conditions of
  :func:`samplerlab.theory.exp_rk.check_stiff_conditions`: the stiff order (conditions that hold
  for every h) and the classical order (conditions that hold as h -> 0 to the needed power).
* :func:`multistep_orders` — from the moment conditions of a weight set of
  :mod:`samplerlab.theory.multistep` against its kernel (exponential in lambda, data or noise
  form; polynomial in sigma).
"""
from __future__ import annotations

import functools
from typing import Tuple

import sympy as sp

from samplerlab.theory.exp_rk import (check_stiff_conditions, get_tableau, is_identically_zero,
                                      orders_from_checks, taylor_coefficients, tidy_phi_expr)
from samplerlab.theory.multistep import kernel_moments_sym, multistep_weights_sym

__all__ = ["exp_rk_orders", "multistep_orders", "KERNELS"]

#: the kernel each multistep weight set integrates against
KERNELS = {"res": "exp_data", "dpmpp": "exp_data", "deis": "exp_noise", "lms": "poly",
           "ipndm": "poly", "ipndm_v": "poly"}


@functools.lru_cache(maxsize=None)
def exp_rk_orders(name: str) -> Tuple[int, int, tuple]:
    """``(stiff order, classical order, checks)`` of the named exponential-RK tableau from
    ``theory.exp_rk.check_stiff_conditions`` (conditions up to order 3): stiff = largest p whose
    conditions of order <= p all vanish identically in h; classical = largest p such that every
    condition of order j <= p vanishes identically or to O(h^(p+1-j)) as h -> 0."""
    checks = tuple(check_stiff_conditions(get_tableau(name), 3))
    stiff, classical = orders_from_checks(checks, 3)
    return stiff, classical, checks


@functools.lru_cache(maxsize=None)
def multistep_orders(method: str, q: int) -> Tuple[int, int, tuple]:
    """``(stiff order, classical order, rows)`` of the weight set ``method`` with ``q`` past
    values, from its moment conditions ``r_k = sum_j w_j s_j^k - scale m_k = 0`` (k = 0..q;
    ``s_0 = 0``; weights ``theory.multistep.multistep_weights_sym``, moments
    ``kernel_moments_sym``; scale 1 for the data kernel, ``-sigma_{n+1}`` for the noise kernel,
    ``sigma_{n+1} - sigma_n`` for the polynomial one). With ``F(v_n + s h) = sum_k F^(k) (s h)^k/k!``
    the one-step error is ``sum_k r_k h^k F^(k)/k!``; if ``r_k = O(h^(a_k))`` the local order is
    ``min_k (k + a_k)`` and the classical (global) order one less; stiff = number of leading
    moment conditions that hold identically. Each row: k, residual string, holds, leading."""
    syms, weights = multistep_weights_sym(method, q)
    kernel = KERNELS[method]
    h = syms.get("h", sp.Symbol("h", positive=True))
    moments = kernel_moments_sym(kernel, q + 1, h)
    scale = {"exp_data": sp.Integer(1), "exp_noise": -syms.get("sigma_next", sp.Integer(1)),
             "poly": syms.get("step", sp.Integer(1))}[kernel]
    nodes = [sp.Integer(0)] + [syms.get(f"s{j}", sp.Integer(-j)) for j in range(1, q)]
    rows, stiff, local = [], None, None
    for k in range(q + 1):
        res = sp.Add(*[weights[j] * nodes[j] ** k for j in range(q)]) - scale * moments[k]
        if kernel == "poly":
            res = sp.factor(sp.simplify(res))
            holds = res == 0
            power = None if holds else 1       # r_k = step * const, step ~ h
            lead = None if holds else res
        else:
            res = tidy_phi_expr(res)
            holds = bool(is_identically_zero(res))
            lead, power = None, None
            if not holds:
                coeffs = taylor_coefficients(res / scale, 5)
                power = next(i for i, c in enumerate(coeffs) if c != 0)
                lead = sp.factor(coeffs[power]) * h ** power
        if not holds and stiff is None:
            stiff = k
        if not holds:
            local = k + power if local is None else min(local, k + power)
        rows.append({"k": k, "residual": str(res), "holds": bool(holds),
                     "leading": "" if lead is None else str(lead),
                     # r_k / scale -> 0 as h -> 0 (the scale carries one power of h)
                     "vanishes_as_h_to_0": bool(holds or (kernel != "poly" and power >= 2))})
    stiff = q + 1 if stiff is None else stiff
    classical = (local - 1) if local is not None else q + 1
    return stiff, classical, tuple(rows)
