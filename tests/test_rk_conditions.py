"""Classical RK order from rooted trees: textbook tableaux, perturbations, bad input."""
import math
from fractions import Fraction as F

import numpy as np
import pytest
import sympy

from samplerlab.theory.rk_conditions import (rk_condition_residuals, rk_order,
                                             rk_order_conditions, rooted_trees, tree_density,
                                             tree_order, tree_symmetry)

R = sympy.Rational

EULER = ([[0]], [1])
MIDPOINT = ([[0, 0], [R(1, 2), 0]], [0, 1])
HEUN = ([[0, 0], [1, 0]], [R(1, 2), R(1, 2)])
RALSTON = ([[0, 0], [R(2, 3), 0]], [R(1, 4), R(3, 4)])
KUTTA3 = ([[0, 0, 0], [R(1, 2), 0, 0], [-1, 2, 0]], [R(1, 6), R(2, 3), R(1, 6)])
RK4 = ([[0, 0, 0, 0], [R(1, 2), 0, 0, 0], [0, R(1, 2), 0, 0], [0, 0, 1, 0]],
       [R(1, 6), R(1, 3), R(1, 3), R(1, 6)])
RULE38 = ([[0, 0, 0, 0], [R(1, 3), 0, 0, 0], [R(-1, 3), 1, 0, 0], [1, -1, 1, 0]],
          [R(1, 8), R(3, 8), R(3, 8), R(1, 8)])
_DP_A = [[0] * 7,
         [R(1, 5)] + [0] * 6,
         [R(3, 40), R(9, 40)] + [0] * 5,
         [R(44, 45), R(-56, 15), R(32, 9)] + [0] * 4,
         [R(19372, 6561), R(-25360, 2187), R(64448, 6561), R(-212, 729)] + [0] * 3,
         [R(9017, 3168), R(-355, 33), R(46732, 5247), R(49, 176), R(-5103, 18656)] + [0] * 2,
         [R(35, 384), 0, R(500, 1113), R(125, 192), R(-2187, 6784), R(11, 84), 0]]
DOPRI5 = (_DP_A, list(_DP_A[6]))
# Butcher's 7-stage order-6 method (Hairer-Norsett-Wanner I, Sect. II.5)
_B6_A = [[0] * 7,
         [R(1, 3)] + [0] * 6,
         [0, R(2, 3)] + [0] * 5,
         [R(1, 12), R(1, 3), R(-1, 12)] + [0] * 4,
         [R(-1, 16), R(9, 8), R(-3, 16), R(-3, 8)] + [0] * 3,
         [0, R(9, 8), R(-3, 8), R(-3, 4), R(1, 2)] + [0] * 2,
         [R(9, 44), R(-9, 11), R(63, 44), R(18, 11), 0, R(-16, 11), 0]]
BUTCHER6 = (_B6_A, [R(11, 120), 0, R(27, 40), R(27, 40), R(-4, 15), R(-4, 15), R(11, 120)])
# implicit: 2-stage Gauss-Legendre (order 4), exact with sqrt(3)
_s3 = sympy.sqrt(3)
GAUSS2 = ([[R(1, 4), R(1, 4) - _s3 / 6], [R(1, 4) + _s3 / 6, R(1, 4)]], [R(1, 2), R(1, 2)])
# implicit midpoint (order 2), trapezoid (order 2)
IMPL_MID = ([[R(1, 2)]], [1])

CASES = [("euler", EULER, 1), ("midpoint", MIDPOINT, 2), ("heun", HEUN, 2),
         ("ralston", RALSTON, 2), ("kutta3", KUTTA3, 3), ("rk4", RK4, 4), ("3/8", RULE38, 4),
         ("dopri5", DOPRI5, 5), ("butcher6", BUTCHER6, 6), ("gauss2", GAUSS2, 4),
         ("implicit midpoint", IMPL_MID, 2)]


