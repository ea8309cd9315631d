"""Tests for samplerlab.theory.multistep: exactness orders, residuals, symbolic vs numeric, errors.

Reference integrals are computed independently with mpmath quadrature at 30 digits (the module
itself never integrates numerically).  A weight row is applied to an x-independent field F, so
one step of the method is a quadrature rule and its error is ``sum_j w_j F_{n-j} - int K F``.
"""
import dataclasses
import functools
import math

import mpmath as mp
import numpy as np
import pytest
import sympy as sp
import torch

from samplerlab.theory.multistep import (
    MULTISTEP_METHODS,
    MultistepCoefficients,
    dpmpp_weights_sym,
    lagrange_weights,
    li_accel_correction,
    li_accel_moment_sym,
    multistep_coefficients,
    multistep_weights_sym,
    row_orders,
)
from samplerlab.theory.phi_functions import Phi, phi, phi_mpmath

from _grids import karras, random_grid  # noqa: E402

mp.mp.dps = 30






GRIDS = {
    "karras": karras(8),
    "uniform_lambda": np.exp(-np.arange(9) * 0.3) * 5.0,
    "random": random_grid(8, seed=1),
}


# ----------------------------------------------------------------------------------------------
# the quadrature each method claims to perform (independent reference)
# ----------------------------------------------------------------------------------------------

def _abar(s):
    return 1 / (1 + s * s)


def variable(method, sig):
    """Interpolation variable at the grid points (mpmath)."""
    s = [mp.mpf(float(v)) for v in sig]
    if method in ("res", "dpmpp", "deis"):
        return [-mp.log(v) for v in s]
    if method in ("lms", "ipndm", "ipndm_v"):
        return s
    if method == "li_accel_ode_1nfe":
        return [_abar(v) for v in s]
    raise AssertionError(method)


def exact_step(method, sig, n, f):
    """int K f over step n, f a function of the offset (v - v_n) of the interpolation variable."""
    s_n, s_x = mp.mpf(float(sig[n])), mp.mpf(float(sig[n + 1]))
    h = mp.log(s_n / s_x)
    if method in ("res", "dpmpp"):
        return mp.quad(lambda t: mp.exp(-(h - t)) * f(t), [0, h])
    if method == "deis":
        return -s_n * mp.quad(lambda t: mp.exp(-t) * f(t), [0, h])
    if method in ("lms", "ipndm", "ipndm_v"):
        return mp.quad(lambda t: f(t), [0, s_x - s_n])
    if method == "li_accel_ode_1nfe":
        a_n = _abar(s_n)
        return mp.quad(lambda s: f(_abar(s) - a_n), [s_n, s_x])
    raise AssertionError(method)


def method_step(method, coeffs, sig, n, f):
    v = variable(method, sig)
    vals = [f(v[n - j] - v[n]) for j in range(coeffs.orders[n])]
    terms = [coeffs.weights[n, j] * float(vals[j]) for j in range(len(vals))]
    return math.fsum(terms), sum(abs(t) for t in terms)


def node_poly(method, sig, n, q):
    v = variable(method, sig)
    offs = [v[n - j] - v[n] for j in range(q)]
    return lambda t: mp.fprod([t - o for o in offs])


def check_row_degree(method, coeffs, sig, n, degree):
    """(error, scale, exact) of row n applied to F = (v - v_n)^degree."""
    f = (lambda t: t ** degree) if degree > 0 else (lambda t: mp.mpf(1))
    exact = exact_step(method, sig, n, f)
    value, scale = method_step(method, coeffs, sig, n, f)
    return value - float(exact), scale + abs(float(exact)), float(exact)


