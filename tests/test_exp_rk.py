"""Exponential RK tableaux: stiff order conditions, derived named tableaux, residuals, bad input."""
import functools

import mpmath
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from samplerlab.theory import exp_rk
from samplerlab.theory.exp_rk import (EXP_RK_TABLEAUX, HEUN_SIGMA_TABLEAU, ExpRKTableau,
                                      check_stiff_conditions, exp_rk_from_sigma_rk, get_tableau,
                                      h, is_identically_zero, res_2s, res_3s, dpmpp_2s,
                                      dpm_solver_2, stiff_order_conditions, taylor_coefficients)
from samplerlab.theory.phi_functions import Phi, phi_mpmath
from samplerlab.theory.rk_conditions import rk_order

R = sympy.Rational
c2s, c3s = sympy.symbols("c2 c3", positive=True)


@functools.lru_cache(maxsize=None)
def _checks(name, order=3):
    return {r.name: r for r in check_stiff_conditions(get_tableau(name), order)}


def _same(a, b):
    return is_identically_zero(sympy.sympify(a) - b)


# ---------------------------------------------------------------------------------------------
# every named tableau satisfies exactly what it claims
# ---------------------------------------------------------------------------------------------

EXPECTED = {  # conditions of order <= 3 that hold identically in h
    "euler": {"psi_1,1", "(1)", "(4)"},
    "heun": {"psi_1,1", "psi_1,2", "(1)"},
    "dpm_solver_2": {"psi_1,1", "psi_1,2", "(1)"},
    "dpm_solver_3": {"psi_1,1", "psi_1,2", "psi_1,3", "(1)"},
    "dpmpp_2s": {"psi_1,1", "psi_1,2", "(1)"},
    "res_2s": {"psi_1,1", "psi_1,2", "(1)", "(2)"},
    "res_3s": {"psi_1,1", "psi_1,2", "psi_1,3", "(1)", "(2)", "(4)"},
}


@pytest.mark.parametrize("name", sorted(EXP_RK_TABLEAUX))
def test_claims_match_checked_conditions(name):
    tab = get_tableau(name)
    res = _checks(name)
    held = {k for k, r in res.items() if r.holds}
    assert held == EXPECTED[name] == set(tab.claims)
    for r in res.values():
        assert r.holds == r.symbolic_zero
        if r.holds:
            assert r.max_abs < 1e-40
        else:
            assert r.max_abs > 1e-6


def test_weak_conditions_and_classical_limits():
    # DPM-Solver++(2S): (2) fails, residual phi_2 - phi_1/2 = h/12 + O(h^2) (notes §2.4)
    r = _checks("dpmpp_2s")["(2)"]
    assert _same(r.residual, Phi(2, -h) - Phi(1, -h) / 2)
    assert r.holds_as_h_to_0 and _same(r.leading, h / 12)
    # exponential Euler: (2) residual is phi_2 itself (first order only)
    r = _checks("euler")["(2)"]
    assert _same(r.residual, Phi(2, -h)) and not r.holds_as_h_to_0
    # Heun: (2) residual phi_2(-h) - phi_1(h)/2 -> 0 (classical order 2), (3) does not vanish
    r = _checks("heun")["(2)"]
    assert _same(r.residual, Phi(2, -h) - Phi(1, h) / 2) and r.holds_as_h_to_0
    assert not _checks("heun")["(3)"].holds_as_h_to_0
    # DPM-Solver-2 (r = 1/2): (2) -h/6; DPM-Solver-3: (2) O(h^2), (3), (4) O(h) (classical order 3)
    assert _same(_checks("dpm_solver_2")["(2)"].leading, -h / 6)
    d3 = _checks("dpm_solver_3")
    assert _same(d3["(2)"].leading, h ** 2 / 108)
    assert d3["(3)"].holds_as_h_to_0 and d3["(4)"].holds_as_h_to_0
    # RES-3S: (3) only as h -> 0: residual phi_3 - phi_2/3 = h/72 + ...
    r = _checks("res_3s")["(3)"]
    assert _same(r.residual, Phi(3, -h) - Phi(2, -h) / 3) and _same(r.leading, h / 72)


