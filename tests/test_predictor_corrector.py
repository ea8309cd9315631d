"""Tests for samplerlab.theory.predictor_corrector: UniPC and F-DPMSolver coefficients.

Each half of a row is applied to an x-independent field F(lambda) (cache values at the grid nodes,
the new evaluation at lambda_{n+1}); the result is compared with the exact integral computed
independently by mpmath quadrature (30 digits).
"""
import dataclasses
import functools
import math

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from samplerlab.theory.multistep import multistep_coefficients
from samplerlab.theory.phi_functions import phi, phi_mpmath
from samplerlab.theory.predictor_corrector import (
    PCCoefficients,
    pc_coefficients,
    unipc_b,
    unipc_weights_sym,
)

from _grids import karras, random_grid  # noqa: E402

mp.mp.dps = 30






GRIDS = {"karras": karras(9), "uniform_lambda": 5.0 * np.exp(-0.4 * np.arange(9)),
         "random": random_grid(9, seed=2)}


def lam_mp(sig):
    return [-mp.log(mp.mpf(float(s))) for s in sig]


def exact(sig, n, f, form):
    """int over step n of the kernel times f(tau), tau = lambda - lambda_n (data or noise form)."""
    lam = lam_mp(sig)
    h = lam[n + 1] - lam[n]
    if form == "data":
        return mp.quad(lambda t: mp.exp(-(h - t)) * f(t), [0, h])
    return -mp.mpf(float(sig[n])) * mp.quad(lambda t: mp.exp(-t) * f(t), [0, h])


def apply(weights, sig, n, f, new_weight=None):
    """sum_j w_j f(tau_{n-j}) (+ new_weight f(h)), and the sum of |terms| (a rounding scale)."""
    lam = lam_mp(sig)
    terms = [weights[j] * float(f(lam[n - j] - lam[n])) for j in range(len(weights))]
    if new_weight is not None:
        terms.append(new_weight * float(f(lam[n + 1] - lam[n])))
    return math.fsum(terms), sum(abs(t) for t in terms)


def node_poly(sig, n, q, with_new):
    lam = lam_mp(sig)
    offs = [lam[n - j] - lam[n] for j in range(q)] + ([lam[n + 1] - lam[n]] if with_new else [])
    return lambda t: mp.fprod([t - o for o in offs])


def monomial(d):
    return (lambda t: t ** d) if d > 0 else (lambda t: mp.mpf(1))


def check_exactness(weights, sig, n, degree_exact, form, new_weight=None):
    """Exact for degree <= degree_exact; at degree_exact + 1 the error is -int K * node_poly."""
    for d in range(degree_exact + 1):
        value, scale = apply(weights, sig, n, monomial(d), new_weight)
        ref = float(exact(sig, n, monomial(d), form))
        assert abs(value - ref) <= 1e-12 * (scale + abs(ref)), (n, d, value, ref)
    d = degree_exact + 1
    value, scale = apply(weights, sig, n, monomial(d), new_weight)
    ref = float(exact(sig, n, monomial(d), form))
    predicted = -float(exact(sig, n, node_poly(sig, n, len(weights), new_weight is not None), form))
    assert abs(predicted) > 1e-6 * (scale + abs(ref))
    assert abs((value - ref) - predicted) <= 1e-11 * (scale + abs(ref)), (n, value - ref, predicted)


# ----------------------------------------------------------------------------------------------
# UniPC
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_unipc_consistency_orders(order, variant, grid):
    """UniP-p is exact for degree p-1 and UniC for degree p (orders p and p+1), except the
    official rho = 1/2 rows (UniP-2, UniC-1), which are exact for constants and err on
    D = tau by h (-B(h)/2 - h phi_2(-h))."""
    sig = GRIDS[grid]
    c = pc_coefficients("unipc", sig, order, variant=variant, final_corrector=True)
    lam = -np.log(sig)
    for n in range(c.steps):
        p = int(c.orders[n])
        h = lam[n + 1] - lam[n]
        bpos = h if variant == "bh1" else h * phi(1, -h)
        half = bpos * h / 2 - h * h * phi(2, -h)
        pw = c.pred_w[n, :p]
        if p == 2:
            value, scale = apply(pw, sig, n, monomial(0))
            assert abs(value - float(exact(sig, n, monomial(0), "data"))) <= 1e-13 * scale
            value, scale = apply(pw, sig, n, monomial(1))
            assert abs(value - float(exact(sig, n, monomial(1), "data")) - half) <= 1e-12 * scale
        else:
            check_exactness(pw, sig, n, p - 1, "data")
        cw = c.corr_w[n, :p]
        if p == 1:
            value, scale = apply(cw, sig, n, monomial(1), c.corr_new[n])
            assert abs(value - float(exact(sig, n, monomial(1), "data")) - half) <= 1e-12 * scale
        else:
            check_exactness(cw, sig, n, p, "data", c.corr_new[n])
        np.testing.assert_allclose(c.pred_out_x[n], sig[n + 1] / sig[n], rtol=1e-15)
        np.testing.assert_allclose(c.corr_out_x[n], sig[n + 1] / sig[n], rtol=1e-15)