EXACT_METHODS = [("res", 1), ("res", 2), ("res", 3), ("res", 4), ("deis", 1), ("deis", 2),
                 ("deis", 3), ("deis", 4), ("lms", 2), ("lms", 4), ("lms", 6),
                 ("ipndm_v", 3), ("ipndm_v", 4), ("li_accel_ode_1nfe", 2)]


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("method,order", EXACT_METHODS)
def test_exact_lagrange_methods_have_claimed_degree(method, order, grid):
    """Row n integrates degree < orders[n] exactly; at degree orders[n] the error is exactly
    minus the kernel integral of the node polynomial (the interpolation remainder)."""
    sig = GRIDS[grid]
    c = multistep_coefficients(method, sig, order)
    for n in range(c.steps):
        q = int(c.orders[n])
        for d in range(q):
            err, scale, _ = check_row_degree(method, c, sig, n, d)
            assert abs(err) <= 1e-12 * scale, (method, order, n, d, err, scale)
        err, scale, exact = check_row_degree(method, c, sig, n, q)
        predicted = -float(exact_step(method, sig, n, node_poly(method, sig, n, q)))
        assert abs(predicted) > 1e-6 * scale  # the next degree really fails ...
        assert abs(err - predicted) <= 1e-11 * scale, (method, order, n, err, predicted)  # ... as predicted


def test_warm_up_rows_and_zero_padding():
    sig = GRIDS["random"]
    for method, order in [("res", 3), ("deis", 4), ("lms", 5), ("ipndm", 4), ("dpmpp", 3),
                          ("li_accel_ode_1nfe", 2)]:
        c = multistep_coefficients(method, sig, order, lower_order_final=False)
        assert c.weights.shape == (len(sig) - 1, order)
        np.testing.assert_array_equal(c.orders, np.minimum(order, np.arange(c.steps) + 1))
        for n in range(c.steps):
            assert np.all(c.weights[n, c.orders[n]:] == 0)
            assert np.all(c.weights[n, :c.orders[n]] != 0)


def test_out_x_per_prediction():
    sig = GRIDS["karras"]
    for method in MULTISTEP_METHODS:
        c = multistep_coefficients(method, sig, 2)
        if c.prediction == "data":
            np.testing.assert_allclose(c.out_x, sig[1:] / sig[:-1], rtol=1e-15)
        else:
            np.testing.assert_array_equal(c.out_x, 1.0)
    assert multistep_coefficients("res", sig, 2).prediction == "data"
    assert multistep_coefficients("dpmpp", sig, 2).prediction == "data"
    for m in ("deis", "lms", "ipndm", "ipndm_v", "li_accel_ode_1nfe"):
        assert multistep_coefficients(m, sig, 2).prediction == "noise"


