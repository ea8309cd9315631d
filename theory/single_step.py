"""Named exponential RK tableaux compiled to the linear-step form (:mod:`.step_form`).

For a data-form tableau (:mod:`.exp_rk`; DESIGN.md "The linear-step representation")::

    stage_sigma[:, i] = sigma_from * e^{-c_i h}      stage_x[:, i] = e^{-c_i h}
    stage_w[:, i, j]  = h a_ij(h)                     out_x = e^{-h} = sigma_to / sigma_from
    out_w[:, i]       = h b_i(h)                      h = log(sigma_from / sigma_to) >= 0

Registered step methods (``step_coefficients(name, sigma_from, sigma_to, **params)``):

=============== ====================== ========================================================
name            params (default)       method
=============== ====================== ========================================================
``euler``       --                     exponential Euler = DDIM = DPM-Solver-1
``heun``        --                     EDM Heun (classical Heun in sigma, converted exactly)
``dpm_solver_2`` ``r`` (1/2)           DPM-Solver-2 (noise form, converted)
``dpm_solver_3`` ``r1, r2`` (1/3, 2/3) DPM-Solver-3 (noise form, converted)
``dpmpp_2s``    ``r`` (1/2)            DPM-Solver++(2S)
``res_2s``      ``c2`` (1/2)           RES 2-stage
``res_3s``      ``c2, c3`` (1/3, 2/3)  3-stage Hochbruck-Ostermann family (notes §2.5)
=============== ====================== ========================================================

Numeric evaluation.  Each coefficient ``f(h)`` (a sympy expression of the tableau) is compiled
once per parameter set (``functools.lru_cache``) into a vectorised float64 function:

* ``h <= 1``: its Taylor polynomial at ``h = 0`` with exact rational coefficients
  (:func:`~samplerlab.theory.exp_rk.taylor_coefficients`, 40 terms: truncation < 1e-30 since
  every exponent has ``|a| <= 1``), evaluated by Horner -- no cancellation for small ``h``, and
  coefficients that vanish as ``h -> 0`` keep full *relative* accuracy;
* ``h > 1``: ``sympy.lambdify`` of its phi-form onto the stable numeric
  :func:`~samplerlab.theory.phi_functions.phi`.

The per-grid call does no symbolic work beyond the cached lookup.  Measured accuracy against
50-digit mpmath evaluation of the symbolic expressions: see tests/test_single_step.py.

Float parameters are converted to exact rationals: a float within 1e-15 (relative) of a fraction
with denominator <= 10^6 becomes that fraction (so ``1/3`` given as a float is the node 1/3),
otherwise its exact binary value is used.
"""
from __future__ import annotations

import fractions
import functools
import math
import numbers
from typing import Callable, Dict, Tuple

import numpy as np
import sympy

from samplerlab.theory import exp_rk
from samplerlab.theory.exp_rk import h, taylor_coefficients
from samplerlab.theory.phi_functions import PHI_MODULE, expand_phi
from samplerlab.theory.step_form import StepCoefficients, register_step_method

__all__ = ["SINGLE_STEP_METHODS", "compiled_tableau", "tableau_step_coefficients",
           "exact_param", "TAYLOR_SWITCH", "TAYLOR_TERMS", "MAX_LIMIT_WEIGHT", "NODE_MIN",
           "PARAM_RANGES", "RANGE_RULE", "check_limit_weights", "compile_tableau",
           "step_coefficients_of"]

#: below this h the Taylor polynomial is used, above it the phi-form
TAYLOR_SWITCH = 1.0
#: number of Taylor terms
TAYLOR_TERMS = 40


