"""The compiled K-th order Lagrange sampler (seed 001, reconstruction) against a direct loop.

The reference below runs the refinement loop of notes §2.3 in VP variables with the actual
denoiser (no linear-combination bookkeeping, its own Lagrange weights from numpy polynomials).
"""
import numpy as np
import pytest
import sympy as sp

from samplerlab.theory.lagrange_sampler import anchor_weights, lagrange_stage_count
from samplerlab.theory.step_form import step_coefficients

M_DATA, V_DATA = 0.3, 0.5


def gaussian_denoiser(x, sigma):
    return M_DATA + V_DATA / (V_DATA + sigma ** 2) * (x - M_DATA)


def nonlinear_denoiser(x, sigma):
    return np.tanh(1.7 * x) / (1.0 + sigma) + 0.2 * np.sin(sigma) * x ** 2


def exact_flow(x, s_from, s_to):
    return M_DATA + np.sqrt((V_DATA + s_to ** 2) / (V_DATA + s_from ** 2)) * (x - M_DATA)


def apply_step(c, x, denoiser, row):
    outs = []
    for j in range(c.stages):
        xj = c.stage_x[row, j] * x + sum(c.stage_w[row, j, k] * outs[k] for k in range(j))
        outs.append(denoiser(xj, c.stage_sigma[row, j]))
    return c.out_x[row] * x + sum(c.out_w[row, k] * outs[k] for k in range(c.stages))


def reference_step(x, sf, st, K, R, denoiser):
    """Direct VP implementation: anchors, Lagrange weights, init, R Jacobi rounds."""
    g0, g1 = 1 / (1 + sf ** 2), 1 / (1 + st ** 2)

    def f(y, g):                                    # gamma^{-3/2} s_gamma(y)
        sigma = np.sqrt((1 - g) / g)
        s = (np.sqrt(g) * denoiser(y / np.sqrt(g), sigma) - y) / (1 - g)
        return g ** -1.5 * s

    y_t = np.sqrt(g0) * x
    f0 = f(y_t, g0)
    if K == 1:
        return (np.sqrt(g1 / g0) * y_t + 0.5 * np.sqrt(g1) * (g1 - g0) * f0) / np.sqrt(g1)
    gam = np.linspace(g0, g1, K)
    # W[j, i] = int_{g0}^{gam_j} L_i(gamma) dgamma, computed with numpy polynomials in the local
    # coordinate u = (gamma - g0)/(g1 - g0) (raw gamma powers are ill-conditioned for small steps)
    u = np.linspace(0.0, 1.0, K)
    W = np.zeros((K, K))
    for i in range(K):
        others = np.delete(u, i)
        P = np.polyint(np.poly1d(np.poly(others)) / np.prod(u[i] - others))
        W[:, i] = (g1 - g0) * (P(u) - P(0.0))
    y = {j: np.sqrt(gam[j] / g0) * y_t + 0.5 * np.sqrt(gam[j]) * (gam[j] - g0) * f0 for j in range(1, K)}
    for _ in range(R):
        fs = [f0] + [f(y[j], gam[j]) for j in range(1, K)]
        y = {j: np.sqrt(gam[j] / g0) * y_t + 0.5 * np.sqrt(gam[j]) * sum(W[j, i] * fs[i] for i in range(K))
             for j in range(1, K)}
    return y[K - 1] / np.sqrt(g1)


GRID = np.geomspace(8.0, 0.1, 9)
X = np.linspace(-2.0, 3.0, 5)


@pytest.mark.parametrize("K,R", [(1, 0), (2, 1), (3, 2), (4, 3), (3, 0), (2, 3), (5, 2)])
@pytest.mark.parametrize("den", [gaussian_denoiser, nonlinear_denoiser])
def test_compiled_matches_direct_refinement_loop(K, R, den):
    c = step_coefficients("lagrange", GRID[:-1], GRID[1:], K=K, R=R)
    assert c.stages == lagrange_stage_count(K, R) == 1 + R * (K - 1)
    for n in range(len(GRID) - 1):
        x = X * GRID[n]
        ref = reference_step(x, GRID[n], GRID[n + 1], K, R, den)
        np.testing.assert_allclose(apply_step(c, x, den, n), ref, rtol=1e-12, atol=1e-12)


