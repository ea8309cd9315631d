"""Named tableaux compiled to StepCoefficients: accuracy vs mpmath, direct implementations,
exactness on x-independent denoisers, validation."""
import functools
import math

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import samplerlab.theory.single_step as ss
from samplerlab.theory import exp_rk
from samplerlab.theory.exp_rk import h
from samplerlab.theory.phi_functions import phi, phi_mpmath
from samplerlab.theory.step_form import STEP_METHODS, step_coefficients

NAMES = sorted(ss.SINGLE_STEP_METHODS)
MP = {"Phi": lambda k, z: phi_mpmath(int(k), z, 50)}


def apply_coeffs(co, x, denoiser, row=None):
    """One step of the linear form for every row (numpy, x of shape [M])."""
    m, s = co.stage_sigma.shape
    ds = []
    for j in range(s):
        X = co.stage_x[:, j] * x + sum(co.stage_w[:, j, k] * ds[k] for k in range(j))
        ds.append(denoiser(X, co.stage_sigma[:, j]))
    return co.out_x * x + sum(co.out_w[:, k] * ds[k] for k in range(s))


# ---------------------------------------------------------------------------------------------
# numeric coefficients vs 50-digit evaluation of the symbolic expressions
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _mp_entries(name):
    tab = exp_rk.get_tableau(name)
    ent = {}
    for i in range(tab.stages):
        for j in range(i):
            if tab.A[i, j] != 0:
                ent[("w", i, j)] = sympy.lambdify(h, h * tab.A[i, j], [MP, "mpmath"])
        if tab.b[i] != 0:
            ent[("b", i)] = sympy.lambdify(h, h * tab.b[i], [MP, "mpmath"])
    return tab, ent


@pytest.mark.parametrize("name", NAMES)
def test_coefficients_agree_with_mpmath(name):
    hs = np.concatenate([np.logspace(-4, 1, 70), [0.5, 1.0, 1.0 + 1e-12, 2.0]])
    sf = np.full_like(hs, 7.0)
    st_ = sf * np.exp(-hs)
    co = step_coefficients(name, sf, st_)
    hs = np.log(sf / st_)  # the h the coefficients were computed for
    tab, ent = _mp_entries(name)
    refs = {}
    with mpmath.workdps(50):
        for key, f in ent.items():
            refs[key] = np.array([float(f(mpmath.mpf(float(x)))) for x in hs])
        for i, ci in enumerate(tab.c):
            ref = np.array([float(mpmath.exp(-mpmath.mpf(sympy.Rational(ci)) * mpmath.mpf(float(x))))
                            for x in hs])
            np.testing.assert_allclose(co.stage_x[:, i], ref, rtol=1e-14, atol=0)
    np.testing.assert_allclose(co.out_x, np.exp(-hs), rtol=1e-14)
    rows_b = np.max([np.abs(v) for k, v in refs.items() if k[0] == "b"], axis=0)
    for key, ref in refs.items():
        got = co.stage_w[:, key[1], key[2]] if key[0] == "w" else co.out_w[:, key[1]]
        scale = rows_b if key[0] == "b" else np.abs(ref)
        err = np.abs(got - ref)
        # relative 1e-13 (coefficients vanishing like h^k as h -> 0 included); near an isolated
        # sign change of a weight (res_3s b_1 at h ~ 2.1) relative to the row's largest weight
        assert np.all(err <= 1e-13 * np.maximum(np.abs(ref), 1e-2 * scale)), (key, (err / np.abs(ref)).max())
        away = np.abs(ref) >= 1e-2 * scale
        assert np.all(err[away] <= 1e-13 * np.abs(ref[away]))
    # identically zero entries stay exactly zero
    for i in range(tab.stages):
        if tab.b[i] == 0:
            assert np.all(co.out_w[:, i] == 0)


# ---------------------------------------------------------------------------------------------
# the same numbers as the methods' own update formulas, on an x-dependent denoiser
# ---------------------------------------------------------------------------------------------

MU, S0 = 0.7, 0.5


def gauss_denoiser(x, sigma):
    return (S0 ** 2 * x + sigma ** 2 * MU) / (S0 ** 2 + sigma ** 2)


def eps(x, sigma):
    return (x - gauss_denoiser(x, sigma)) / sigma


