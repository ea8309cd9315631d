"""Symbolic leading local errors equal the notes' expressions and the measured one-step errors."""
import numpy as np
import pytest
import sympy as sp

from samplerlab.theory import local_error as le
from samplerlab.theory.alpha_bar_chain import alpha_bar_of_sigma  # noqa: F401 (registers li_*)
from samplerlab.theory.lagrange_sampler import lagrange_step  # noqa: F401 (registers lagrange)
from samplerlab.theory.step_form import step_coefficients

h, alpha, J = le.H, le.ALPHA, le.JAC
D1, D2, D3 = le.D_DERIVS
beta, a, r, v = le.BETA, le.ABAR, le.RATIO, le.VAR


# ---- symbolic results against the notes ------------------------------------------------------
def test_backward_and_forward_value_leading_terms_have_opposite_signs():
    assert sp.simplify(le.ddim_leading_error() - alpha * D1 * h ** 2 / 2) == 0
    assert sp.simplify(le.forward_value_leading_error() + alpha * D1 * h ** 2 / 2) == 0
    total = sp.expand(le.backward_value_local_error(3) + le.forward_value_local_error(3))
    assert sp.Poly(total, h).degree() == 3 and total.coeff(h, 2) == 0


def test_d1_parts_match_the_closed_forms_of_the_notes():
    """E_B = alpha D'(h - 1 + e^-h) + ..., E_F = -alpha D'(1 - e^-h - h e^-h) + ... (J = 0)."""
    eb = le.backward_value_local_error(4).coeff(D1)
    assert sp.expand(eb - sp.series(alpha * (h - 1 + sp.exp(-h)), h, 0, 5).removeO()) == 0
    ef = le.forward_value_local_error(3).subs(J, 0).coeff(D1)
    assert sp.expand(ef + sp.series(alpha * (1 - sp.exp(-h) - h * sp.exp(-h)), h, 0, 4).removeO()) == 0


def test_gaussian_sanity_multipliers_of_the_notes():
    """Data N(0, I): DDIM-type 1 + beta^2/8 + O(beta^3); accelerated 1 + beta^3 (1/16 - r/8)."""
    ddim = le.gaussian_chain_multiplier("li_ddim", 3).subs(v, 1)
    assert sp.expand(ddim - (1 + beta ** 2 / 8 + beta ** 3 / 8)) == 0
    assert sp.expand(le.gaussian_exact_multiplier().subs(v, 1)) == 1
    accel = le.gaussian_chain_multiplier("li_accel_ode", 3).subs(v, 1)
    assert sp.expand(accel - (1 + beta ** 3 * (sp.Rational(1, 16) - r / 8))) == 0
    assert sp.simplify(le.chain_leading_error("li_ddim", variance=1) + beta ** 2 / 8) == 0
    assert sp.simplify(le.chain_leading_error("li_accel_ode", variance=1)
                       + beta ** 3 * (sp.Rational(1, 16) - r / 8)) == 0
    # general v: local order 2 vs 3 in beta
    assert sp.Poly(le.chain_leading_error("li_ddim"), beta).degree() == 2
    assert sp.Poly(le.chain_leading_error("li_accel_ode"), beta).degree() == 3


def test_variance_excess_of_the_notes():
    ddpm = le.gaussian_chain_variance_excess("li_ddpm").subs(v, 1)
    sde = le.gaussian_chain_variance_excess("li_accel_sde").subs(v, 1)
    assert le.leading_term(ddpm, beta) == beta ** 2
    assert le.leading_term(sde, beta) == -beta ** 2 / 2


def test_describe_mentions_every_result():
    text = le.describe()
    for piece in ["D1*alpha*h**2/2", "-D1*alpha*h**2/2", "DDIM-type", "accelerated ODE",
                  "DDPM-type beta**2", "accelerated SDE -beta**2/2"]:
        assert piece in text


def test_bad_input():
    with pytest.raises(ValueError, match="order must be an integer in"):
        le.backward_value_local_error(7)
    with pytest.raises(ValueError, match="order must be an integer in"):
        le.forward_value_local_error(4)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        le.gaussian_chain_local_error("nope")
    with pytest.raises(ValueError, match="unknown method 'li_ddim'"):
        le.gaussian_chain_variance_excess("li_ddim")