def test_first_order_rows_are_ddim():
    """Order 1 of every exponential / sigma method is DDIM = Euler in sigma (VE)."""
    sig = GRIDS["random"]
    ddim_data = 1 - sig[1:] / sig[:-1]
    ddim_noise = sig[1:] - sig[:-1]
    for m in ("res", "dpmpp"):
        np.testing.assert_allclose(multistep_coefficients(m, sig, 1).weights[:, 0], ddim_data,
                                   rtol=1e-14)
    for m in ("deis", "lms", "ipndm", "ipndm_v", "li_accel_ode_1nfe"):
        np.testing.assert_allclose(multistep_coefficients(m, sig, 1).weights[:, 0], ddim_noise,
                                   rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# RES-2M and DPM-Solver++
# ----------------------------------------------------------------------------------------------

def test_res_2m_matches_notes_formula():
    """notes §2.6: c2 = -h_{n-1}/h, b2 = phi_2(-h)/c2, b1 = phi_1(-h) - b2, x' = e^-h x + h(b1 D_n + b2 D_{n-1})."""
    sig = GRIDS["karras"]
    c = multistep_coefficients("res", sig, 2)
    lam = -np.log(sig)
    for n in range(1, c.steps):
        h, hp = lam[n + 1] - lam[n], lam[n] - lam[n - 1]
        c2 = -hp / h
        b2 = phi(2, -h) / c2
        b1 = phi(1, -h) - b2
        np.testing.assert_allclose(c.weights[n], [h * b1, h * b2], rtol=1e-13)


def test_dpmpp_2m_matches_paper_form_and_phi_residual():
    """2M: h phi_1 [(1 + 1/(2r)) D_n - D_{n-1}/(2r)]; for D = a + b tau its error against the exact
    integral is h^2 b (phi_1(-h)/2 - phi_2(-h)) (the only difference from RES-2M)."""
    sig = GRIDS["random"]
    c = multistep_coefficients("dpmpp", sig, 2, lower_order_final=False)
    lam = -np.log(sig)
    for n in range(1, c.steps):
        h, r = lam[n + 1] - lam[n], (lam[n] - lam[n - 1]) / (lam[n + 1] - lam[n])
        hp1 = h * phi(1, -h)
        np.testing.assert_allclose(c.weights[n], [hp1 * (1 + 1 / (2 * r)), -hp1 / (2 * r)],
                                   rtol=1e-13)
        a, b = 0.7, -1.3
        err_const, scale, _ = check_row_degree("dpmpp", c, sig, n, 0)
        assert abs(err_const) <= 1e-13 * scale
        err1, scale, _ = check_row_degree("dpmpp", c, sig, n, 1)
        err = a * err_const + b * err1
        predicted = h * h * b * (phi(1, -h) / 2 - phi(2, -h))
        assert abs(err - predicted) <= 1e-12 * scale * (abs(a) + abs(b))
        assert abs(predicted) > abs(b) * h ** 3 / (12 * (1 + h) ** 2)  # ~ b h^3/12: nonzero


def test_dpmpp_3m_is_exact_only_for_linear_fields():
    """The coded DPM-Solver++(3M): exact for linear D; for D = c tau^2 the error is -c h^3 phi_3(-h)
    (the D2 term carries half the exact weight).  RES order 3 is exact there."""
    for grid in sorted(GRIDS):
        sig = GRIDS[grid]
        c = multistep_coefficients("dpmpp", sig, 3, lower_order_final=False)
        r3 = multistep_coefficients("res", sig, 3)
        lam = -np.log(sig)
        for n in range(2, c.steps):
            for d in (0, 1):
                err, scale, _ = check_row_degree("dpmpp", c, sig, n, d)
                assert abs(err) <= 1e-12 * scale
            err, scale, _ = check_row_degree("dpmpp", c, sig, n, 2)
            h = lam[n + 1] - lam[n]
            predicted = -h ** 3 * phi(3, -h)
            assert abs(err - predicted) <= 1e-11 * scale, (grid, n, err, predicted)
            err_res, scale_res, _ = check_row_degree("res", r3, sig, n, 2)
            assert abs(err_res) <= 1e-12 * scale_res


def _particular(lam):
    return (math.cos(2 * lam + 0.3) + 2 * math.sin(2 * lam + 0.3)) / 5


def _global_quadrature_error(method, order, n_steps):
    """x' = D(lambda) - x on a uniform lambda grid, D = cos(2 lambda + 0.3); global error of the
    rows beyond the warm-up (exact starting values), as sum_n e^{-(lambda_M - lambda_{n+1})} err_n."""
    lam = np.linspace(0.0, 3.0, n_steps + 1)
    sig = np.exp(-lam)
    c = multistep_coefficients(method, sig, order, lower_order_final=False)
    total = 0.0
    for n in range(order - 1, n_steps):
        h = lam[n + 1] - lam[n]
        local = sum(c.weights[n, j] * math.cos(2 * lam[n - j] + 0.3) for j in range(order))
        # F' + F = cos(2 lambda + 0.3) for F = (cos + 2 sin)(2 lambda + 0.3)/5
        exact = _particular(lam[n + 1]) - math.exp(-h) * _particular(lam[n])
        total += math.exp(-(lam[-1] - lam[n + 1])) * (local - exact)
    return abs(total)


@pytest.mark.parametrize("method,order,expected", [("res", 2, 2), ("res", 3, 3), ("dpmpp", 2, 2),
                                                   ("dpmpp", 3, 2)])
def test_measured_quadrature_order(method, order, expected):
    """Observed global order of the weight sets on a smooth field (uniform lambda steps)."""
    errs = [_global_quadrature_error(method, order, n) for n in (80, 160, 320, 640)]
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(3)]
    assert abs(slopes[-1] - expected) < 0.1, slopes