def test_res_2s_family_solved():
    tab = res_2s(c2s)
    assert _same(tab.A[1, 0], c2s * Phi(1, -c2s * h))
    assert _same(tab.b[1], Phi(2, -h) / c2s)
    assert _same(tab.b[0], Phi(1, -h) - Phi(2, -h) / c2s)
    res = {r.name: r for r in check_stiff_conditions(tab, 3)}
    assert {k for k, r in res.items() if r.holds} == {"psi_1,1", "psi_1,2", "(1)", "(2)"}
    assert _same(res["(3)"].residual, Phi(3, -h) - c2s * Phi(2, -h) / 2)


def test_res_3s_family_matches_notes_and_claims():
    tab = res_3s(c2s, c3s)
    gamma = (3 * c3s ** 2 - 2 * c3s) / (c2s * (2 - 3 * c2s))
    p = lambda k, c: Phi(k, -c * h)  # noqa: E731
    # notes §2.5 closed forms (derived independently above by solving)
    a32 = gamma * c2s * p(2, c2s) + (c3s ** 2 / c2s) * p(2, c3s)
    b3 = Phi(2, -h) / (gamma * c2s + c3s)
    assert _same(tab.A[1, 0], c2s * p(1, c2s))
    assert _same(tab.A[2, 1], a32)
    assert _same(tab.A[2, 0], c3s * p(1, c3s) - a32)
    assert _same(tab.b[2], b3) and _same(tab.b[1], gamma * b3)
    assert _same(tab.b[0], Phi(1, -h) - (1 + gamma) * b3)
    res = {r.name: r for r in check_stiff_conditions(tab, 3, n_samples=2)}
    assert {k for k, r in res.items() if r.holds} == set(tab.claims)
    assert res["(3)"].holds_as_h_to_0
    # default c2 = 1/3, c3 = 2/3: gamma = 0, b2 = 0, a32 = (4/3) phi_2(-2h/3), b3 = (3/2) phi_2
    d = get_tableau("res_3s")
    assert d.b[1] == 0 and _same(d.A[2, 1], R(4, 3) * Phi(2, -R(2, 3) * h))
    assert _same(d.b[2], R(3, 2) * Phi(2, -h))


@pytest.mark.parametrize("c2,c3", [(R(1, 2), R(2, 3)), (R(1, 3), R(1, 2)), (R(1, 4), R(3, 4))])
def test_res4lyf_gamma_bug_drops_to_order_2(c2, c3):
    bad = {r.name: r for r in check_stiff_conditions(res_3s(c2, c3, gamma_formula="res4lyf"), 3)}
    good = {r.name: r for r in check_stiff_conditions(res_3s(c2, c3), 3)}
    assert good["(3)"].holds_as_h_to_0 and good["(4)"].holds
    assert not bad["(3)"].holds_as_h_to_0   # not even classical order 3
    # at h -> 0 the buggy weights violate sum b c^2 = 1/3
    tab = res_3s(c2, c3, gamma_formula="res4lyf")
    s0 = sum(taylor_coefficients(tab.b[i], 1)[0] * tab.c[i] ** 2 for i in range(3))
    assert s0 != R(1, 3)


def test_res4lyf_gamma_harmless_for_c3_equal_1():
    a = res_3s(R(1, 2), 1, gamma_formula="res4lyf")
    b = res_3s(R(1, 2), 1)
    assert all(_same(x, y) for x, y in zip(list(a.A) + list(a.b), list(b.A) + list(b.b)))


def test_dpmpp_2s_family():
    tab = dpmpp_2s(c2s)
    assert _same(tab.A[1, 0], c2s * Phi(1, -c2s * h))
    assert _same(tab.b[1], Phi(1, -h) / (2 * c2s))
    assert _same(tab.b[0], Phi(1, -h) * (1 - 1 / (2 * c2s)))