def direct(name, x, sf, st_, **p):
    """The published update formulas, written independently of theory/ (VE, alpha = 1)."""
    D = gauss_denoiser
    hh = np.log(sf / st_)
    if name == "euler":
        return st_ / sf * x + (1 - st_ / sf) * D(x, sf)
    if name == "heun":  # Karras et al. 2022, Alg. 1 (no churn)
        d1 = (x - D(x, sf)) / sf
        x2 = x + (st_ - sf) * d1
        d2 = (x2 - D(x2, st_)) / st_
        return x + (st_ - sf) * (d1 + d2) / 2
    if name == "dpm_solver_2":  # Lu et al. 2022, Alg. 1
        r = p.get("r", 0.5)
        s1 = sf * np.exp(-r * hh)
        e0 = eps(x, sf)
        u = x - s1 * np.expm1(r * hh) * e0
        return x - st_ * np.expm1(hh) * e0 - st_ / (2 * r) * np.expm1(hh) * (eps(u, s1) - e0)
    if name == "dpm_solver_3":  # Lu et al. 2022, Alg. 2
        r1, r2 = p.get("r1", 1 / 3), p.get("r2", 2 / 3)
        s1, s2 = sf * np.exp(-r1 * hh), sf * np.exp(-r2 * hh)
        e0 = eps(x, sf)
        u1 = x - s1 * np.expm1(r1 * hh) * e0
        dd1 = eps(u1, s1) - e0
        u2 = (x - s2 * np.expm1(r2 * hh) * e0
              - (r2 / r1) * s2 * (np.expm1(r2 * hh) / (r2 * hh) - 1) * dd1)
        dd2 = eps(u2, s2) - e0
        return x - st_ * np.expm1(hh) * e0 - (1 / r2) * st_ * (np.expm1(hh) / hh - 1) * dd2
    if name == "dpmpp_2s":  # Lu et al. 2022b, Alg. 1
        r = p.get("r", 0.5)
        s1 = sf * np.exp(-r * hh)
        d0 = D(x, sf)
        u = s1 / sf * x - np.expm1(-r * hh) * d0
        d1 = D(u, s1)
        return st_ / sf * x - np.expm1(-hh) * ((1 - 1 / (2 * r)) * d0 + d1 / (2 * r))
    if name == "res_2s":  # notes §2.4, Algorithm 1
        c2 = p.get("c2", 0.5)
        d1 = D(x, sf)
        x2 = np.exp(-c2 * hh) * x + (1 - np.exp(-c2 * hh)) * d1
        d2 = D(x2, sf * np.exp(-c2 * hh))
        b2 = phi(2, -hh) / c2
        return np.exp(-hh) * x + hh * ((phi(1, -hh) - b2) * d1 + b2 * d2)
    if name == "res_3s":  # notes §2.5
        c2, c3 = p.get("c2", 1 / 3), p.get("c3", 2 / 3)
        g = (3 * c3 ** 2 - 2 * c3) / (c2 * (2 - 3 * c2))
        a21 = c2 * phi(1, -c2 * hh)
        a32 = g * c2 * phi(2, -c2 * hh) + c3 ** 2 / c2 * phi(2, -c3 * hh)
        a31 = c3 * phi(1, -c3 * hh) - a32
        b3 = phi(2, -hh) / (g * c2 + c3)
        b2 = g * b3
        b1 = phi(1, -hh) - b2 - b3
        d1 = D(x, sf)
        x2 = np.exp(-c2 * hh) * x + hh * a21 * d1
        d2 = D(x2, sf * np.exp(-c2 * hh))
        x3 = np.exp(-c3 * hh) * x + hh * (a31 * d1 + a32 * d2)
        d3 = D(x3, sf * np.exp(-c3 * hh))
        return np.exp(-hh) * x + hh * (b1 * d1 + b2 * d2 + b3 * d3)
    raise KeyError(name)


PARAMS = {"euler": [{}], "heun": [{}], "dpm_solver_2": [{}, {"r": 0.3}, {"r": 1.0}],
          "dpm_solver_3": [{}, {"r1": 0.25, "r2": 0.75}], "dpmpp_2s": [{}, {"r": 0.4}],
          "res_2s": [{}, {"c2": 0.3}, {"c2": 1.0}], "res_3s": [{}, {"c2": 0.5, "c3": 1.0},
                                                           {"c2": 0.4, "c3": 0.8}]}