def _official_style_update(sig, n, p, variant, d_cache, d_new, x):
    """UniPC's data-prediction bh update written from the paper/official code structure:
    r_k, D1_k = (D_{n-k} - D_n)/r_k, b via the code's h_phi_k recurrence, R rho = b by a dense
    solve, rho = 1/2 for UniP-2 / UniC-1.  Returns (x_pred, x_corr)."""
    lam = -np.log(sig)
    h = lam[n + 1] - lam[n]
    hh = -h
    rks = [(lam[n - k] - lam[n]) / h for k in range(1, p)] + [1.0]
    d1s = [(d_cache[k] - d_cache[0]) / rks[k - 1] for k in range(1, p)]
    b_h = hh if variant == "bh1" else math.expm1(hh)
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    fact = 1
    b = []
    for i in range(1, p + 1):
        b.append(h_phi_k * fact / b_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1 / fact
    big_r = np.array([[r ** (i - 1) for r in rks] for i in range(1, p + 1)])
    base = sig[n + 1] / sig[n] * x - h_phi_1 * d_cache[0]
    if p == 1:
        x_pred = base
    else:
        rho_p = np.array([0.5]) if p == 2 else np.linalg.solve(big_r[:-1, :-1], b[:-1])
        x_pred = base - b_h * float(np.dot(rho_p, d1s))
    rho_c = np.array([0.5]) if p == 1 else np.linalg.solve(big_r, b)
    corr = float(np.dot(rho_c[:-1], d1s)) if p > 1 else 0.0
    x_corr = base - b_h * (corr + rho_c[-1] * (d_new - d_cache[0]))
    return x_pred, x_corr


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_matches_official_style_update(variant):
    rng = np.random.default_rng(5)
    sig = GRIDS["karras"]
    c = pc_coefficients("unipc", sig, 3, variant=variant, final_corrector=True)
    for n in range(c.steps):
        p = int(c.orders[n])
        d_cache, d_new, x = rng.normal(size=p), rng.normal(), rng.normal()
        ref_pred, ref_corr = _official_style_update(sig, n, p, variant, d_cache, d_new, x)
        pred = c.pred_out_x[n] * x + np.dot(c.pred_w[n, :p], d_cache)
        corr = c.corr_out_x[n] * x + np.dot(c.corr_w[n, :p], d_cache) + c.corr_new[n] * d_new
        scale = 1 + np.abs(c.pred_w[n]).sum() + abs(c.corr_new[n])
        assert abs(pred - ref_pred) <= 1e-12 * scale, (n, pred, ref_pred)
        assert abs(corr - ref_corr) <= 1e-12 * scale, (n, corr, ref_corr)


def test_unipc_order_conditions_of_rho():
    """The rho implied by the weights solve R rho = b(h): sum_k rho_k r_k^(i-1) = b_i, i <= q."""
    sig = GRIDS["random"]
    lam = -np.log(sig)
    for variant in ("bh1", "bh2"):
        c = pc_coefficients("unipc", sig, 3, variant=variant, lower_order_final=False,
                            final_corrector=True)
        for n in range(2, c.steps):
            h = lam[n + 1] - lam[n]
            r = np.array([(lam[n - k] - lam[n]) / h for k in (1, 2)])
            b, bpos = unipc_b(np.array([h]), 3, variant)
            rho_p = c.pred_w[n, 1:3] * r / bpos[0]
            rho_c = np.append(c.corr_w[n, 1:3] * r, c.corr_new[n]) / bpos[0]
            nodes_c = np.append(r, 1.0)
            for i in range(2):
                assert abs(np.dot(rho_p, r ** i) - b[0, i]) <= 1e-12
            for i in range(3):
                assert abs(np.dot(rho_c, nodes_c ** i) - b[0, i]) <= 1e-12


def test_unipc_variants_differ_only_in_the_half_rho_rows():
    sig = GRIDS["karras"]
    c1 = pc_coefficients("unipc", sig, 3, variant="bh1", final_corrector=True)
    c2 = pc_coefficients("unipc", sig, 3, variant="bh2", final_corrector=True)
    for n in range(c1.steps):
        p = c1.orders[n]
        same_pred = np.allclose(c1.pred_w[n], c2.pred_w[n], rtol=1e-13, atol=0)
        same_corr = np.allclose(np.append(c1.corr_w[n], c1.corr_new[n]),
                                np.append(c2.corr_w[n], c2.corr_new[n]), rtol=1e-13, atol=0)
        assert same_pred == (p != 2)
        assert same_corr == (p != 1)


def test_unipc_special_cases_against_multistep():
    """UniP-2 with bh2 and rho = 1/2 is DPM-Solver++(2M); with the solved rho UniP-p is the exact
    exponential Adams method (res)."""
    sig = GRIDS["random"]
    c = pc_coefficients("unipc", sig, 2, variant="bh2", lower_order_final=False)
    np.testing.assert_allclose(c.pred_w, multistep_coefficients(
        "dpmpp", sig, 2, lower_order_final=False).weights, rtol=1e-13)
    for variant in ("bh1", "bh2"):
        c = pc_coefficients("unipc", sig, 2, variant=variant, lower_order_final=False,
                            half_rho_low_order=False)
        np.testing.assert_allclose(c.pred_w, multistep_coefficients("res", sig, 2).weights,
                                   rtol=1e-12)
        c = pc_coefficients("unipc", sig, 3, variant=variant, lower_order_final=False)
        np.testing.assert_allclose(c.pred_w[2:], multistep_coefficients("res", sig, 3).weights[2:],
                                   rtol=1e-12)


def test_unipc_rows_orders_and_final_corrector():
    sig = karras(7)
    c = pc_coefficients("unipc", sig, 3)
    np.testing.assert_array_equal(c.orders, [1, 2, 3, 3, 3, 2, 1])
    assert c.initial == "evaluate" and c.pred_prediction == c.corr_prediction == "data"
    assert c.corr_new[-1] == 0 and np.all(c.corr_new[:-1] > 0)
    np.testing.assert_array_equal(c.corr_w[-1], c.pred_w[-1])
    np.testing.assert_array_equal(c.corrected, [True] * 6 + [False])
    c = pc_coefficients("unipc", sig, 3, lower_order_final=False, final_corrector=True)
    np.testing.assert_array_equal(c.orders, [1, 2, 3, 3, 3, 3, 3])
    assert c.corr_new[-1] > 0 and c.corrected.all()
    for n in range(c.steps):
        assert np.all(c.pred_w[n, c.orders[n]:] == 0) and np.all(c.corr_w[n, c.orders[n]:] == 0)


@functools.lru_cache(maxsize=None)
def _mp_fn(p, variant, part, half):
    h, r, w = unipc_weights_sym(p, variant, part, half)
    return sp.lambdify((h,) + tuple(r), list(w),
                       modules=[{"Phi": lambda k, z: phi_mpmath(int(k), z, mp.mp.dps)}, "mpmath"])


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_numeric_matches_mpmath_of_symbolic(variant):
    grids = [karras(10), np.geomspace(20, 0.05, 1200)[:10], random_grid(8, seed=9)]
    with mp.workdps(50):
        for sig in grids:
            c = pc_coefficients("unipc", sig, 4, variant=variant, final_corrector=True)
            s = [mp.mpf(float(v)) for v in sig]
            for n in range(c.steps):
                p = int(c.orders[n])
                h = mp.log(s[n] / s[n + 1])
                r = [mp.log(s[n] / s[n - k]) / h for k in range(1, p)]
                pred = _mp_fn(p, variant, "predictor", True)(h, *r)
                corr = _mp_fn(p, variant, "corrector", True)(h, *r)
                got = list(c.pred_w[n, :p]) + list(c.corr_w[n, :p]) + [c.corr_new[n]]
                for g, ref in zip(got, list(pred) + list(corr)):
                    assert abs(g - float(ref)) <= 1e-13 * abs(float(ref)), (n, g, ref)


# ----------------------------------------------------------------------------------------------
# F-DPMSolver (seed 000)
# ----------------------------------------------------------------------------------------------

def test_f_ddim_predictor_is_ddim_noise_step_and_corrector_is_forward_value():
    sig = GRIDS["karras"]
    c = pc_coefficients("f_dpmsolver", sig, 1)
    assert c.initial == "noise_proxy"
    assert c.pred_prediction == "noise" and c.corr_prediction == "data"
    np.testing.assert_array_equal(c.pred_out_x, 1.0)
    np.testing.assert_allclose(c.pred_w[:, 0], -(sig[:-1] - sig[1:]), rtol=1e-14)
    np.testing.assert_allclose(c.corr_out_x, sig[1:] / sig[:-1], rtol=1e-15)
    np.testing.assert_array_equal(c.corr_w, 0.0)
    np.testing.assert_allclose(c.corr_new, 1 - sig[1:] / sig[:-1], rtol=1e-14)
    assert c.corrected.all()  # every step evaluates once: M NFE, no initial evaluation


@pytest.mark.parametrize("k", [2, 3])
def test_f_dpmsolver_predictor_is_noise_form_exponential_adams(k):
    for grid in sorted(GRIDS):
        sig = GRIDS[grid]
        c = pc_coefficients("f_dpmsolver", sig, k)
        np.testing.assert_array_equal(c.orders, np.minimum(k, np.arange(c.steps) + 1))
        np.testing.assert_array_equal(c.pred_w, multistep_coefficients("deis", sig, k).weights)
        for n in range(c.steps):
            check_exactness(c.pred_w[n, :c.orders[n]], sig, n, int(c.orders[n]) - 1, "noise")


def test_forward_value_corrector_error_is_opposite_to_ddim():
    """Corrector (data form, D at the right end) is exact for constant D; for D = tau its error is
    h^2 (phi_1 - phi_2)(-h) = 1 - e^-h - h e^-h > 0 (~ +h^2/2), while DDIM's (D at the left end)
    is -h^2 phi_2(-h) (~ -h^2/2)."""
    sig = GRIDS["random"]
    c = pc_coefficients("f_dpmsolver", sig, 2)
    ddim = multistep_coefficients("res", sig, 1)
    lam = -np.log(sig)
    for n in range(c.steps):
        h = lam[n + 1] - lam[n]
        for d, predicted_fv, predicted_ddim in [(0, 0.0, 0.0),
                                                (1, -math.expm1(-h) - h * math.exp(-h),
                                                 -h * h * phi(2, -h))]:
            ref = float(exact(sig, n, monomial(d), "data"))
            fv, scale = apply(c.corr_w[n, :0], sig, n, monomial(d), c.corr_new[n])
            dd, _ = apply(ddim.weights[n, :1], sig, n, monomial(d))
            assert abs(fv - ref - predicted_fv) <= 1e-13 * (scale + abs(ref))
            assert abs(dd - ref - predicted_ddim) <= 1e-13 * (scale + abs(ref))
        assert predicted_fv > 0 > predicted_ddim
        assert abs(predicted_fv / (h * h / 2) - 1) < h and abs(-predicted_ddim / (h * h / 2) - 1) < h


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(method="unipc", sigmas=karras(5), order=0), ValueError, "order"),
    (dict(method="unipc", sigmas=karras(5), order=2.5), TypeError, "order"),
    (dict(method="unipc_bh3", sigmas=karras(5), order=2), ValueError, "known"),
    (dict(method="unipc", sigmas=karras(5), order=2, variant="bh3"), ValueError, "variant"),
    (dict(method="unipc", sigmas=karras(5), order=2, final_corrector=1), TypeError,
     "final_corrector"),
    (dict(method="unipc", sigmas=karras(5), order=2, lower_order_final=None), TypeError,
     "lower_order_final"),
    (dict(method="f_dpmsolver", sigmas=karras(5), order=2, variant="bh1"), TypeError, "variant"),
    (dict(method="f_dpmsolver", sigmas=karras(5)[::-1], order=2), ValueError, "sigmas"),
    (dict(method="f_dpmsolver", sigmas=np.array([3.0, 1.0, 0.0]), order=1), ValueError, "sigmas"),
    (dict(method="unipc", sigmas=np.array([3.0]), order=1), ValueError, "sigmas"),
    (dict(method="unipc", sigmas=[3.0, float("inf"), 1.0], order=1), ValueError, "sigmas"),
])
def test_bad_input(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        pc_coefficients(**kwargs)


def test_pc_dataclass_validation():
    good = dict(pred_out_x=np.ones(2), pred_w=np.array([[1.0, 0.0], [1.0, 1.0]]),
                pred_prediction="noise", corr_out_x=np.ones(2), corr_w=np.zeros((2, 2)),
                corr_new=np.ones(2), corr_prediction="data", orders=np.array([1, 2]),
                initial="noise_proxy")
    PCCoefficients(**good)
    for change, word in [({"pred_prediction": "v"}, "pred_prediction"),
                         ({"initial": "zeros"}, "initial"),
                         ({"corr_w": np.zeros((2, 3))}, "corr_w"),
                         ({"corr_new": np.array([1.0, np.inf])}, "NaN or inf"),
                         ({"pred_w": np.array([[1.0, 2.0], [1.0, 1.0]])}, "beyond"),
                         ({"orders": np.array([1, 3])}, "orders")]:
        with pytest.raises(ValueError, match=word):
            PCCoefficients(**{**good, **change})
    with pytest.raises(dataclasses.FrozenInstanceError):
        PCCoefficients(**good).initial = "evaluate"