# ---- numerical one-step checks on a Gaussian target ------------------------------------------
M_DATA, V_DATA = 0.3, 0.5


def path_derivatives(x0, s0):
    """D', D'' along the exact VE trajectory of N(m, v) data through (x0, s0), and J = dD/dx."""
    lam = sp.Symbol("lam")
    sig = sp.exp(-lam)
    d = M_DATA + V_DATA * (x0 - M_DATA) / sp.sqrt((V_DATA + sig ** 2) * (V_DATA + s0 ** 2))
    at = {lam: -np.log(s0)}
    return (float(sp.diff(d, lam).subs(at)), float(sp.diff(d, lam, 2).subs(at)),
            V_DATA / (V_DATA + s0 ** 2))


def one_step_errors(x0, s0, hh):
    s1 = s0 * np.exp(-hh)
    exact = M_DATA + np.sqrt((V_DATA + s1 ** 2) / (V_DATA + s0 ** 2)) * (x0 - M_DATA)
    den0 = M_DATA + V_DATA / (V_DATA + s0 ** 2) * (x0 - M_DATA)
    ddim = np.exp(-hh) * x0 + (1 - np.exp(-hh)) * den0
    c1, w = V_DATA / (V_DATA + s1 ** 2), 1 - np.exp(-hh)          # implicit solve, linear D
    fv = (np.exp(-hh) * x0 + w * (1 - c1) * M_DATA) / (1 - w * c1)
    return exact - ddim, exact - fv


def test_backward_forward_value_ratios_converge_to_prediction():
    s0 = 1.2
    x0 = M_DATA + 1.1 * np.sqrt(V_DATA + s0 ** 2)
    d1, d2, jac = path_derivatives(x0, s0)
    hs = 0.1 * 2.0 ** -np.arange(6)
    eb, ef = np.array([one_step_errors(x0, s0, hh) for hh in hs]).T
    rb, rf = eb / (d1 * hs ** 2 / 2), ef / (-d1 * hs ** 2 / 2)
    assert np.all(np.sign(eb) == -np.sign(ef))
    assert abs(rb[-1] - 1) < 0.01 and abs(rf[-1] - 1) < 0.01
    assert abs(rb[-1] - 1) < 0.6 * abs(rb[-2] - 1)               # deviation O(h)
    # For Gaussian data 3 D' J - D' + D'' = 0 identically: the h^3 term of E_B + E_F vanishes
    pred3 = -(3 * d1 * jac - d1 + d2) / 6
    assert abs(pred3) < 1e-14 * abs(d1)
    slopes = np.log2(np.abs(eb + ef)[:-1] / np.abs(eb + ef)[1:])
    assert abs(slopes[-1] - 4) < 0.1, slopes


def test_sum_of_backward_and_forward_errors_is_the_predicted_h3_term():
    """Non-linear D(x, lambda) = tanh(x)/2 + sin(lambda)/5 + x^2/10, dx/dlambda = D - x.

    E_B + E_F -> -alpha h^3 (3 D' J - D' + D'')/6 (alpha = 1), D', D'' the total derivatives of
    D along the trajectory, J = dD/dx; exact one step by DOP853 at rtol 1e-13.
    """
    from scipy.integrate import solve_ivp
    from scipy.optimize import brentq

    xs, lam = sp.symbols("x lam")
    d_expr = sp.tanh(xs) / 2 + sp.sin(lam) / 5 + xs ** 2 / 10
    total = lambda e: sp.diff(e, xs) * (d_expr - xs) + sp.diff(e, lam)   # d/dlambda along the flow
    x0, l0 = 0.4, 0.3
    at = {xs: x0, lam: l0}
    d1 = float(total(d_expr).subs(at))
    d2 = float(total(total(d_expr)).subs(at))
    jac = float(sp.diff(d_expr, xs).subs(at))
    pred = -(3 * d1 * jac - d1 + d2) / 6
    d_num = sp.lambdify((xs, lam), d_expr, "numpy")
    ratios = []
    for hh in 0.1 * 2.0 ** -np.arange(5):
        sol = solve_ivp(lambda t, y: d_num(y, t) - y, (l0, l0 + hh), [x0], method="DOP853",
                        rtol=1e-13, atol=1e-15)
        exact = sol.y[0, -1]
        e = np.exp(-hh)
        ddim = e * x0 + (1 - e) * d_num(x0, l0)
        fv = brentq(lambda z: z - e * x0 - (1 - e) * d_num(z, l0 + hh), x0 - 1, x0 + 1, xtol=1e-15)
        ratios.append(((exact - ddim) + (exact - fv)) / (pred * hh ** 3))
    ratios = np.array(ratios)
    assert abs(ratios[-1] - 1) < 0.02, ratios
    assert abs(ratios[-1] - 1) < 0.6 * abs(ratios[-2] - 1)