def exact_param(value, name: str) -> sympy.Rational:
    """A real parameter as an exact sympy Rational (see the module docstring)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, sympy.Rational)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, (sympy.Rational, numbers.Rational)) and not isinstance(value, bool):
        fr = fractions.Fraction(int(sympy.Rational(value).p), int(sympy.Rational(value).q))
        return sympy.Rational(fr.numerator, fr.denominator)
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    fr = fractions.Fraction(v).limit_denominator(10 ** 6)
    if abs(float(fr) - v) > 1e-15 * abs(v):
        fr = fractions.Fraction(v)
    return sympy.Rational(fr.numerator, fr.denominator)


# ----------------------------------------------------------------------------------------------
# compile one coefficient
# ----------------------------------------------------------------------------------------------

def _compile_coefficient(expr) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised float64 ``f(h)`` for one tableau coefficient (Taylor / phi-form switch)."""
    expr = sympy.sympify(expr)
    if h not in expr.free_symbols:
        if expr.free_symbols:
            raise ValueError(f"coefficient {expr} has free parameters; give numeric parameters")
        val = float(expr)
        return lambda hh: np.full_like(hh, val)
    try:
        exact = taylor_coefficients(expr, TAYLOR_TERMS)
    except NotImplementedError:  # not an exp-polynomial (a user's rational function of h)
        ser = sympy.series(sympy.expand_func(expand_phi(expr)), h, 0, TAYLOR_TERMS).removeO()
        exact = [ser.coeff(h, k) for k in range(TAYLOR_TERMS)]
    taylor = np.array([float(t) for t in exact])[::-1]
    closed = sympy.lambdify(h, expr, modules=[PHI_MODULE, "numpy"])

    def f(hh: np.ndarray) -> np.ndarray:
        out = np.empty_like(hh)
        small = hh <= TAYLOR_SWITCH
        if small.any():
            out[small] = np.polyval(taylor, hh[small])
        if (~small).any():
            out[~small] = np.broadcast_to(closed(hh[~small]), hh[~small].shape)
        return out

    return f


class _Compiled:
    """Numeric functions of one tableau: node exponents, ``h a_ij(h)``, ``h b_i(h)``."""

    def __init__(self, tab: exp_rk.ExpRKTableau):
        s = tab.stages
        self.name = tab.name
        self.stages = s
        self.nodes = []
        for ci in tab.c:
            if h in sympy.sympify(ci).free_symbols:
                self.nodes.append(_compile_coefficient(sympy.exp(-ci * h)))
            else:
                self.nodes.append(float(ci))
        self.w = {(i, j): _compile_coefficient(sympy.expand(h * tab.A[i, j]))
                  for i in range(s) for j in range(i) if tab.A[i, j] != 0}
        self.b = {i: _compile_coefficient(sympy.expand(h * tab.b[i]))
                  for i in range(s) if tab.b[i] != 0}

    def __call__(self, sf: np.ndarray, st: np.ndarray) -> StepCoefficients:
        m, s = sf.shape[0], self.stages
        hh = np.log(sf / st)
        ratio = st / sf
        stage_x = np.empty((m, s))
        for i, node in enumerate(self.nodes):
            if callable(node):
                stage_x[:, i] = node(hh)
            elif node == 0.0:
                stage_x[:, i] = 1.0
            elif node == 1.0:
                stage_x[:, i] = ratio
            else:
                stage_x[:, i] = np.exp(-node * hh)
        stage_sigma = sf[:, None] * stage_x
        for i, node in enumerate(self.nodes):   # grid points exactly, not via exp(log)
            if not callable(node) and node == 1.0:
                stage_sigma[:, i] = st
        stage_w = np.zeros((m, s, s))
        for (i, j), f in self.w.items():
            stage_w[:, i, j] = f(hh)
        out_w = np.zeros((m, s))
        for i, f in self.b.items():
            out_w[:, i] = f(hh)
        return StepCoefficients(stage_sigma=stage_sigma, stage_x=stage_x, stage_w=stage_w,
                                out_x=ratio, out_w=out_w)


@functools.lru_cache(maxsize=None)
def compiled_tableau(name: str, params: Tuple[Tuple[str, sympy.Rational], ...] = ()) -> _Compiled:
    """The compiled numeric tableau for ``name`` and exact parameters (cached)."""
    tab = exp_rk.get_tableau(name, **dict(params))
    check_limit_weights(tab)
    return _Compiled(tab)