def test_dpmpp_symbolic_3m_weights_sum_to_phi1():
    h, (s1, s2), w = dpmpp_weights_sym(3)
    assert sp.simplify(sum(w) - h * Phi(1, -h)) == 0


# ----------------------------------------------------------------------------------------------
# iPNDM, LMS
# ----------------------------------------------------------------------------------------------

AB = {1: [1], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12],
      4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}


def test_ipndm_fixed_adams_bashforth_weights():
    sig = GRIDS["karras"]
    c = multistep_coefficients("ipndm", sig, 4)
    step = sig[1:] - sig[:-1]
    for n in range(c.steps):
        q = min(4, n + 1)
        np.testing.assert_allclose(c.weights[n, :q], step[n] * np.array(AB[q]), rtol=1e-14)
    # on a grid that is not equispaced in sigma only constants are integrated exactly
    err, scale, _ = check_row_degree("ipndm", c, sig, 5, 0)
    assert abs(err) <= 1e-13 * scale
    err, scale, _ = check_row_degree("ipndm", c, sig, 5, 1)
    assert abs(err) > 1e-3 * scale


def test_ipndm_equals_lms_on_equispaced_sigma_and_ipndm_v_is_lms():
    sig = np.linspace(10.0, 1.0, 10)
    for q in (1, 2, 3, 4):
        np.testing.assert_allclose(multistep_coefficients("ipndm", sig, q).weights,
                                   multistep_coefficients("lms", sig, q).weights, rtol=1e-13)
    sig = GRIDS["random"]
    np.testing.assert_array_equal(multistep_coefficients("ipndm_v", sig, 4).weights,
                                  multistep_coefficients("lms", sig, 4).weights)
    np.testing.assert_array_equal(
        multistep_coefficients("ipndm", sig, 4, variable_step=True).weights,
        multistep_coefficients("ipndm_v", sig, 4).weights)


# ----------------------------------------------------------------------------------------------
# seed 002: the 1-NFE accelerated ODE sampler
# ----------------------------------------------------------------------------------------------

def _notes_arcsin_weight(s_prev, s_n, s_next):
    """notes §1.3: C_t / sqrt(abar_{t-1}) with t <-> n, t-1 <-> n+1, t+1 <-> n-1 (mpmath)."""
    a_prev, a_n, a_next = (_abar(mp.mpf(float(v))) for v in (s_prev, s_n, s_next))
    bracket = (a_n * mp.sqrt((1 - a_next) / a_next) + mp.asin(mp.sqrt(a_next))
               - a_n * mp.sqrt((1 - a_n) / a_n) - mp.asin(mp.sqrt(a_n)))
    c_t = mp.sqrt(a_next) / (a_n - a_prev) * bracket
    return c_t / mp.sqrt(a_next)