@pytest.mark.parametrize("method,power", [("li_ddim", 2), ("li_accel_ode", 3), ("lagrange_k1", 2)])
def test_chain_one_step_error_ratio_converges(method, power):
    """Compiled chain steps on N(0, v) VE data: (exact - numerical) / (C beta^p Y) -> 1."""
    a_t, v_data, ratio = 0.3, 0.5, 1.4
    lead = le.chain_leading_error(method)
    const = float((lead / beta ** power).subs({a: a_t, v: v_data, r: ratio}))
    s_from = np.sqrt(1 / a_t - 1)
    x0 = 0.8
    rats = []
    for b in 0.02 * 2.0 ** -np.arange(5):
        a_prev, a_back = a_t / (1 - b), a_t * (1 - ratio * b)
        s_to, s_back = np.sqrt(1 / a_prev - 1), np.sqrt(1 / a_back - 1)
        if method == "lagrange_k1":
            c = step_coefficients("lagrange", np.array([s_from]), np.array([s_to]), K=1)
        else:
            kw = {"sigma_back": np.array([s_back])} if method == "li_accel_ode" else {}
            c = step_coefficients(method, np.array([s_from]), np.array([s_to]), **kw)
        outs = []
        for j in range(c.stages):
            xj = c.stage_x[0, j] * x0 + sum(c.stage_w[0, j, k] * outs[k] for k in range(j))
            outs.append(v_data / (v_data + c.stage_sigma[0, j] ** 2) * xj)
        num = c.out_x[0] * x0 + sum(c.out_w[0, k] * outs[k] for k in range(c.stages))
        exact = np.sqrt((v_data + s_to ** 2) / (v_data + s_from ** 2)) * x0
        err_y = (exact - num) * np.sqrt(a_prev)              # VP units: Y = sqrt(abar) x
        rats.append(err_y / (const * b ** power * np.sqrt(a_t) * x0))
    rats = np.array(rats)
    assert abs(rats[-1] - 1) < 0.01, rats
    assert abs(rats[-1] - 1) < 0.6 * abs(rats[-2] - 1)


@pytest.mark.parametrize("method", ["li_ddpm", "li_accel_sde"])
def test_stochastic_variance_excess_matches(method):
    """Propagate the variance through the compiled StepCoefficients (VE) and compare."""
    a_t, v_data = 0.3, 0.5
    const = float((le.leading_term(le.gaussian_chain_variance_excess(method), beta) / beta ** 2)
                  .subs({a: a_t, v: v_data}))
    s_from = np.sqrt(1 / a_t - 1)
    rats = []
    for b in 0.02 * 2.0 ** -np.arange(5):
        a_prev = a_t / (1 - b)
        s_to = np.sqrt(1 / a_prev - 1)
        c = step_coefficients(method, np.array([s_from]), np.array([s_to]))
        var_x = v_data + s_from ** 2 + c.pre_noise[0] ** 2
        gain = c.out_x[0] + c.out_w[0, 0] * v_data / (v_data + c.stage_sigma[0, 0] ** 2)
        var_new = gain ** 2 * var_x + c.post_noise[0] ** 2
        excess_vp = (var_new - (v_data + s_to ** 2)) * a_prev
        rats.append(excess_vp / (const * b ** 2))
    rats = np.array(rats)
    assert abs(rats[-1] - 1) < 0.01, rats