@functools.lru_cache(maxsize=64)
def compile_tableau(tab: exp_rk.ExpRKTableau) -> _Compiled:
    """The compiled numeric form of any (validated, numeric) tableau, cached per tableau value
    (``tab.step_coefficients`` and ``solvers.register_exp_rk`` use it)."""
    if not isinstance(tab, exp_rk.ExpRKTableau):
        raise TypeError(f"tab must be an ExpRKTableau, got {type(tab).__name__}")
    check_limit_weights(tab)
    return _Compiled(tab)


def step_coefficients_of(tab: exp_rk.ExpRKTableau, sigma_from, sigma_to) -> StepCoefficients:
    """StepCoefficients of the tableau ``tab`` itself (no name lookup)."""
    sf, st = _check_sigmas(sigma_from, sigma_to)
    return compile_tableau(tab)(sf, st)


def _check_sigmas(sigma_from, sigma_to):
    sf = np.asarray(sigma_from, dtype=np.float64)
    st = np.asarray(sigma_to, dtype=np.float64)
    if np.any(st > sf):
        raise ValueError("sigma_to must be <= sigma_from elementwise (a step decreases the noise "
                         "level, h = log(sigma_from/sigma_to) >= 0)")
    return sf, st


def tableau_step_coefficients(name: str, sigma_from, sigma_to, **params) -> StepCoefficients:
    """StepCoefficients of the named tableau (params already validated and exact)."""
    sf, st = _check_sigmas(sigma_from, sigma_to)
    key = tuple(sorted(params.items()))
    return compiled_tableau(name, key)(sf, st)


# ----------------------------------------------------------------------------------------------
# parameter validation and registration
# ----------------------------------------------------------------------------------------------

#: bound on the entries of the h -> 0 limit tableau ``A(0), b(0)`` of every method: the step
#: weights are ``h a_ij(h) ~ h a_ij(0)``, ``h b_i(h) ~ h b_i(0)``, and a weight of size W multiplies
#: the denoiser's rounding error by W (while the weights themselves sum to ``1 - e^{-h} <= 1``).
MAX_LIMIT_WEIGHT = 1000.0

#: the smallest intermediate node of the one-node families (res_2s c2, dpmpp_2s / dpm_solver_2 r,
#: dpm_solver_3 r1, r2, res_3s c2, c3).  Derived from their limit tableaux (tests/test_registration.py
#: checks these closed forms against :func:`samplerlab.theory.exp_rk.limit_tableau`):
#: res_2s ``b(0) = (1 - 1/(2 c2), 1/(2 c2))``, dpmpp_2s and dpm_solver_2 the same in ``r``; so
#: ``max |entry| = 1/(2 c) <= W`` iff ``c >= 1/(2 W)``.  dpm_solver_3 has ``b3(0) = 1/(2 r2)`` and
#: ``a32(0) = r2^2/(2 r1) <= 1/(2 r1)``, so ``r1, r2 >= 1/(2 W)`` suffices.  res_3s has further
#: singular lines (c2 = c3, c2 = 2/3); its nodes get the same minimum and every compiled tableau is
#: checked against the bound (:func:`check_limit_weights`).
NODE_MIN = 1.0 / (2.0 * MAX_LIMIT_WEIGHT)

#: method -> parameter -> (low, high): the admissible closed interval of each node parameter
PARAM_RANGES: Dict[str, Dict[str, Tuple[float, float]]] = {
    "dpm_solver_2": {"r": (NODE_MIN, 1.0)},
    "dpmpp_2s": {"r": (NODE_MIN, 1.0)},
    "res_2s": {"c2": (NODE_MIN, 1.0)},
    "dpm_solver_3": {"r1": (NODE_MIN, 1.0), "r2": (NODE_MIN, 1.0)},
    "res_3s": {"c2": (NODE_MIN, 1.0), "c3": (NODE_MIN, 1.0)},
}

RANGE_RULE = (f"intermediate nodes >= 1/(2 W) = {NODE_MIN:g} keep every entry of the h -> 0 "
              f"limit tableau <= W = {MAX_LIMIT_WEIGHT:g} (samplerlab.theory.single_step)")