def test_tree_counts_and_densities():
    assert [len(rooted_trees(n)) for n in range(1, 8)] == [1, 1, 2, 4, 9, 20, 48]
    for n in range(1, 7):
        trees = rooted_trees(n)
        assert all(tree_order(t) == n for t in trees)
        assert len(set(trees)) == len(trees)
        # sum over trees of n!/(sigma gamma) = (n-1)^... : the number of labelled monotone
        # trees, sum alpha(t) = (n-1)!
        alpha = [math.factorial(n) // (tree_symmetry(t) * tree_density(t)) for t in trees]
        assert sum(alpha) == math.factorial(n - 1)
    # bushy tree of order 4 and tall tree of order 4
    assert tree_density(((), (), ())) == 4 and tree_density(((((),),),)) == 24
    assert len(rk_order_conditions(4)) == 8 and len(rk_order_conditions(6)) == 37


@pytest.mark.parametrize("name,tab,order", CASES, ids=[c[0] for c in CASES])
def test_textbook_orders_exact(name, tab, order):
    A, b = tab
    assert rk_order(A, b, max_order=6) == order
    c = [sum(r) for r in A]
    assert rk_order(A, b, c, max_order=6) == order


@pytest.mark.parametrize("name,tab,order", CASES[:9], ids=[c[0] for c in CASES[:9]])
def test_textbook_orders_float_and_fraction(name, tab, order):
    A, b = tab
    Af = np.array([[float(e) for e in r] for r in A])
    bf = np.array([float(e) for e in b])
    assert rk_order(Af, bf, max_order=6) == order
    Afr = [[F(int(sympy.fraction(e)[0]), int(sympy.fraction(e)[1])) for e in map(sympy.S, r)]
           for r in A]
    bfr = [F(int(sympy.fraction(sympy.S(e))[0]), int(sympy.fraction(sympy.S(e))[1])) for e in b]
    assert rk_order(Afr, bfr, max_order=6) == order


@pytest.mark.parametrize("name,tab,order", [c for c in CASES if c[2] >= 2],
                         ids=[c[0] for c in CASES if c[2] >= 2])
def test_perturbed_coefficient_lowers_order(name, tab, order):
    A, b = tab
    A2 = [list(r) for r in A]
    # perturb the last nonzero entry of the last row of A that has b_i != 0 (c not given, so it
    # follows the row sums)
    i = len(A2) - 1
    while all(e == 0 for e in A2[i]) or b[i] == 0:
        i -= 1
    j = max(k for k, e in enumerate(A2[i]) if e != 0)
    A2[i][j] = A2[i][j] + R(1, 1000)
    assert rk_order(A2, b, max_order=6) < order
    # perturb b while keeping sum b = 1: the order drops to 1
    if len(b) > 1:
        b2 = list(b)
        b2[0] += R(1, 1000)
        b2[-1] -= R(1, 1000)
        assert rk_order(A, b2, max_order=6) == 1
    # float path: a 1e-6 perturbation is detected with the default tolerance
    Af = np.array([[float(e) for e in r] for r in A2])
    Af[i, j] = float(A[i][j]) + 1e-6
    assert rk_order(Af, np.array([float(e) for e in b]), max_order=6) < order


def test_symbolic_family_two_stage():
    # the general explicit 2-stage family: a21 = c2, b2 = 1/(2 c2): order 2 identically
    c2 = sympy.Symbol("c2", positive=True)
    assert rk_order([[0, 0], [c2, 0]], [1 - 1 / (2 * c2), 1 / (2 * c2)]) == 2
    res = dict((cond.name, r) for cond, r in rk_condition_residuals(
        [[0, 0], [c2, 0]], [1 - 1 / (2 * c2), 1 / (2 * c2)], max_order=3))
    assert sympy.simplify(res["[tau, tau]"] - (c2 / 2 - R(1, 3))) == 0


def test_zero_order_and_max_order_cap():
    assert rk_order([[0]], [R(1, 2)]) == 0
    assert rk_order(*RK4, max_order=3) == 3


def test_bad_input():
    with pytest.raises(ValueError, match="A must be square"):
        rk_order([[0, 0], [1]], [R(1, 2), R(1, 2)])
    with pytest.raises(ValueError, match="A must be"):
        rk_order([0, 1], [1])
    with pytest.raises(ValueError, match="b must have length"):
        rk_order(*HEUN[:1], [1])
    with pytest.raises(ValueError, match="c must have length"):
        rk_order(HEUN[0], HEUN[1], [0])
    with pytest.raises(ValueError, match="c must equal the row sums"):
        rk_order(HEUN[0], HEUN[1], [0, R(1, 2)])
    with pytest.raises(ValueError, match="c must equal the row sums"):
        rk_order(np.array([[0.0, 0.0], [1.0, 0.0]]), [0.5, 0.5], [0.0, 0.9])
    with pytest.raises(ValueError, match="max_order"):
        rk_order(*HEUN, max_order=0)
    with pytest.raises(TypeError, match="b entries"):
        rk_order(HEUN[0], ["x", 1])
    with pytest.raises(ValueError, match="A must be finite"):
        rk_order(np.array([[0.0, 0.0], [np.nan, 0.0]]), [0.5, 0.5])