def test_li_accel_weight_equals_arcsin_closed_form():
    """The symbolic derivation (sympy integrate -> atan) equals the notes' arcsin form, and the
    stable numeric evaluation agrees with it to 1e-13 relative, on coarse and very fine grids."""
    sp_prev, sn, sx, k_expr = li_accel_moment_sym()
    assert k_expr.has(sp.atan)
    grids = [karras(10), karras(200, smin=0.002), np.geomspace(50, 0.01, 400),
             random_grid(12, seed=3)]
    with mp.workdps(80):  # both closed forms cancel on fine grids; 80 digits leave > 40
        for sig in grids:
            k_num = li_accel_correction(sig[:-2], sig[1:-1], sig[2:])
            for i in range(0, len(sig) - 2, max(1, (len(sig) - 2) // 15)):
                ref = _notes_arcsin_weight(sig[i], sig[i + 1], sig[i + 2])
                sym = k_expr.evalf(80, subs={sp_prev: sp.Float(float(sig[i]), 80),
                                             sn: sp.Float(float(sig[i + 1]), 80),
                                             sx: sp.Float(float(sig[i + 2]), 80)})
                assert abs(mp.mpf(str(sym)) - ref) <= mp.mpf(10) ** -40 * abs(ref)
                assert abs(k_num[i] - float(ref)) <= 1e-13 * abs(float(ref)), (i, k_num[i], ref)


def test_li_accel_rows():
    sig = GRIDS["karras"]
    c = multistep_coefficients("li_accel_ode_1nfe", sig, 2)
    step = sig[1:] - sig[:-1]
    k = li_accel_correction(sig[:-2], sig[1:-1], sig[2:])
    np.testing.assert_allclose(c.weights[1:, 1], k, rtol=1e-15)
    np.testing.assert_allclose(c.weights[1:, 0] + c.weights[1:, 1], step[1:], rtol=1e-13)
    np.testing.assert_allclose(c.weights[0], [step[0], 0.0])


# ----------------------------------------------------------------------------------------------
# symbolic expressions vs numeric evaluation (mpmath at 50 digits)
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _mp_lambdify(args, exprs):
    """The sympy expressions evaluated in mpmath arithmetic (Phi via the 1F1 reference)."""
    return sp.lambdify(args, list(exprs),
                       modules=[{"Phi": lambda k, z: phi_mpmath(int(k), z, mp.mp.dps)}, "mpmath"])


@pytest.mark.parametrize("method,order", [("res", 3), ("res", 4), ("deis", 3), ("dpmpp", 3),
                                          ("lms", 4), ("ipndm", 4), ("ipndm_v", 4),
                                          ("li_accel_ode_1nfe", 2)])
def test_numeric_matches_mpmath_of_symbolic(method, order):
    """Weights from multistep_coefficients vs the symbolic expressions of multistep_weights_sym
    evaluated in 50-digit mpmath arithmetic, on coarse, fine (h = 5e-3) and random grids."""
    grids = [karras(12), np.geomspace(20, 0.05, 1200)[:12], random_grid(10, seed=7)]
    with mp.workdps(50):
        for sig in grids:
            c = multistep_coefficients(method, sig, order, lower_order_final=False)
            for n in range(c.steps):
                q = int(c.orders[n])
                names, w = multistep_weights_sym(method, q)
                refs = _mp_lambdify(tuple(names.values()), w)(
                    *[_mp_value(name, method, sig, n) for name in names])
                for j in range(q):
                    ref = float(refs[j])
                    assert abs(c.weights[n, j] - ref) <= 1e-13 * abs(ref), (method, n, j, ref)


def _mp_value(name, method, sig, n):
    """High-precision value of the free symbol ``name`` of row n (multistep_weights_sym)."""
    s = lambda i: mp.mpf(float(sig[i]))  # noqa: E731
    if name == "h":
        return mp.log(s(n) / s(n + 1))
    if name == "step":
        return s(n + 1) - s(n)
    if name in ("sigma_next", "sigma_n", "sigma_prev"):
        return s(n + {"sigma_next": 1, "sigma_n": 0, "sigma_prev": -1}[name])
    j = int(name[1:])  # node s_j
    if n - j < 0:  # dpmpp's unused s2 in rows of lower order
        return mp.mpf(-j)
    if method in ("res", "deis", "dpmpp"):
        return mp.log(s(n) / s(n - j)) / mp.log(s(n) / s(n + 1))
    return (s(n - j) - s(n)) / (s(n + 1) - s(n))


def test_lagrange_core_solves_moment_system():
    rng = np.random.default_rng(0)
    for q in range(1, 8):
        nodes = np.concatenate([[0.0], -np.sort(rng.uniform(0.5, 1.5, q - 1)).cumsum()])
        moments = 1.0 / np.arange(1, q + 1)
        w = lagrange_weights(nodes, moments)
        vander = nodes[None, :] ** np.arange(q)[:, None]
        np.testing.assert_allclose(vander @ w, moments, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------------

def test_lower_order_final_rules():
    short = karras(6)
    long = karras(12)
    c = multistep_coefficients("dpmpp", short, 3)  # default True, applies for M < 10
    np.testing.assert_array_equal(c.orders, [1, 2, 3, 3, 2, 1])
    c = multistep_coefficients("dpmpp", long, 3)
    assert c.orders[-1] == 3
    c = multistep_coefficients("dpmpp", long, 3, lower_order_final_below=None)
    np.testing.assert_array_equal(c.orders[-3:], [3, 2, 1])
    c = multistep_coefficients("res", short, 3)  # default False
    np.testing.assert_array_equal(c.orders, [1, 2, 3, 3, 3, 3])
    c = multistep_coefficients("res", short, 3, lower_order_final=True)
    np.testing.assert_array_equal(c.orders, [1, 2, 3, 3, 2, 1])
    np.testing.assert_array_equal(row_orders(1, 3, True), [1])


def test_accepts_tensor_and_list_grids():
    sig = GRIDS["karras"]
    ref = multistep_coefficients("res", sig, 2).weights
    np.testing.assert_array_equal(
        multistep_coefficients("res", torch.tensor(sig, dtype=torch.float64), 2).weights, ref)
    np.testing.assert_array_equal(multistep_coefficients("res", list(sig), 2).weights, ref)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(method="res", sigmas=karras(5), order=0), ValueError, "order"),
    (dict(method="res", sigmas=karras(5), order=2.0), TypeError, "order"),
    (dict(method="res", sigmas=karras(5), order=True), TypeError, "order"),
    (dict(method="dpmpp", sigmas=karras(5), order=4), ValueError, "order"),
    (dict(method="ipndm", sigmas=karras(5), order=5), ValueError, "order"),
    (dict(method="li_accel_ode_1nfe", sigmas=karras(5), order=3), ValueError, "order"),
    (dict(method="adams", sigmas=karras(5), order=2), ValueError, "known"),
    (dict(method="res", sigmas=karras(5)[::-1], order=2), ValueError, "sigmas"),
    (dict(method="res", sigmas=np.array([2.0, 2.0, 1.0]), order=2), ValueError, "sigmas"),
    (dict(method="res", sigmas=np.array([2.0, 1.0, 0.0]), order=2), ValueError, "sigmas"),
    (dict(method="res", sigmas=np.array([2.0, -1.0]), order=2), ValueError, "sigmas"),
    (dict(method="res", sigmas=np.array([2.0, np.nan, 1.0]), order=2), ValueError, "sigmas"),
    (dict(method="res", sigmas=np.array([2.0]), order=1), ValueError, "sigmas"),
    (dict(method="res", sigmas=np.ones((2, 2)), order=1), ValueError, "sigmas"),
    (dict(method="res", sigmas="1,2", order=1), TypeError, "sigmas"),
    (dict(method="res", sigmas=karras(5), order=2, variable_step=True), TypeError, "variable_step"),
    (dict(method="ipndm", sigmas=karras(5), order=2, variable_step=1), TypeError, "variable_step"),
    (dict(method="res", sigmas=karras(5), order=2, lower_order_final="yes"), TypeError,
     "lower_order_final"),
    (dict(method="dpmpp", sigmas=karras(5), order=2, lower_order_final_below=0), ValueError,
     "lower_order_final_below"),
])
def test_bad_input(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        multistep_coefficients(**kwargs)


def test_dataclass_validation():
    good = dict(prediction="data", out_x=np.ones(2), weights=np.array([[1.0, 0.0], [1.0, 2.0]]),
                orders=np.array([1, 2]))
    MultistepCoefficients(**good)
    for change, word in [({"prediction": "score"}, "prediction"),
                         ({"out_x": np.ones(3)}, "weights"),
                         ({"weights": np.array([[1.0, 5.0], [1.0, 2.0]])}, "beyond"),
                         ({"weights": np.array([[np.nan, 0.0], [1.0, 2.0]])}, "NaN"),
                         ({"orders": np.array([0, 2])}, "orders"),
                         ({"orders": np.array([1.0, 2.0])}, "orders")]:
        with pytest.raises(ValueError, match=word):
            MultistepCoefficients(**{**good, **change})
    c = MultistepCoefficients(**good)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.prediction = "noise"