def test_dpm_solver_2_family_residual():
    res = {r.name: r for r in check_stiff_conditions(dpm_solver_2(c2s), 2, n_samples=2)}
    assert res["(1)"].holds and not res["(2)"].holds
    assert _same(res["(2)"].leading, -h * (6 * c2s - 1) / 12)


def test_heun_conversion():
    assert rk_order(*HEUN_SIGMA_TABLEAU) == 2
    tab = get_tableau("heun")
    assert tuple(tab.c) == (0, 1)
    assert _same(tab.A[1, 0], Phi(1, -h))
    assert _same(tab.b[0], Phi(1, -h) - Phi(1, h) / 2)
    assert _same(tab.b[1], Phi(1, h) / 2)
    # Euler in sigma is exactly exponential Euler (DDIM)
    eul = exp_rk_from_sigma_rk("sigma_euler", [[0]], [1])
    assert _same(eul.b[0], get_tableau("euler").b[0])


# ---------------------------------------------------------------------------------------------
# numeric: conditions claimed hold at random h, to 40 digits (hypothesis)
# ---------------------------------------------------------------------------------------------

def _mp(expr, syms):
    mod = {"Phi": lambda k, z: phi_mpmath(int(k), z, 45)}
    return sympy.lambdify(syms, expr, modules=[mod, "mpmath"])


@functools.lru_cache(maxsize=None)
def _family_residuals():
    fams = {"res_2s": res_2s(c2s), "res_3s": res_3s(c2s, c3s), "dpmpp_2s": dpmpp_2s(c2s)}
    out = {}
    for name, tab in fams.items():
        for cond in stiff_order_conditions(tab, 3):
            out[(name, cond.name)] = _mp(cond.residual, [h, c2s, c3s])
    return fams, out


@settings(max_examples=25, deadline=None)
@given(hv=st.floats(1e-3, 12.0), c2=st.floats(0.05, 1.0), c3=st.floats(0.05, 1.0))
def test_claimed_conditions_hold_numerically_for_random_h_and_params(hv, c2, c3):
    if abs(c2 - 2 / 3) < 1e-2 or abs(c2 - c3) < 1e-2:
        return  # res_3s singular there
    fams, fns = _family_residuals()
    with mpmath.workdps(45):
        for name, tab in fams.items():
            for cond in tab.claims:
                v = fns[(name, cond)](mpmath.mpf(hv), mpmath.mpf(c2), mpmath.mpf(c3))
                assert abs(v) < mpmath.mpf(10) ** -30, (name, cond, v)
            if name == "dpmpp_2s":   # the violated one has the predicted value
                v = fns[(name, "(2)")](mpmath.mpf(hv), mpmath.mpf(c2), mpmath.mpf(c3))
                hh = mpmath.mpf(hv)
                want = phi_mpmath(2, -hh, 45) - phi_mpmath(1, -hh, 45) / 2
                assert abs(v - want) < mpmath.mpf(10) ** -30


# ---------------------------------------------------------------------------------------------
# machinery
# ---------------------------------------------------------------------------------------------

def test_taylor_and_zero_test():
    assert is_identically_zero(Phi(2, -h) * h ** 2 - (h - 1 + sympy.exp(-h)))
    assert not is_identically_zero(Phi(2, -h) - Phi(1, -h) / 2)
    t = taylor_coefficients(Phi(2, -h) - Phi(1, -h) / 2, 3)
    assert t == [0, R(1, 12), -R(1, 24)]   # 1/2 - h/6 + h^2/24 - (1/2 - h/4 + h^2/12)
    with pytest.raises(ValueError, match="pole"):
        taylor_coefficients(1 / h + Phi(1, -h), 2)


def test_order_4_conditions_generated():
    names = [c.name for c in stiff_order_conditions(get_tableau("res_3s"), 4)]
    assert names[-4:] == ["(5)", "(6)", "(7)", "(8)"]
    res = {r.name: r for r in check_stiff_conditions(get_tableau("res_3s"), 4)}
    assert not any(res[k].holds for k in ("(5)", "(6)", "(7)"))
    # gamma = 0 at the default nodes makes b2 = 0 and psi_2,3 = 0, so (8) holds
    assert res["(8)"].holds and res["psi_1,3"].holds
    assert not any(res[k].holds_as_h_to_0 for k in ("(5)", "(6)", "(7)"))