def check_limit_weights(tab: exp_rk.ExpRKTableau) -> None:
    """``ValueError`` if an entry of the ``h -> 0`` limit tableau exceeds :data:`MAX_LIMIT_WEIGHT`
    in magnitude (exact arithmetic, before anything is converted to float)."""
    A0, b0 = exp_rk.limit_tableau(tab)
    entries = [(f"a[{i + 1},{j + 1}](0)", A0[i, j]) for i in range(tab.stages) for j in range(i)]
    entries += [(f"b[{i + 1}](0)", b0[i]) for i in range(tab.stages)]
    for where, v in entries:
        if abs(v) > MAX_LIMIT_WEIGHT:
            params = ", ".join(f"{k}={float(p):.10g}" for k, p in tab.params) or "its coefficients"
            raise ValueError(f"{tab.name} with {params}: {where} = {float(v):.4g} exceeds the "
                             f"weight bound {MAX_LIMIT_WEIGHT:g} in magnitude (the step would "
                             f"amplify the denoiser's rounding error by that much); choose nodes "
                             f"further apart / away from 0")


def _node(value, name, method):
    v = exact_param(value, name)
    low, high = PARAM_RANGES[method][name]
    if not (exact_param(low, name) <= v <= exact_param(high, name)):
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {value!r} ({RANGE_RULE})")
    return v


def _no_params(**params):
    if params:
        raise ValueError(f"this method takes no parameters, got {sorted(params)}")
    return {}


def _r_params(method):
    def params(r=0.5):
        return {"r": _node(r, "r", method)}
    return params


def _dpm3_params(r1=1 / 3, r2=2 / 3):
    p = {"r1": _node(r1, "r1", "dpm_solver_3"), "r2": _node(r2, "r2", "dpm_solver_3")}
    if not p["r1"] < p["r2"]:
        raise ValueError(f"r1 must be < r2, got r1={r1!r}, r2={r2!r}")
    return p


def _res2_params(c2=0.5):
    return {"c2": _node(c2, "c2", "res_2s")}


def _res3_params(c2=1 / 3, c3=2 / 3):
    p = {"c2": _node(c2, "c2", "res_3s"), "c3": _node(c3, "c3", "res_3s")}
    if p["c2"] == sympy.Rational(2, 3):
        raise ValueError("c2 must differ from 2/3 (the family's gamma is singular there)")
    gamma = (3 * p["c3"] ** 2 - 2 * p["c3"]) / (p["c2"] * (2 - 3 * p["c2"]))
    if gamma * p["c2"] + p["c3"] == 0 or p["c2"] == p["c3"]:
        raise ValueError(f"c2={c2!r}, c3={c3!r}: the weights b2, b3 are singular "
                         "(need c2 != c3 and gamma c2 + c3 != 0)")
    return p


#: name -> parameter validator (returns the exact parameters)
SINGLE_STEP_METHODS: Dict[str, Callable[..., dict]] = {
    "euler": _no_params,
    "heun": _no_params,
    "dpm_solver_2": _r_params("dpm_solver_2"),
    "dpm_solver_3": _dpm3_params,
    "dpmpp_2s": _r_params("dpmpp_2s"),
    "res_2s": _res2_params,
    "res_3s": _res3_params,
}


def _make(name, validator):
    def method(sigma_from, sigma_to, **params):
        try:
            exact = validator(**params)
        except TypeError as exc:
            if "unexpected keyword" in str(exc):
                raise ValueError(f"{name}: unknown parameter ({exc}); "
                                 f"see samplerlab.theory.single_step") from None
            raise
        return tableau_step_coefficients(name, sigma_from, sigma_to, **exact)

    method.__name__ = f"{name}_step_coefficients"
    method.__doc__ = f"StepCoefficients of the {name} tableau (see samplerlab.theory.exp_rk)."
    return method


for _name, _validator in SINGLE_STEP_METHODS.items():
    register_step_method(_name)(_make(_name, _validator))
del _name, _validator