@pytest.mark.parametrize("name", NAMES)
def test_coefficients_reproduce_the_direct_update(name):
    sig = np.geomspace(80.0, 0.002, 13)                       # Karras-like span, 12 steps
    sf, st_ = np.concatenate([sig[:-1], [1.0, 1.0]]), np.concatenate([sig[1:], [0.9999, 0.3]])
    x = np.linspace(-3.0, 3.0, sf.size) * sf
    for p in PARAMS[name]:
        co = step_coefficients(name, sf, st_, **p)
        got = apply_coeffs(co, x, gauss_denoiser)
        ref = direct(name, x, sf, st_, **p)
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12 * np.abs(x).max())


def test_heun_coefficients_equal_classical_heun_by_hand():
    """Read the coefficients off the sigma-form Heun applied to unit inputs (x-independent D)."""
    sf = np.array([5.0, 1.0, 0.3])
    st_ = np.array([2.0, 0.5, 0.29])
    co = step_coefficients("heun", sf, st_)

    def heun_sigma(x, q1, q2):   # classical Heun in sigma with D(., sf) = q1, D(., st) = q2
        d1 = (x - q1) / sf
        x2 = x + (st_ - sf) * d1
        d2 = (x2 - q2) / st_
        return x + (st_ - sf) * (d1 + d2) / 2, x2

    out_x, _ = heun_sigma(1.0, 0.0, 0.0)
    out_w1, x2_w1 = heun_sigma(0.0, 1.0, 0.0)
    out_w2, _ = heun_sigma(0.0, 0.0, 1.0)
    _, x2_x = heun_sigma(1.0, 0.0, 0.0)
    np.testing.assert_allclose(co.out_x, out_x, rtol=1e-14)
    np.testing.assert_allclose(co.out_w[:, 0], out_w1, rtol=1e-13)
    np.testing.assert_allclose(co.out_w[:, 1], out_w2, rtol=1e-13)
    np.testing.assert_allclose(co.stage_x[:, 1], x2_x, rtol=1e-14)
    np.testing.assert_allclose(co.stage_w[:, 1, 0], x2_w1, rtol=1e-13)
    np.testing.assert_array_equal(co.stage_sigma[:, 1], st_)   # second stage exactly at sigma_to
    np.testing.assert_array_equal(co.stage_sigma[:, 0], sf)


# ---------------------------------------------------------------------------------------------
# x-independent denoisers D = a + b lambda: the error is -b h^2 psi_2 (exact) for every method
# ---------------------------------------------------------------------------------------------

def _one_step_linear_D(name, hv, lam0, a, b, **p):
    sf = np.array([math.exp(-lam0)])
    st_ = sf * math.exp(-hv)
    co = step_coefficients(name, sf, st_, **p)
    hv = float(np.log(sf / st_)[0])
    x0 = 0.37
    D = lambda X, sig: a + b * (-np.log(sig))  # noqa: E731
    got = apply_coeffs(co, np.array([x0]), D)[0]
    exact = math.exp(-hv) * x0 + (a + b * lam0) * hv * phi(1, -hv) + b * hv ** 2 * phi(2, -hv)
    return got, exact, hv


@settings(max_examples=40, deadline=None)
@given(hv=st.floats(1e-3, 8.0), c2=st.floats(0.02, 1.0), lam0=st.floats(-4.0, 5.0),
       a=st.floats(-2.0, 2.0), b=st.floats(-2.0, 2.0))
def test_res_2s_exact_for_linear_in_lambda(hv, c2, lam0, a, b):
    got, exact, _ = _one_step_linear_D("res_2s", hv, lam0, a, b, c2=c2)
    scale = abs(exact) + abs(a) + abs(b) * (abs(lam0) + hv) + 1.0
    assert abs(got - exact) <= 1e-14 * scale * 4


@settings(max_examples=40, deadline=None)
@given(hv=st.floats(1e-3, 8.0), r=st.floats(0.02, 1.0), lam0=st.floats(-4.0, 5.0),
       b=st.floats(-2.0, 2.0).filter(lambda v: abs(v) > 1e-3))