def test_display():
    tab = get_tableau("res_2s")
    assert "phi_1(-h/2)" in tab.to_str() and "c2=1/2" in tab.to_str()
    assert r"\varphi_{2}" in tab.latex() and r"\begin{array}{c|cc}" in tab.latex()
    assert "φ" in tab.pretty() or "phi" in tab.pretty()
    ex = tab.explicit()
    assert not ex.b[1].atoms(Phi)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_bad_tableaux():
    with pytest.raises(ValueError, match="A must be an s x s"):
        ExpRKTableau("t", (0, R(1, 2)), [[0, 0]], [1, 0])
    with pytest.raises(ValueError, match="b must have length"):
        ExpRKTableau("t", (0, R(1, 2)), [[0, 0], [1, 0]], [1])
    with pytest.raises(ValueError, match="strictly lower triangular"):
        ExpRKTableau("t", (0, R(1, 2)), [[0, 1], [1, 0]], [1, 0])
    with pytest.raises(ValueError, match="strictly lower triangular"):
        ExpRKTableau("t", (R(1, 2),), [[Phi(1, -h)]], [1])
    with pytest.raises(ValueError, match="c must"):
        ExpRKTableau("t", [[0]], [[0]], [1])
    with pytest.raises(TypeError, match="b must be"):
        ExpRKTableau("t", (0,), [[0]], ["x"])
    with pytest.raises(ValueError, match="order"):
        stiff_order_conditions(get_tableau("euler"), 5)


def test_bad_names_and_params():
    with pytest.raises(ValueError, match="known: .*res_2s"):
        get_tableau("res_5s")
    with pytest.raises(ValueError, match="unknown"):
        get_tableau("res_2s", c3=0.5)
    with pytest.raises(ValueError, match="c2 must lie in"):
        res_2s(0)
    with pytest.raises(ValueError, match="c2 must lie in"):
        res_2s(1.5)
    with pytest.raises(ValueError, match="r must lie in"):
        dpmpp_2s(-0.1)
    with pytest.raises(ValueError, match="r1 must be < r2"):
        exp_rk.dpm_solver_3(R(2, 3), R(1, 3))
    with pytest.raises(ValueError, match="c2 must differ from 2/3"):
        res_3s(R(2, 3), R(1, 2))
    with pytest.raises(ValueError, match="gamma_formula"):
        res_3s(gamma_formula="foo")


# ---------------------------------------------------------------------------------------------
# samplerlab theory (CLI)
# ---------------------------------------------------------------------------------------------

def _cli(argv):
    import argparse

    from samplerlab.theory.cli import add_parser
    parser = argparse.ArgumentParser(prog="samplerlab")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_list_and_show(capsys):
    assert _cli(["theory", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXP_RK_TABLEAUX)
    assert _cli(["theory", "show", "dpmpp_2s", "--param", "r=1/3"]) == 0
    out = capsys.readouterr().out
    assert "c_2 = 1/3" in out and "b_2 = 3*phi_1(-h)/2" in out
    assert "residual = -phi_1(-h)/2 + phi_2(-h)" in out
    assert _cli(["theory", "show", "res_2s", "--latex"]) == 0
    out = capsys.readouterr().out
    assert r"\begin{array}" in out and r"\varphi_{2}\left(- h\right)" in out


def test_cli_errors(capsys):
    assert _cli(["theory", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown name 'nope'" in err and "res_3s" in err
    assert _cli(["theory", "show", "res_2s", "--param", "c2=2"]) == 2
    assert "c2 must lie in" in capsys.readouterr().err
    assert _cli(["theory", "show", "res_2s", "--param", "c2"]) == 2
    assert _cli(["theory", "show", "euler", "--param", "r=1"]) == 2
    assert "unknown" in capsys.readouterr().err