def test_k1_is_the_closed_form():
    """K = 1: Y_{t-1} = (1/sqrt(alpha_t)) [Y_t + (1-alpha_t)/(2 alpha_t) s_t(Y_t)] (notes §2.3)."""
    c = step_coefficients("lagrange", GRID[:-1], GRID[1:], K=1)
    for n in range(len(GRID) - 1):
        sf, st = GRID[n], GRID[n + 1]
        a_t, a_prev = 1 / (1 + sf ** 2), 1 / (1 + st ** 2)
        alpha = a_t / a_prev
        x = X * sf
        y = np.sqrt(a_t) * x
        s = (np.sqrt(a_t) * nonlinear_denoiser(x, sf) - y) / (1 - a_t)
        y_new = (y + (1 - alpha) / (2 * alpha) * s) / np.sqrt(alpha)
        np.testing.assert_allclose(apply_step(c, x, nonlinear_denoiser, n), y_new / np.sqrt(a_prev),
                                   rtol=1e-12, atol=1e-12)


def test_anchor_weights_are_exact_newton_cotes():
    W = anchor_weights(3)
    assert W.row(2) == sp.Matrix([[sp.Rational(1, 6), sp.Rational(2, 3), sp.Rational(1, 6)]])  # Simpson
    assert W.row(1) == sp.Matrix([[sp.Rational(5, 24), sp.Rational(1, 3), sp.Rational(-1, 24)]])
    for K in range(2, 7):
        W = anchor_weights(K)
        u = [sp.Rational(j, K - 1) for j in range(K)]
        for j in range(K):                               # exact on polynomials of degree <= K-1
            for p in range(K):
                assert sum(W[j, i] * u[i] ** p for i in range(K)) == u[j] ** (p + 1) / (p + 1)


@pytest.mark.parametrize("K", [2, 3, 4, 5])
def test_state_independent_score_one_round_is_exact(K):
    """Notes §3: s_gamma(y) = gamma^{3/2} q(gamma), deg q <= K-1 (K for odd K): one round exact."""
    deg = K if K % 2 else K - 1
    coeffs = np.linspace(0.7, -0.4, deg + 1)
    q = np.polynomial.Polynomial(coeffs)
    Q = q.integ()

    def den(x, sigma):       # D with (sqrt(g) D - sqrt(g) x)/(1-g) = g^{3/2} q(g), g = abar(sigma)
        g = 1 / (1 + sigma ** 2)
        return x + (1 - g) * g * q(g)

    c = step_coefficients("lagrange", GRID[:-1], GRID[1:], K=K, R=1)
    for n in range(len(GRID) - 1):
        g0, g1 = 1 / (1 + GRID[n] ** 2), 1 / (1 + GRID[n + 1] ** 2)
        x = X
        exact_y = np.sqrt(g1 / g0) * np.sqrt(g0) * x + 0.5 * np.sqrt(g1) * (Q(g1) - Q(g0))
        np.testing.assert_allclose(apply_step(c, x, den, n), exact_y / np.sqrt(g1), rtol=1e-12, atol=1e-12)


def global_error(K, R, M, s_max=5.0, s_min=0.2):
    grid = np.geomspace(s_max, s_min, M + 1)
    c = step_coefficients("lagrange", grid[:-1], grid[1:], K=K, R=R)
    x0 = M_DATA + np.array([-1.5, 0.4, 2.0]) * np.sqrt(V_DATA + s_max ** 2)
    x = x0.copy()
    for n in range(M):
        x = apply_step(c, x, gaussian_denoiser, n)
    return np.max(np.abs(x - exact_flow(x0, s_max, s_min)))


@pytest.mark.parametrize("K,R,Ms,order", [
    (1, 0, (64, 128, 256), 1), (2, 1, (32, 64, 128), 2), (3, 1, (64, 128, 256), 2),
    (3, 2, (64, 128, 256), 3), (3, 3, (64, 128, 256), 4), (4, 3, (32, 64, 128), 4),
    (5, 4, (64, 128, 256), 5)])
def test_global_order_on_gaussian(K, R, Ms, order):
    """Global order min(R+1, NC(K)) (NC(K) = K even, K+1 odd; notes §2.3) on a 1-D Gaussian.

    Geometric grid 5 -> 0.2, error against the exact PF-ODE solution.
    """
    errs = [global_error(K, R, M) for M in Ms]
    slopes = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert abs(slopes[-1] - order) < 0.1, (errs, slopes)


def test_bad_input():
    sf, st = np.array([2.0]), np.array([1.0])
    with pytest.raises(ValueError, match="K must be an integer >= 1"):
        step_coefficients("lagrange", sf, st, K=0)
    with pytest.raises(TypeError, match="K must be an integer"):
        step_coefficients("lagrange", sf, st, K=2.0)
    with pytest.raises(ValueError, match="R must be an integer >= 0"):
        step_coefficients("lagrange", sf, st, K=2, R=-1)
    with pytest.raises(ValueError, match="sigma_to < sigma_from"):
        step_coefficients("lagrange", st, sf, K=2)
    with pytest.raises(ValueError, match="K must be an integer >= 2"):
        anchor_weights(1)
