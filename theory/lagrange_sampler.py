"""Seed 001: the K-th order Lagrange sampler with successive refinement, as a linear step.

Source: Li, Zhou, Wei, Chen, *Faster diffusion models via higher-order approximation*
(arXiv 2506.24042). Only the abstract and a talk slide are public, so the algorithm below is the
RECONSTRUCTION of shared/papers/notes-fdpmsolver-and-lagrange-sampler.md §2.3 (anchor choice,
initialisation and number of rounds are the notes' best guesses, checked numerically there).

Probability-flow ODE in ``gamma = alpha-bar`` (notes §2.2; gamma increases towards the data)::

    Y_{gamma'} = sqrt(gamma'/gamma) Y_gamma + (sqrt(gamma')/2) int_gamma^gamma' u^{-3/2} s_u(Y_u) du,
    s_gamma(Y) = (sqrt(gamma) D - Y) / (1 - gamma)            (VP score through the data prediction)

One step ``t -> t-1`` (``gamma`` from ``abar_t = abar(sigma_from)`` to ``abar_{t-1} = abar(sigma_to)``,
``abar = 1/(1+sigma^2)``, ``Delta = abar_{t-1} - abar_t``):

* anchors ``gamma_j = abar_t + u_j Delta``, ``u_j = j/(K-1)``, ``j = 0..K-1`` (equispaced in alpha-bar,
  both ends included); integrand ``f(gamma) = gamma^{-3/2} s_gamma(Y_gamma)``;
* weights ``W[j, i] = int_0^{u_j} L_i(u) du`` of the Lagrange basis on the ``u_j`` (exact rationals,
  :func:`anchor_weights`), so that ``int_{abar_t}^{gamma_j} f ~ Delta sum_i W[j, i] f_i``;
* ``f_0 = f(abar_t)`` at ``Y_t`` (1 evaluation); first-order init
  ``Y_j^(0) = sqrt(gamma_j/abar_t) Y_t + (sqrt(gamma_j)/2) (gamma_j - abar_t) f_0``;
* R rounds (Jacobi / Picard sweeps, default ``R = K - 1``): ``f_j = f(gamma_j)`` at ``Y_j^(r-1)``
  for ``j = 1..K-1`` (K-1 evaluations), ``Y_j^(r) = sqrt(gamma_j/abar_t) Y_t
  + (sqrt(gamma_j)/2) Delta sum_i W[j, i] f_i``;
* output ``Y_{t-1} = Y_{K-1}^(R)``. ``K = 1`` is the init alone:
  ``Y_{t-1} = (1/sqrt(alpha_t)) [Y_t + (1-alpha_t)/(2 alpha_t) s_t(Y_t)]``.

Because ``s`` is linear in ``Y`` and ``D``, every anchor value is a linear combination of ``Y_t``
and the denoiser outputs; the step therefore compiles (numerically, vectorised over the M steps)
into a :class:`~samplerlab.theory.step_form.StepCoefficients` with ``1 + R (K-1)`` stages.
Reported accuracy of the reconstruction (notes §3): global order ``min(R+1, NC(K))`` with
``NC(K) = K`` for even and ``K+1`` for odd K (Newton-Cotes parity); measured here on a 1-D
Gaussian (tests/test_lagrange_sampler.py) with the same rule.

The sweeps are explicit (Picard), so the method is meant for the small steps of the paper's
schedule (``1 - alpha_t`` ~ ``log T / T``). For a step whose alpha-bar increment is much larger
than ``1 - abar_{t-1}`` (e.g. sigma 1 -> 0.01 in one step) the score's Lipschitz constant
``1/(1 - gamma)`` times the step is large and the compiled coefficients grow like its powers (up to
~1e7 for K = 4); they are still the exact expansion of the reconstructed algorithm.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np
import sympy as sp

from samplerlab.theory.alpha_bar_chain import alpha_bar_of_sigma
from samplerlab.theory.step_form import StepCoefficients, register_step_method
from samplerlab.theory.validation import check_positive_int

__all__ = ["anchor_weights", "lagrange_stage_count", "lagrange_step"]


def _check_order(K, R):
    K = check_positive_int(K, "K", minimum=1)
    R = K - 1 if R is None else check_positive_int(R, "R", minimum=0)
    return K, R


def lagrange_stage_count(K: int, R: int = None) -> int:
    """Denoiser evaluations per step: ``1 + R (K - 1)`` (``R`` defaults to ``K - 1``)."""
    K, R = _check_order(K, R)
    return 1 + R * (K - 1)


@functools.lru_cache(maxsize=None)
def anchor_weights(K: int) -> sp.Matrix:
    """``W[j, i] = int_0^{u_j} L_i(u) du`` on the equispaced nodes ``u_j = j/(K-1)`` (K >= 2).

    ``L_i`` is the Lagrange basis polynomial of node ``i``; exact rationals (sympy), local
    coordinate ``u = (gamma - abar_t) / (abar_{t-1} - abar_t)``. Row 0 is zero; row K-1 holds the
    closed Newton-Cotes weights on [0, 1].
    """
    K = check_positive_int(K, "K", minimum=2)
    u = sp.Symbol("u")
    nodes = [sp.Rational(j, K - 1) for j in range(K)]
    W = sp.zeros(K, K)
    for i in range(K):
        basis = sp.prod([(u - nodes[m]) / (nodes[i] - nodes[m]) for m in range(K) if m != i])
        antideriv = sp.integrate(sp.expand(basis), u)
        for j in range(K):
            W[j, i] = antideriv.subs(u, nodes[j]) - antideriv.subs(u, 0)
    return W


@functools.lru_cache(maxsize=None)
def _anchor_weights_numeric(K: int) -> np.ndarray:
    return np.array(anchor_weights(K).evalf(20).tolist(), dtype=np.float64)


@register_step_method("lagrange")
def lagrange_step(sigma_from, sigma_to, K: int = 2, R: int = None) -> StepCoefficients:
    """K-th order Lagrange sampler step (seed 001, RECONSTRUCTED, see the module docstring).

    ``sigma_from``, ``sigma_to``: float64 arrays [M] with ``sigma_to < sigma_from``; ``K >= 1``
    anchors, ``R >= 0`` refinement rounds (default ``K - 1``; irrelevant for ``K = 1``). Returns
    ``StepCoefficients`` with ``1 + R (K-1)`` stages: stage 0 at ``sigma_from``, then round by
    round the anchors ``j = 1..K-1`` at ``sigma(gamma_j) = sqrt((1 - gamma_j)/gamma_j)``.
    """
    K, R = _check_order(K, R)
    sf = np.asarray(sigma_from, dtype=np.float64)
    st = np.asarray(sigma_to, dtype=np.float64)
    if np.any(st >= sf):
        raise ValueError("lagrange steps need sigma_to < sigma_from (alpha-bar increases); got a "
                         "step with sigma_to >= sigma_from")
    m = sf.shape[0]
    a0, a1 = alpha_bar_of_sigma(sf), alpha_bar_of_sigma(st)
    one_minus_a0 = sf ** 2 * a0
    delta = (sf ** 2 - st ** 2) * a0 * a1                   # abar_{t-1} - abar_t, no cancellation
    u = np.linspace(0.0, 1.0, K) if K > 1 else np.ones(1)   # K = 1: the init targets abar_{t-1}
    gam = a0[:, None] + u[None, :] * delta[:, None]          # [M, K]
    # 1 - gamma = (1 - u)(1 - abar_{t-1}) + u (1 - abar_t): a convex combination, no cancellation
    # (one_minus_a0 - u delta cancels to 0 at u = 1 once sigma_to^2 << sigma_from^2, 80 -> 1e-8)
    one_minus_gam = ((1.0 - u)[None, :] * one_minus_a0[:, None]
                     + u[None, :] * (st ** 2 * a1)[:, None])
    sig = np.sqrt(one_minus_gam / gam)
    sig[:, -1] = st
    if K > 1:
        sig[:, 0] = sf

    s_total = lagrange_stage_count(K, R)
    n = 1 + s_total                                          # linear combos over [x, D_0, ...]

    def unit(k):
        e = np.zeros((m, n))
        e[:, k] = 1.0
        return e

    def integrand(y, j, k):
        """f = gamma_j^{-3/2} s_{gamma_j}(Y) with D = D_k, as a linear combination."""
        g = gam[:, j][:, None]
        return g ** -1.5 * (np.sqrt(g) * unit(1 + k) - y) / one_minus_gam[:, j][:, None]

    stage_sigma = np.zeros((m, s_total))
    stage_x = np.zeros((m, s_total))
    stage_w = np.zeros((m, s_total, s_total))

    y_t = np.sqrt(a0)[:, None] * unit(0)
    stage_sigma[:, 0] = sf
    stage_x[:, 0] = 1.0
    f0 = (a0 ** -1.5)[:, None] * (np.sqrt(a0)[:, None] * unit(1) - y_t) / one_minus_a0[:, None]

    def transported(j):
        return np.sqrt(gam[:, j] / a0)[:, None] * y_t

    anchors = list(range(1, K)) if K > 1 else [0]
    y = {j: transported(j) + (0.5 * np.sqrt(gam[:, j]) * u[j] * delta)[:, None] * f0
         for j in anchors}
    if K > 1:
        W = _anchor_weights_numeric(K)
        k = 1
        for _ in range(R):
            fs = [f0]
            for j in anchors:
                inv = (1.0 / np.sqrt(gam[:, j]))[:, None]
                stage_sigma[:, k] = sig[:, j]
                stage_x[:, k] = inv[:, 0] * y[j][:, 0]
                stage_w[:, k, :k] = inv * y[j][:, 1:1 + k]
                if np.any(y[j][:, 1 + k:] != 0):
                    raise AssertionError("Jacobi sweep used a denoiser output of its own round")
                fs.append(integrand(y[j], j, k))
                k += 1
            y = {j: transported(j) + (0.5 * np.sqrt(gam[:, j]) * delta)[:, None]
                 * sum(W[j, i] * fs[i] for i in range(K)) for j in anchors}
    out = y[anchors[-1]] / np.sqrt(a1)[:, None]
    return StepCoefficients(stage_sigma, stage_x, stage_w, out[:, 0].copy(), out[:, 1:].copy())