def test_dpmpp_2s_error_is_h2_b_times_phi1_half_minus_phi2(hv, r, lam0, b):
    got, exact, hv = _one_step_linear_D("dpmpp_2s", hv, lam0, 0.3, b, r=r)
    predicted = hv ** 2 * b * (phi(1, -hv) / 2 - phi(2, -hv))
    scale = abs(exact) + abs(b) * (abs(lam0) + hv) + 1.0
    assert abs((got - exact) - predicted) <= 1e-14 * scale * 4


@pytest.mark.parametrize("name", NAMES)
def test_linear_D_error_equals_minus_b_h2_psi2(name):
    tab = exp_rk.get_tableau(name)
    conds = {c.name: c.residual for c in exp_rk.stiff_order_conditions(tab, 2)}
    psi2 = sympy.lambdify(h, conds["(2)"], [MP, "mpmath"])
    for hv in (0.01, 0.3, 1.7, 6.0):
        got, exact, hv = _one_step_linear_D(name, hv, 0.4, 0.5, -1.3)
        with mpmath.workdps(50):
            pred = float(-(-1.3) * mpmath.mpf(hv) ** 2 * psi2(mpmath.mpf(hv)))
        assert abs((got - exact) - pred) <= 1e-13 * (1 + abs(exact)), (hv, got - exact, pred)
        # a constant D is integrated exactly by every method (condition (1))
        got, exact, _ = _one_step_linear_D(name, hv, 0.4, 0.5, 0.0)
        assert abs(got - exact) <= 1e-14 * (1 + abs(exact))


# ---------------------------------------------------------------------------------------------
# form, cache and validation
# ---------------------------------------------------------------------------------------------

def test_registered_and_shapes():
    for name in NAMES:
        assert name in STEP_METHODS
        co = step_coefficients(name, np.array([3.0, 2.0, 1.0]), np.array([2.0, 1.0, 1.0]))
        s = exp_rk.get_tableau(name).stages
        assert co.stage_w.shape == (3, s, s) and co.out_w.shape == (3, s)
        np.testing.assert_array_equal(co.stage_sigma[:, 0], [3.0, 2.0, 1.0])
        # a zero-length step is the identity
        assert co.out_x[2] == 1.0 and np.all(co.out_w[2] == 0) and np.all(co.stage_w[2] == 0)


def test_float_params_are_exact_and_cached():
    assert ss.exact_param(1 / 3, "c2") == sympy.Rational(1, 3)
    assert ss.exact_param(0.1, "c2") == sympy.Rational(1, 10)
    assert ss.exact_param(math.pi, "c2") == sympy.Rational(math.pi)
    a = step_coefficients("res_3s", np.array([2.0]), np.array([1.0]), c2=1 / 3, c3=2 / 3)
    b = step_coefficients("res_3s", np.array([2.0]), np.array([1.0]))
    np.testing.assert_array_equal(a.out_w, b.out_w)
    key = (("c2", sympy.Rational(1, 3)), ("c3", sympy.Rational(2, 3)))
    assert ss.compiled_tableau("res_3s", key) is ss.compiled_tableau("res_3s", key)


@pytest.mark.parametrize("name,params,match", [
    ("res_2s", {"c2": 0.0}, "c2 must lie in"),
    ("res_2s", {"c2": 1.5}, "c2 must lie in"),
    ("res_2s", {"c2": float("nan")}, "c2 must be finite"),
    ("dpmpp_2s", {"r": -0.5}, "r must lie in"),
    ("dpm_solver_2", {"r": 2.0}, "r must lie in"),
    ("dpm_solver_3", {"r1": 0.7, "r2": 0.5}, "r1 must be < r2"),
    ("res_3s", {"c2": 2 / 3}, "c2 must differ from 2/3"),
    ("res_3s", {"c2": 0.5, "c3": 0.5}, "singular"),
    ("euler", {"r": 0.5}, "no parameters"),
    ("res_2s", {"c3": 0.5}, "unknown parameter"),
])
def test_bad_params(name, params, match):
    with pytest.raises(ValueError, match=match):
        step_coefficients(name, np.array([2.0]), np.array([1.0]), **params)


def test_bad_sigmas():
    with pytest.raises(ValueError, match="sigma_to must be <= sigma_from"):
        step_coefficients("res_2s", np.array([1.0]), np.array([2.0]))
    with pytest.raises(TypeError, match="c2 must be a real number"):
        step_coefficients("res_2s", np.array([2.0]), np.array([1.0]), c2="half")
