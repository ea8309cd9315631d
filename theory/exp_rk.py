"""Explicit exponential Runge-Kutta methods for the diffusion PF-ODE: tableaux, stiff order
conditions, and the named samplers derived symbolically.

Setting (DESIGN.md; RES notes, shared/papers/notes-accelerated-samplers-and-res.md §2.1-2.3).  In
``lambda = -log sigma`` (VE data variables) the PF-ODE is semilinear with linear part ``L = -1``::

    dx/dlambda = -x + D(x, lambda),         Z = h L = -h,   h = log(sigma_n / sigma_{n+1}) > 0.

An explicit exponential RK step in data-prediction form is::

    X_i     = e^{-c_i h} x_n + h sum_{j<i} a_ij(h) D_j,     D_j = D(X_j, lambda_n + c_j h)
    x_{n+1} = e^{-h}     x_n + h sum_i   b_i(h)  D_i

with ``a_ij``, ``b_i`` sympy expressions in the symbol :data:`h` (and parameters), usually written
with :class:`~samplerlab.theory.phi_functions.Phi` at ``-c_i h`` / ``-h``.

Stiff order conditions (Hochbruck & Ostermann, SIAM J. Numer. Anal. 43 (2005) 1069-1090,
Table 4.1; here from the standard theory as summarised in the RES notes §2.3 [reconstructed from
memory, not checked against the paper's text]).  With ``phi_j := phi_j(-h)`` and::

    psi_j     = phi_j(-h) - sum_i b_i c_i^(j-1)/(j-1)!
    psi_{j,i} = c_i^j phi_j(-c_i h) - sum_k a_ik c_k^(j-1)/(j-1)!

the conditions are (J, K arbitrary bounded operators; because ``L = -I`` is a multiple of the
identity every ``a_ij(Z), b_i(Z)`` is a scalar and J, K factor out, so the coupling conditions
become scalar sums)::

    stage  psi_{1,i} = 0                                  (each stage is an exponential-Euler step)
    order 1: (1) psi_1 = 0
    order 2: (2) psi_2 = 0
    order 3: (3) psi_3 = 0                 (4) sum_i b_i psi_{2,i} = 0
    order 4: (5) psi_4 = 0                 (6) sum_i b_i psi_{3,i} = 0
             (7) sum_{i,j} b_i a_ij psi_{2,j} = 0     (8) sum_i b_i c_i psi_{2,i} = 0

A condition that holds only as ``h -> 0`` (its classical limit) is reported as such
("weak" in Hochbruck-Ostermann's terminology).

Named tableaux (every coefficient is *derived*, not typed in):

* :func:`exponential_euler` -- ``euler`` (= DDIM = DPM-Solver-1 = DPM-Solver++(1)): (1) solved.
* :func:`res_2s` -- RES 2-stage family in ``c2`` (Zhang, Song & Chen 2023, arXiv 2308.02157,
  "Table 3"): ``a21, b1, b2`` solved from the stage condition, (1) and (2).
* :func:`res_3s` -- 3-stage family in ``(c2, c3)`` (Hochbruck-Ostermann construction as used by
  RES4LYF ``res_3s``; notes §2.5, reconstructed).
* :func:`dpmpp_2s` -- DPM-Solver++(2S) (Lu et al. 2022b, arXiv 2211.01095, Alg. 1), data form.
* :func:`dpm_solver_2`, :func:`dpm_solver_3` -- DPM-Solver-2/-3 (Lu et al. 2022, arXiv
  2206.00927, Alg. 1 and 2; official ``singlestep_dpm_solver_{second,third}_update``), noise
  form, converted by substituting ``eps = (x - D)/sigma`` (VE).
* :func:`heun` -- EDM's Heun (Karras et al. 2022, Alg. 1 without churn): classical Heun in sigma
  for ``dx/dsigma = (x - D)/sigma``, converted by :func:`exp_rk_from_sigma_rk`.

The noise-form / sigma-form methods are converted by running their update formulas on symbols
(:class:`_Trace`): stage inputs and the output come out linear in ``x_n`` and the ``D_j``; the
coefficient of ``x_n`` is checked to equal ``e^{-c_i h}`` (resp. ``e^{-h}``), the coefficient of
``D_j`` divided by ``h`` is ``a_ij`` (resp. ``b_j``), and ``exp(a)`` is rewritten exactly as
``1 + a phi_1(a)`` to give a readable phi-form.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Dict, List, Optional, Sequence, Tuple

import mpmath
import numpy as np
import sympy

from samplerlab.theory.phi_functions import Phi, expand_phi, phi_mpmath
from samplerlab.theory.rk_conditions import rk_order

__all__ = ["h", "ExpRKTableau", "StiffCondition", "ConditionCheck", "stiff_order_conditions",
           "check_stiff_conditions", "satisfied_conditions", "exponential_euler", "res_2s",
           "res_3s", "dpmpp_2s", "dpm_solver_2", "dpm_solver_3", "heun", "HEUN_SIGMA_TABLEAU",
           "exp_rk_from_sigma_rk", "EXP_RK_TABLEAUX", "get_tableau", "exp_poly_terms",
           "is_identically_zero", "taylor_coefficients", "tidy_phi_expr", "TableauAnalysis",
           "analyse_tableau", "validate_tableau", "tableau_from_data", "limit_tableau",
           "orders_from_checks", "MAX_ANALYSIS_ORDER", "H_MAX_CHECK", "ParametrisedTableau"]

#: the step size in lambda, ``h = log(sigma_n / sigma_{n+1})`` (positive symbol)
h = sympy.Symbol("h", positive=True)


# ----------------------------------------------------------------------------------------------
# exp-polynomials: exact zero test and Taylor coefficients at h = 0
# ----------------------------------------------------------------------------------------------

def exp_poly_terms(expr) -> Dict[Tuple, sympy.Expr]:
    """Write ``expr`` (phi's expanded) as ``sum coeff * h^i * exp(a h)``; return ``{(a, i): coeff}``.

    ``a`` and ``coeff`` are free of ``h`` (they may contain family parameters); ``i`` may be
    negative.  Raises ``NotImplementedError`` if ``expr`` is not of this form (e.g. ``log(h)``).
    Every tableau entry and residual of the named methods is such an exp-polynomial, which makes
    exact zero tests and exact Taylor coefficients cheap (functions ``h^i e^{a h}`` with distinct
    ``(a, i)`` are linearly independent).
    """
    e = sympy.expand(expand_phi(expr), power_base=False, log=False)
    out: Dict[Tuple, sympy.Expr] = {}
    for term in sympy.Add.make_args(e):
        term = sympy.powsimp(term, combine="exp")
        a, i, coeff = sympy.Integer(0), 0, sympy.Integer(1)
        for f in sympy.Mul.make_args(term):
            if f.func is sympy.exp:
                a += sympy.expand(f.args[0] / h)
            elif f == h:
                i += 1
            elif f.is_Pow and f.base == h and f.exp.is_Integer:
                i += int(f.exp)
            elif h not in f.free_symbols:
                coeff *= f
            else:
                raise NotImplementedError(f"not an exp-polynomial in h: factor {f}")
        if h in a.free_symbols:
            raise NotImplementedError(f"exponent not linear in h: {a}")
        a = sympy.expand(a)
        out[(a, i)] = out.get((a, i), 0) + coeff
    return {k: v for k, v in out.items() if not _zero_coefficient(v)}


def _zero_coefficient(v) -> bool:
    """Exact zero test for an h-free coefficient (a rational function of the parameters)."""
    v = sympy.cancel(v)
    if v == 0:
        return True
    if v.is_rational_function():
        return False
    return sympy.simplify(v) == 0


def tidy_phi_expr(expr):
    """Readable canonical form: expanded, collected on the ``phi_k`` atoms, factored coefficients."""
    expr = sympy.expand(expr)
    if expr == 0:
        return sympy.Integer(0)
    phis = sorted(expr.atoms(Phi), key=str)
    if not phis:
        return sympy.factor(expr)
    collected = sympy.collect(expr, phis, evaluate=False)
    out = sympy.Integer(0)
    for key, cf in collected.items():
        out += sympy.factor(cf) * key
    return out


def is_identically_zero(expr) -> bool:
    """Exact test ``expr == 0`` for all ``h`` (and parameters); sympy ``simplify`` fallback."""
    expr = sympy.sympify(expr)
    if expr == 0:
        return True
    try:
        return not exp_poly_terms(expr)
    except NotImplementedError:
        return sympy.simplify(expand_phi(expr)) == 0


def taylor_coefficients(expr, n: int) -> List[sympy.Expr]:
    """Exact Taylor coefficients ``[t_0, ..., t_{n-1}]`` of ``expr`` at ``h = 0``.

    ``expr`` must be an exp-polynomial (:func:`exp_poly_terms`) that is analytic at 0 (negative
    powers of ``h`` cancel); ``ValueError`` otherwise.  ``t_k = sum coeff a^(k-i)/(k-i)!``.
    """
    terms = exp_poly_terms(expr)
    if not terms:
        return [sympy.Integer(0)] * n
    kmin = min(i for (_, i) in terms)
    coeffs = []
    for k in range(min(kmin, 0), n):
        t = sum((cf * a ** (k - i) / sympy.factorial(k - i)
                 for (a, i), cf in terms.items() if i <= k), sympy.Integer(0))
        t = sympy.factor(sympy.cancel(t)) if not _zero_coefficient(t) else sympy.Integer(0)
        if k < 0:
            if t != 0:
                raise ValueError(f"expression has a pole at h = 0 (coefficient of h^{k}: {t})")
            continue
        coeffs.append(t)
    return coeffs


# ----------------------------------------------------------------------------------------------
# the tableau
# ----------------------------------------------------------------------------------------------

def _sym(value, name):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or sympy expression, got bool")
    if isinstance(value, float):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return sympy.Rational(repr(value))
    if isinstance(value, (numbers.Number, np.number, sympy.Basic)):
        return sympy.sympify(value)
    raise TypeError(f"{name} must be a number or sympy expression, got {type(value).__name__}")


def _vector(v, name):
    if isinstance(v, sympy.MatrixBase):
        if 1 not in v.shape:
            raise ValueError(f"{name} must be a vector, got shape {v.shape}")
        v = list(v)
    if isinstance(v, np.ndarray):
        if v.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
        v = v.tolist()
    if not isinstance(v, (list, tuple)) or any(isinstance(e, (list, tuple)) for e in v):
        raise ValueError(f"{name} must be a 1-D sequence")
    return tuple(_sym(e, name) for e in v)


def _is_zero(expr) -> bool:
    return is_identically_zero(expr)


@dataclasses.dataclass(frozen=True)
class ExpRKTableau:
    """An explicit exponential RK tableau in data-prediction form (module docstring).

    Parameters
    ----------
    name : str
    c : sequence of s nodes (numbers or sympy expressions; may depend on parameters, and on ``h``
        only for methods converted from another variable, see :func:`exp_rk_from_sigma_rk`).
    A : s x s strictly lower-triangular array of sympy expressions in ``h`` (``a_ij(h)``).
    b : s weights ``b_i(h)``.
    params : mapping parameter name -> value used (for display).
    claims : names of the stiff conditions the derivation guarantees (checked by the tests).
    source : where the method comes from.

    Raises ``ValueError`` naming ``c``, ``A`` or ``b`` for wrong shapes, and ``A`` when it is not
    strictly lower triangular (implicit methods are not supported).
    """

    name: str
    c: Tuple
    A: sympy.ImmutableMatrix
    b: sympy.ImmutableMatrix
    params: Tuple = ()
    claims: Tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("name must be a non-empty string")
        c = _vector(self.c, "c")
        s = len(c)
        if s == 0:
            raise ValueError("c must hold at least one node")
        A = self.A
        if isinstance(A, np.ndarray):
            A = A.tolist()
        if isinstance(A, sympy.MatrixBase):
            A = A.tolist()
        if (not isinstance(A, (list, tuple)) or len(A) != s
                or any(not isinstance(r, (list, tuple)) or len(r) != s for r in A)):
            raise ValueError(f"A must be an s x s array with s = len(c) = {s}")
        A = sympy.ImmutableMatrix([[_sym(e, "A") for e in r] for r in A])
        for i in range(s):
            for j in range(i, s):
                if not _is_zero(A[i, j]):
                    raise ValueError(f"A must be strictly lower triangular (explicit method); "
                                     f"a[{i + 1},{j + 1}] = {A[i, j]}")
        b = _vector(self.b, "b")
        if len(b) != s:
            raise ValueError(f"b must have length s = len(c) = {s}, got {len(b)}")
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", sympy.ImmutableMatrix(b))
        object.__setattr__(self, "params", tuple(dict(self.params).items()))
        object.__setattr__(self, "claims", tuple(self.claims))

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def free_symbols(self):
        """Symbols other than ``h`` (family parameters left symbolic)."""
        syms = set()
        for e in list(self.c) + list(self.A) + list(self.b):
            syms |= sympy.sympify(e).free_symbols
        syms.discard(h)
        return syms

    def stage_x(self, i: int):
        """Coefficient of ``x_n`` in stage ``i`` (0-based): ``e^{-c_i h}``."""
        return sympy.exp(-self.c[i] * h)

    def step_coefficients(self, sigma_from, sigma_to, **params):
        """The linear-step coefficients of this tableau (:mod:`.single_step`, compiled once)."""
        if params:
            raise ValueError(f"the tableau {self.name!r} takes no parameters, got {sorted(params)}")
        from samplerlab.theory.single_step import step_coefficients_of
        return step_coefficients_of(self, sigma_from, sigma_to)

    def explicit(self) -> "ExpRKTableau":
        """The same tableau with every ``phi_k`` written out in ``exp`` (:func:`expand_phi`)."""
        return dataclasses.replace(
            self, A=self.A.applyfunc(expand_phi), b=self.b.applyfunc(expand_phi))

    # --- display -----------------------------------------------------------------------------
    def to_str(self) -> str:
        s = self.stages
        lines = [f"{self.name}" + (f"  ({', '.join(f'{k}={v}' for k, v in self.params)})"
                                   if self.params else "")]
        if self.source:
            lines.append(f"  source: {self.source}")
        lines.append("  X_i = exp(-c_i h) x + h sum_j a_ij D_j ;  x_new = exp(-h) x + h sum_i b_i D_i")
        for i in range(s):
            lines.append(f"  c_{i + 1} = {self.c[i]}")
        for i in range(s):
            for j in range(i):
                if self.A[i, j] != 0:
                    lines.append(f"  a_{i + 1}{j + 1} = {self.A[i, j]}")
        for i in range(s):
            lines.append(f"  b_{i + 1} = {self.b[i]}")
        return "\n".join(lines)

    def pretty(self) -> str:
        s = self.stages
        out = [self.to_str().splitlines()[0]]
        for i in range(s):
            out.append(f"c_{i + 1} = " + sympy.pretty(self.c[i]))
        for i in range(s):
            for j in range(i):
                if self.A[i, j] != 0:
                    out.append(f"a_{i + 1}{j + 1} =\n" + sympy.pretty(self.A[i, j]))
        for i in range(s):
            out.append(f"b_{i + 1} =\n" + sympy.pretty(self.b[i]))
        return "\n".join(out)

    def latex(self) -> str:
        """Butcher array ``c | A // b^T`` in LaTeX."""
        s = self.stages
        rows = []
        for i in range(s):
            cells = [sympy.latex(self.A[i, j]) if j < i else "" for j in range(s)]
            rows.append(sympy.latex(self.c[i]) + " & " + " & ".join(cells) + r" \\")
        rows.append(r"\hline")
        rows.append(" & " + " & ".join(sympy.latex(e) for e in self.b) + r" \\")
        return (r"\begin{array}{c|" + "c" * s + "}\n" + "\n".join(rows) + "\n\\end{array}")


# ----------------------------------------------------------------------------------------------
# stiff order conditions
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StiffCondition:
    """One stiff order condition of a tableau: ``residual == 0`` is required."""

    name: str
    order: int
    statement: str
    residual: sympy.Expr


def _psi(tab: ExpRKTableau, j: int):
    """``psi_j = phi_j(-h) - sum_i b_i c_i^(j-1)/(j-1)!``."""
    return Phi(j, -h) - sum(tab.b[i] * tab.c[i] ** (j - 1) for i in range(tab.stages)) \
        / sympy.factorial(j - 1)


def _psi_stage(tab: ExpRKTableau, j: int, i: int):
    """``psi_{j,i} = c_i^j phi_j(-c_i h) - sum_k a_ik c_k^(j-1)/(j-1)!``."""
    ci = tab.c[i]
    return ci ** j * Phi(j, -ci * h) - sum(tab.A[i, k] * tab.c[k] ** (j - 1)
                                           for k in range(tab.stages)) / sympy.factorial(j - 1)


def stiff_order_conditions(tab: ExpRKTableau, order: int = 3) -> List[StiffCondition]:
    """The stage conditions ``psi_{1,i}`` and the conditions (1)..(4) [(5)..(8) for ``order = 4``]
    of Hochbruck & Ostermann (2005) for ``tab``, with their residuals (module docstring)."""
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or not 1 <= order <= 4:
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")
    if not isinstance(tab, ExpRKTableau):
        raise TypeError(f"tab must be an ExpRKTableau, got {type(tab).__name__}")
    s = tab.stages
    out = []
    for i in range(s):
        out.append(StiffCondition(f"psi_1,{i + 1}", 1,
                                  f"sum_j a_{i + 1}j = c_{i + 1} phi_1(-c_{i + 1} h)",
                                  _psi_stage(tab, 1, i)))
    out.append(StiffCondition("(1)", 1, "sum_i b_i = phi_1(-h)", _psi(tab, 1)))
    if order >= 2:
        out.append(StiffCondition("(2)", 2, "sum_i b_i c_i = phi_2(-h)", _psi(tab, 2)))
    if order >= 3:
        out.append(StiffCondition("(3)", 3, "sum_i b_i c_i^2/2 = phi_3(-h)", _psi(tab, 3)))
        out.append(StiffCondition("(4)", 3, "sum_i b_i psi_2,i = 0",
                                  sum(tab.b[i] * _psi_stage(tab, 2, i) for i in range(s))))
    if order >= 4:
        out.append(StiffCondition("(5)", 4, "sum_i b_i c_i^3/6 = phi_4(-h)", _psi(tab, 4)))
        out.append(StiffCondition("(6)", 4, "sum_i b_i psi_3,i = 0",
                                  sum(tab.b[i] * _psi_stage(tab, 3, i) for i in range(s))))
        out.append(StiffCondition("(7)", 4, "sum_i b_i sum_j a_ij psi_2,j = 0",
                                  sum(tab.b[i] * tab.A[i, j] * _psi_stage(tab, 2, j)
                                      for i in range(s) for j in range(s))))
        out.append(StiffCondition("(8)", 4, "sum_i b_i c_i psi_2,i = 0",
                                  sum(tab.b[i] * tab.c[i] * _psi_stage(tab, 2, i)
                                      for i in range(s))))
    return out


@dataclasses.dataclass(frozen=True)
class ConditionCheck:
    """Result of checking one condition (see :func:`check_stiff_conditions`).

    ``holds``: the residual vanishes identically in ``h`` (numerically to ``dps`` digits at
    random ``h``; ``symbolic_zero`` says whether sympy also simplified it to 0).
    ``holds_as_h_to_0``: the residual tends to 0 as ``h -> 0`` (classical / weak sense).
    ``leading``: leading term of the residual's expansion at ``h = 0`` (``None`` if it vanishes
    to the expansion order).  ``max_abs``: largest |residual| over the sample points.
    """

    name: str
    order: int
    statement: str
    residual: sympy.Expr
    holds: bool
    symbolic_zero: bool
    holds_as_h_to_0: bool
    leading: Optional[sympy.Expr]
    max_abs: float


def _tidy(expr):
    return tidy_phi_expr(expr)


def _sample_points(tab, n_samples, seed):
    rng = np.random.default_rng(seed)
    params = sorted(tab.free_symbols, key=str)
    pts = []
    for _ in range(n_samples):
        hv = float(np.exp(rng.uniform(np.log(0.05), np.log(8.0))))
        sub = {h: sympy.Rational(repr(round(hv, 6)))}
        for p in params:
            sub[p] = sympy.Rational(repr(round(float(rng.uniform(0.2, 0.9)), 6)))
        pts.append(sub)
    return pts


def _mp_function(expr, symbols, dps):
    """``expr`` as an mpmath function of ``symbols`` (Phi via :func:`phi_mpmath`)."""
    mod = {"Phi": lambda k, z: phi_mpmath(int(k), z, dps)}
    return sympy.lambdify(symbols, expr, modules=[mod, "mpmath"])


def _leading(res, series_order):
    """(leading term or None, tends to 0 as h -> 0) from the exact Taylor coefficients."""
    try:
        coeffs = taylor_coefficients(res, series_order)
    except NotImplementedError:
        ser = sympy.expand(sympy.series(res, h, 0, series_order).removeO())
        coeffs = [sympy.simplify(ser.coeff(h, k)) for k in range(series_order)]
    for k, t in enumerate(coeffs):
        if t != 0:
            return sympy.factor(t) * h ** k, k > 0
    return None, True


def check_stiff_conditions(tab: ExpRKTableau, order: int = 3, *, n_samples: int = 4,
                           seed: int = 0, dps: int = 50,
                           series_order: int = 4) -> List[ConditionCheck]:
    """Check every condition of :func:`stiff_order_conditions` for ``tab``.

    For each condition: the residual (phi-form, tidied); ``symbolic_zero`` from the exact
    exp-polynomial test :func:`is_identically_zero`; the numeric verdict at ``dps`` digits
    (``|r| <= 10^-(dps-10)``) at ``n_samples`` random points (``h`` log-uniform in [0.05, 8],
    free family parameters uniform in [0.2, 0.9]; seeded; phi's by :func:`phi_mpmath`, i.e.
    independent of the symbolic machinery); the leading term of the expansion at ``h = 0``
    (exact, up to ``h^(series_order-1)``).

    ``holds`` is the numeric verdict; if it disagrees with ``symbolic_zero`` a ``RuntimeError``
    is raised (it would be a bug in one of the two).
    """
    conds = stiff_order_conditions(tab, order)
    points = _sample_points(tab, n_samples, seed)
    symbols = [h] + sorted(tab.free_symbols, key=str)
    tol = mpmath.mpf(10) ** (-(dps - 10))
    out = []
    for cond in conds:
        res = _tidy(cond.residual)
        symbolic_zero = is_identically_zero(res)
        f = _mp_function(res, symbols, dps)
        with mpmath.workdps(dps):
            vals = [abs(f(*[mpmath.mpf(sympy.Rational(sub[x]).p) / sympy.Rational(sub[x]).q
                             for x in symbols])) for sub in points]
        max_abs = max(vals)
        holds = bool(max_abs <= tol)
        if symbolic_zero != holds:
            raise RuntimeError(f"{tab.name} {cond.name}: exact test says {symbolic_zero}, "
                               f"{dps}-digit evaluation gives |residual| = {max_abs}")
        leading, limit_ok = (None, True) if holds else _leading(res, series_order)
        out.append(ConditionCheck(cond.name, cond.order, cond.statement, res, holds,
                                  symbolic_zero, limit_ok, leading, float(max_abs)))
    return out


def satisfied_conditions(tab: ExpRKTableau, order: int = 3, **kwargs) -> Tuple[str, ...]:
    """Names of the conditions that hold identically (see :func:`check_stiff_conditions`)."""
    return tuple(r.name for r in check_stiff_conditions(tab, order, **kwargs) if r.holds)


# ----------------------------------------------------------------------------------------------
# conversion of update formulas written on symbols (noise form, sigma form) to the tableau
# ----------------------------------------------------------------------------------------------

class _Trace:
    """Records the denoiser calls of one step written on symbols (VE, ``sigma = sigma_n e^{-c h}``)."""

    def __init__(self):
        self.x = sympy.Symbol("x_n")
        self.sigma_n = sympy.Symbol("sigma_n", positive=True)
        self.nodes: List = []
        self.inputs: List = []
        self.outputs: List = []

    def sigma(self, c):
        return sympy.simplify(self.sigma_n * sympy.exp(-c * h))

    def denoise(self, c, X):
        """Data prediction ``D(X, sigma(c))``: returns a new symbol ``D_j``."""
        d = sympy.Symbol(f"D_{len(self.nodes) + 1}")
        self.nodes.append(sympy.sympify(c))
        self.inputs.append(sympy.sympify(X))
        self.outputs.append(d)
        return d

    def eps(self, c, X):
        """Noise prediction in VE variables, ``eps = (X - D(X, sigma))/sigma``."""
        return (X - self.denoise(c, X)) / self.sigma(c)


def _exp_to_phi(expr):
    """Readable phi-form of an exp-polynomial coefficient (exact rewriting).

    With ``n`` the highest power of ``1/h`` present (at least 1), every ``exp(a h)`` is replaced by
    ``sum_{j<n} (a h)^j/j! + (a h)^n phi_n(a h)``; because the coefficient is analytic at
    ``h = 0`` the negative powers of ``h`` then cancel exactly, leaving a polynomial in ``h`` and
    the ``phi_n``.
    """
    terms = exp_poly_terms(expr)
    if not terms:
        return sympy.Integer(0)
    n = max(1, -min(i for (_, i) in terms))
    out = sympy.Integer(0)
    for (a, i), cf in terms.items():
        if a == 0:
            out += cf * h ** i
            continue
        z = a * h
        out += cf * h ** i * (sum(z ** j / sympy.factorial(j) for j in range(n)) + z ** n * Phi(n, z))
    out = tidy_phi_expr(out)
    if any(e.is_Pow and e.base == h and e.exp.is_negative for e in out.atoms(sympy.Pow)):
        raise ValueError(f"coefficient is singular at h = 0: {out}")
    return out


def _linear_coefficients(expr, x, ds, what):
    expr = sympy.expand(expr)
    cx = expr.coeff(x)
    cds = [expr.coeff(d) for d in ds]
    rest = sympy.simplify(expr - cx * x - sum(cd * d for cd, d in zip(cds, ds)))
    if rest != 0:
        raise ValueError(f"{what} is not linear in x_n and the D_j (remainder {rest})")
    return cx, cds


def _tableau_from_trace(name, trace: _Trace, out, *, params=(), claims=(), source=""):
    s = len(trace.nodes)
    x = trace.x
    A = [[sympy.Integer(0)] * s for _ in range(s)]
    for i in range(s):
        cx, cds = _linear_coefficients(trace.inputs[i], x, trace.outputs, f"stage {i + 1} input")
        if not _is_zero(cx - sympy.exp(-trace.nodes[i] * h)):
            raise ValueError(f"{name}: stage {i + 1} has x-coefficient {cx}, not exp(-c h) -- "
                             "not representable in the data form")
        for j, cd in enumerate(cds):
            if j >= i and not _is_zero(cd):
                raise ValueError(f"{name}: stage {i + 1} uses D_{j + 1} (not explicit)")
            if j < i:
                A[i][j] = _exp_to_phi(cd / h)
    cx, cds = _linear_coefficients(out, x, trace.outputs, "output")
    if not _is_zero(cx - sympy.exp(-h)):
        raise ValueError(f"{name}: output has x-coefficient {cx}, not exp(-h)")
    for expr in [cx] + cds + [e for r in A for e in r]:
        if trace.sigma_n in sympy.sympify(expr).free_symbols:
            raise ValueError(f"{name}: coefficients depend on sigma_n")
    b = [_exp_to_phi(cd / h) for cd in cds]
    return ExpRKTableau(name, tuple(trace.nodes), A, b, params=params, claims=claims,
                        source=source)


# ----------------------------------------------------------------------------------------------
# parameter handling
# ----------------------------------------------------------------------------------------------

def _param(value, name, low=0, high=1, low_open=True, high_open=False):
    """A family parameter: a sympy Symbol (family left symbolic) or a number in the range."""
    if isinstance(value, sympy.Symbol):
        return value
    v = _sym(value, name)
    if not v.is_number or not v.is_real:
        raise ValueError(f"{name} must be a real number or a sympy Symbol, got {value!r}")
    bad_lo = v <= low if low_open else v < low
    bad_hi = v >= high if high_open else v > high
    if bad_lo or bad_hi:
        raise ValueError(f"{name} must lie in {'(' if low_open else '['}{low}, {high}"
                         f"{')' if high_open else ']'}, got {value!r}")
    return v


# ----------------------------------------------------------------------------------------------
# named tableaux
# ----------------------------------------------------------------------------------------------

def _solve_for(unknowns, equations, what):
    sol = sympy.solve(equations, unknowns, dict=True)
    if len(sol) != 1 or set(sol[0]) != set(unknowns):
        raise ValueError(f"{what}: conditions do not determine {unknowns} uniquely ({sol})")
    return {k: tidy_phi_expr(v) for k, v in sol[0].items()}


def _template(c, unknown_A: Dict, unknown_b: Sequence):
    """Tableau with symbolic unknowns, used to write the conditions to solve."""
    s = len(c)
    A = [[unknown_A.get((i, j), 0) for j in range(s)] for i in range(s)]
    return ExpRKTableau("template", tuple(c), A, list(unknown_b))


def _conditions_by_name(tab, order):
    return {cond.name: cond.residual for cond in stiff_order_conditions(tab, order)}


def exponential_euler() -> ExpRKTableau:
    """Exponential Euler ``x_{n+1} = e^{-h} x + h phi_1(-h) D(x)`` (= DDIM = DPM-Solver-1).

    ``b1`` is solved from condition (1).  Satisfies psi_1,1 and (1); (2) fails with residual
    ``phi_2(-h)``.
    """
    b1 = sympy.Symbol("b1")
    t = _template([0], {}, [b1])
    sol = _solve_for([b1], [_conditions_by_name(t, 1)["(1)"]], "euler")
    # (4) holds trivially: c_1 = 0 makes psi_2,1 = 0
    return ExpRKTableau("euler", (0,), [[0]], [sol[b1]], claims=("psi_1,1", "(1)", "(4)"),
                        source="exponential Euler = DDIM (Song et al. 2021) = DPM-Solver-1")


def res_2s(c2=sympy.Rational(1, 2)) -> ExpRKTableau:
    """RES 2-stage (Zhang, Song & Chen 2023, arXiv 2308.02157, "Table 3"; notes §2.4).

    Nodes ``(0, c2)``, ``c2`` in (0, 1] (a sympy Symbol gives the family).  ``a21, b1, b2`` are
    solved from psi_1,2 = 0, (1), (2)::

        a21 = c2 phi_1(-c2 h),  b2 = phi_2(-h)/c2,  b1 = phi_1(-h) - phi_2(-h)/c2.
    """
    c2 = _param(c2, "c2")
    a21, b1, b2 = sympy.symbols("a21 b1 b2")
    t = _template([0, c2], {(1, 0): a21}, [b1, b2])
    cond = _conditions_by_name(t, 2)
    sol = _solve_for([a21, b1, b2], [cond["psi_1,2"], cond["(1)"], cond["(2)"]], "res_2s")
    return ExpRKTableau("res_2s", (0, c2), [[0, 0], [sol[a21], 0]], [sol[b1], sol[b2]],
                        params={"c2": c2}, claims=("psi_1,1", "psi_1,2", "(1)", "(2)"),
                        source="RES, Zhang, Song & Chen 2023 (arXiv 2308.02157), Table 3 / Alg. 1")


def _res_3s_gamma(c2, c3, formula):
    if formula == "hochbruck_ostermann":
        return (3 * c3 ** 2 - 2 * c3) / (c2 * (2 - 3 * c2))
    if formula == "res4lyf":
        return (3 * c3 ** 3 - 2 * c3) / (c2 * (2 - 3 * c2))
    raise ValueError(f"gamma_formula must be 'hochbruck_ostermann' or 'res4lyf', got {formula!r}")


def res_3s(c2=sympy.Rational(1, 3), c3=sympy.Rational(2, 3), *,
           gamma_formula: str = "hochbruck_ostermann") -> ExpRKTableau:
    """3-stage exponential RK family in ``(c2, c3)`` (notes §2.5; RES4LYF ``res_3s``).

    [Reconstructed: the construction follows Hochbruck & Ostermann (2005) as used by RES4LYF;
    it is not confirmed in the RES paper.]  Derivation (each step solved with sympy):

    1. stage conditions psi_1,2 = psi_1,3 = 0 give ``a21`` and ``a31`` (in terms of ``a32``);
    2. ansatz ``b2 = gamma b3`` with a constant ``gamma``; then (4) factors as
       ``b3 (gamma psi_2,2 + psi_2,3) = 0`` and holds in the strong (operator) sense when
       ``gamma psi_2,2 + psi_2,3 = 0``, which gives ``a32``;
    3. (2) gives ``b3``, (1) gives ``b1``;
    4. ``gamma`` from (3) in the limit h -> 0 (``sum b_i c_i^2 = 1/3``)::

           gamma = (3 c3^2 - 2 c3) / (c2 (2 - 3 c2)).

    Result: psi_1,i, (1), (2), (4) hold for every h; (3) only as h -> 0.
    Default ``c2 = 1/3, c3 = 2/3`` (then ``gamma = 0``, ``b2 = 0``, ``a32 = (4/3) phi_2(-2h/3)``).

    **RES4LYF bug** (notes §2.5): RES4LYF writes ``3*c3**3`` in gamma.  ``gamma_formula="res4lyf"``
    reproduces it: then (3) fails even as h -> 0 (classical order 2) unless ``c3 = 1``.
    Requires ``c2, c3`` in (0, 1], ``c2 != 2/3`` and ``gamma c2 + c3 != 0``.
    """
    c2 = _param(c2, "c2")
    c3 = _param(c3, "c3")
    if c2 == sympy.Rational(2, 3):
        raise ValueError("c2 must differ from 2/3 (gamma = (3c3^2 - 2c3)/(c2(2 - 3c2)) is singular)")
    gamma = _res_3s_gamma(c2, c3, gamma_formula)
    if (gamma * c2 + c3).is_number and gamma * c2 + c3 == 0:
        raise ValueError("c2, c3 give gamma c2 + c3 = 0 (b3 is singular); choose other nodes")
    a21, a31, a32, b1, b3 = sympy.symbols("a21 a31 a32 b1 b3")
    t = _template([0, c2, c3], {(1, 0): a21, (2, 0): a31, (2, 1): a32}, [b1, gamma * b3, b3])
    cond = _conditions_by_name(t, 2)
    stage = _solve_for([a21, a31], [cond["psi_1,2"], cond["psi_1,3"]], "res_3s stages")
    # (4) with b2 = gamma b3:  b3 (gamma psi_2,2 + psi_2,3) = 0
    t1 = _template([0, c2, c3], {(1, 0): stage[a21], (2, 0): stage[a31], (2, 1): a32},
                   [b1, gamma * b3, b3])
    coupling = gamma * _psi_stage(t1, 2, 1) + _psi_stage(t1, 2, 2)
    sol32 = _solve_for([a32], [coupling], "res_3s a32")
    weights = _solve_for([b1, b3], [cond["(1)"], cond["(2)"]], "res_3s weights")
    A = [[0, 0, 0], [stage[a21], 0, 0],
         [tidy_phi_expr(stage[a31].subs(sol32)), sol32[a32], 0]]
    b = [weights[b1], tidy_phi_expr(gamma * weights[b3]), weights[b3]]
    name = "res_3s" if gamma_formula == "hochbruck_ostermann" else "res_3s_res4lyf"
    claims = ("psi_1,1", "psi_1,2", "psi_1,3", "(1)", "(2)", "(4)")
    return ExpRKTableau(name, (0, c2, c3), A, b, params={"c2": c2, "c3": c3}, claims=claims,
                        source="Hochbruck-Ostermann 3-stage family as in RES4LYF res_3s "
                               "(notes §2.5, reconstructed)")


def dpmpp_2s(r=sympy.Rational(1, 2)) -> ExpRKTableau:
    """DPM-Solver++(2S) (Lu et al. 2022b, arXiv 2211.01095, Alg. 1), VE data form, ``r`` in (0, 1].

    Update (``alpha = 1``): ``u = (sigma_s/sigma_n) x - (e^{-rh} - 1) D(x, sigma_n)``,
    ``x_{n+1} = (sigma_{n+1}/sigma_n) x - (e^{-h} - 1) [(1 - 1/(2r)) D_1 + (1/(2r)) D_2]``.
    Traced to ``a21 = r phi_1(-rh)``, ``b1 = (1 - 1/(2r)) phi_1(-h)``, ``b2 = phi_1(-h)/(2r)``.
    Satisfies psi_1,i and (1); (2) fails with residual ``phi_2(-h) - phi_1(-h)/2`` (notes §2.4).
    """
    r = _param(r, "r")
    tr = _Trace()
    x = tr.x
    d1 = tr.denoise(0, x)
    u = tr.sigma(r) / tr.sigma(0) * x - (sympy.exp(-r * h) - 1) * d1
    d2 = tr.denoise(r, u)
    out = tr.sigma(1) / tr.sigma(0) * x - (sympy.exp(-h) - 1) * (
        (1 - 1 / (2 * r)) * d1 + d2 / (2 * r))
    return _tableau_from_trace("dpmpp_2s", tr, out, params={"r": r},
                               claims=("psi_1,1", "psi_1,2", "(1)"),
                               source="DPM-Solver++(2S), Lu et al. 2022b (arXiv 2211.01095)")


def dpm_solver_2(r=sympy.Rational(1, 2)) -> ExpRKTableau:
    """DPM-Solver-2 (Lu et al. 2022, arXiv 2206.00927, Alg. 1), noise form, ``r`` in (0, 1].

    VE update (``alpha = 1``, ``eps = (x - D)/sigma``)::

        u       = x - sigma_s (e^{rh} - 1) eps(x, sigma_n)
        x_{n+1} = x - sigma_{n+1} (e^h - 1) eps_1 - sigma_{n+1}/(2r) (e^h - 1) (eps(u, sigma_s) - eps_1)

    converted to data form by tracing (module docstring).
    """
    r = _param(r, "r")
    tr = _Trace()
    x = tr.x
    e1 = tr.eps(0, x)
    u = x - tr.sigma(r) * (sympy.exp(r * h) - 1) * e1
    e2 = tr.eps(r, u)
    s_to = tr.sigma(1)
    out = x - s_to * (sympy.exp(h) - 1) * e1 - s_to / (2 * r) * (sympy.exp(h) - 1) * (e2 - e1)
    return _tableau_from_trace("dpm_solver_2", tr, out, params={"r": r},
                               claims=("psi_1,1", "psi_1,2", "(1)"),
                               source="DPM-Solver-2, Lu et al. 2022 (arXiv 2206.00927), noise "
                                      "form converted to data form")


def dpm_solver_3(r1=sympy.Rational(1, 3), r2=sympy.Rational(2, 3)) -> ExpRKTableau:
    """DPM-Solver-3 (Lu et al. 2022, arXiv 2206.00927, Alg. 2), noise form, ``0 < r1 < r2 <= 1``.

    VE update (``alpha = 1``; ``E(z) = (e^z - 1)``)::

        u1 = x - sigma_1 E(r1 h) eps_0
        u2 = x - sigma_2 E(r2 h) eps_0 - (r2/r1) sigma_2 (E(r2 h)/(r2 h) - 1) (eps(u1) - eps_0)
        x_{n+1} = x - sigma_{n+1} E(h) eps_0 - (1/r2) sigma_{n+1} (E(h)/h - 1) (eps(u2) - eps_0)

    converted to data form by tracing (module docstring).
    """
    r1 = _param(r1, "r1")
    r2 = _param(r2, "r2")
    if r1.is_number and r2.is_number and not r1 < r2:
        raise ValueError(f"r1 must be < r2, got r1={r1}, r2={r2}")
    E = lambda z: sympy.exp(z) - 1  # noqa: E731
    tr = _Trace()
    x = tr.x
    e0 = tr.eps(0, x)
    u1 = x - tr.sigma(r1) * E(r1 * h) * e0
    e1 = tr.eps(r1, u1)
    u2 = (x - tr.sigma(r2) * E(r2 * h) * e0
          - (r2 / r1) * tr.sigma(r2) * (E(r2 * h) / (r2 * h) - 1) * (e1 - e0))
    e2 = tr.eps(r2, u2)
    s_to = tr.sigma(1)
    out = x - s_to * E(h) * e0 - (1 / r2) * s_to * (E(h) / h - 1) * (e2 - e0)
    return _tableau_from_trace("dpm_solver_3", tr, out, params={"r1": r1, "r2": r2},
                               claims=("psi_1,1", "psi_1,2", "psi_1,3", "(1)"),
                               source="DPM-Solver-3, Lu et al. 2022 (arXiv 2206.00927), noise "
                                      "form converted to data form")


def exp_rk_from_sigma_rk(name, A_sigma, b_sigma, *, claims=(), source="") -> ExpRKTableau:
    """Convert an explicit classical RK tableau applied in ``sigma`` to ``dx/dsigma = (x - D)/sigma``
    into the data-form exponential tableau (exactly; no approximation).

    Stage ``i`` is evaluated at ``sigma_i = sigma_n + c_i (sigma_{n+1} - sigma_n)``, i.e. at the
    lambda-node ``c_i^lambda = -log(1 + c_i (e^{-h} - 1)) / h`` (``0 -> 0``, ``1 -> 1``).  The
    x-part ``dx/dsigma = x/sigma`` has the solution ``x ~ sigma``, which any consistent explicit
    RK integrates exactly, so the x-coefficients are ``e^{-c^lambda h}`` and ``e^{-h}`` as the
    data form requires (checked during the conversion).
    """
    if rk_order(A_sigma, b_sigma, max_order=1) < 1:
        raise ValueError("A_sigma, b_sigma: the sigma tableau must be consistent (sum b = 1)")
    As = sympy.Matrix(A_sigma)
    s = As.shape[0]
    for i in range(s):
        for j in range(i, s):
            if As[i, j] != 0:
                raise ValueError("A_sigma must be strictly lower triangular (explicit)")
    cs = [sum(As[i, :]) for i in range(s)]
    tr = _Trace()
    x = tr.x
    s_n = tr.sigma_n
    s_to = s_n * sympy.exp(-h)
    delta = s_to - s_n
    ks = []
    for i in range(s):
        ci = cs[i]
        if ci == 0:
            node = sympy.Integer(0)
        elif ci == 1:
            node = sympy.Integer(1)
        else:
            node = -sympy.log(1 + ci * (sympy.exp(-h) - 1)) / h
        Xi = x + delta * sum(As[i, j] * ks[j] for j in range(i))
        sig_i = s_n + ci * delta
        ks.append((Xi - tr.denoise(node, Xi)) / sig_i)
    out = x + delta * sum(sympy.sympify(b_sigma[i]) * ks[i] for i in range(s))
    return _tableau_from_trace(name, tr, out, claims=claims, source=source)


#: EDM's Heun in sigma (Karras et al. 2022, Alg. 1): classical Heun / explicit trapezoid.
HEUN_SIGMA_TABLEAU = ([[0, 0], [1, 0]], [sympy.Rational(1, 2), sympy.Rational(1, 2)])


def heun() -> ExpRKTableau:
    """EDM Heun (Karras et al. 2022, arXiv 2206.00364, Alg. 1 without churn) in data form.

    Classical Heun in sigma (``HEUN_SIGMA_TABLEAU``, classical order 2) converted exactly by
    :func:`exp_rk_from_sigma_rk`: nodes ``(0, 1)``, ``a21 = phi_1(-h)`` (the stage is the Euler
    step = exponential Euler), ``b1 = phi_1(-h) - phi_1(h)/2``, ``b2 = phi_1(h)/2``.
    """
    A, b = HEUN_SIGMA_TABLEAU
    return exp_rk_from_sigma_rk("heun", A, b, claims=("psi_1,1", "psi_1,2", "(1)"),
                                source="EDM Heun (Karras et al. 2022), classical Heun in sigma")


#: name -> (factory, default parameters) of every named tableau
EXP_RK_TABLEAUX = {
    "euler": (exponential_euler, {}),
    "heun": (heun, {}),
    "dpm_solver_2": (dpm_solver_2, {"r": sympy.Rational(1, 2)}),
    "dpm_solver_3": (dpm_solver_3, {"r1": sympy.Rational(1, 3), "r2": sympy.Rational(2, 3)}),
    "dpmpp_2s": (dpmpp_2s, {"r": sympy.Rational(1, 2)}),
    "res_2s": (res_2s, {"c2": sympy.Rational(1, 2)}),
    "res_3s": (res_3s, {"c2": sympy.Rational(1, 3), "c3": sympy.Rational(2, 3)}),
}


def get_tableau(name: str, **params) -> ExpRKTableau:
    """The named tableau with ``params`` overriding the defaults (``ValueError`` lists names)."""
    if name not in EXP_RK_TABLEAUX:
        raise ValueError(f"unknown tableau name {name!r}; known: {sorted(EXP_RK_TABLEAUX)}")
    factory, defaults = EXP_RK_TABLEAUX[name]
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f"{name} takes parameters {sorted(defaults) or 'none'}, "
                         f"got unknown {sorted(unknown)}")
    merged = dict(defaults)
    merged.update(params)
    return factory(**merged)


# ----------------------------------------------------------------------------------------------
# a user's tableau: validation and order analysis (issue 11, ``solvers.register_exp_rk``)
# ----------------------------------------------------------------------------------------------

#: highest order the analysis checks (Hochbruck-Ostermann conditions (1)-(8), trees of order <= 4)
MAX_ANALYSIS_ORDER = 4
#: a tableau's coefficients must be finite for 0 < h <= H_MAX_CHECK (a step with sigma ratio up
#: to e^50; h beyond it is not a step any grid takes)
H_MAX_CHECK = 50.0


def _leading_power(expr) -> Optional[int]:
    """Power of h of a leading term ``c h^k`` (None for None)."""
    if expr is None:
        return None
    _, k = sympy.Mul(expr).as_coeff_exponent(h)
    return int(k)


def orders_from_checks(checks: Sequence[ConditionCheck], max_order: int) -> Tuple[int, int]:
    """``(stiff, classical)`` order from :func:`check_stiff_conditions` results: stiff = largest
    ``p <= max_order`` whose conditions of order ``<= p`` all vanish identically in h; classical =
    largest p such that every condition of order ``j <= p`` vanishes identically or to
    ``O(h^(p+1-j))`` as h -> 0 (its leading Taylor term)."""
    stiff = classical = 0
    for p in range(1, max_order + 1):
        conds = [c for c in checks if c.order <= p]
        if all(c.holds for c in conds) and stiff == p - 1:
            stiff = p
        ok = all(c.holds or (_leading_power(c.leading) is not None and
                             _leading_power(c.leading) >= p + 1 - c.order) for c in conds)
        if ok and classical == p - 1:
            classical = p
    return stiff, classical


def limit_tableau(tab: ExpRKTableau) -> Tuple[sympy.Matrix, sympy.Matrix]:
    """``(A(0), b(0))``: the classical RK tableau the method reduces to as ``h -> 0`` (exact)."""
    def lim(e):
        try:
            return taylor_coefficients(e, 1)[0]
        except NotImplementedError:
            return sympy.limit(expand_phi(e), h, 0, "+")
    s = tab.stages
    A0 = sympy.Matrix(s, s, lambda i, j: lim(tab.A[i, j]) if j < i else 0)
    b0 = sympy.Matrix([lim(tab.b[i]) for i in range(s)])
    return A0, b0


@dataclasses.dataclass(frozen=True)
class TableauAnalysis:
    """What theory/ derives for an exponential RK tableau (:func:`analyse_tableau`).

    ``stiff_order``, ``classical_order``: from the Hochbruck-Ostermann conditions up to
    ``max_order`` (:func:`orders_from_checks`); ``underlying_order``: classical RK order of the
    ``h -> 0`` limit tableau ``(A(0), b(0), c)`` from rooted trees (:func:`rk_order`); ``checks``:
    every condition with its residual as a function of h and its leading term at h = 0.
    ``order``: the order a sampler built on it declares, ``min(classical, underlying)``.
    """

    tableau: ExpRKTableau
    stiff_order: int
    classical_order: int
    underlying_order: int
    max_order: int
    checks: Tuple[ConditionCheck, ...]
    limit_A: sympy.Matrix
    limit_b: sympy.Matrix

    @property
    def order(self) -> int:
        return min(self.classical_order, self.underlying_order)

    def violated(self) -> Tuple[ConditionCheck, ...]:
        return tuple(c for c in self.checks if not c.holds)

    def lines(self) -> List[str]:
        """One line per condition: name, statement, holds / residual and its leading term."""
        out = []
        for c in self.checks:
            if c.holds:
                out.append(f"{c.name:<8} order {c.order}  {c.statement}: holds for every h")
            else:
                lead = "does not vanish as h -> 0" if c.leading is None else f"leading {c.leading}"
                out.append(f"{c.name:<8} order {c.order}  {c.statement}: residual "
                           f"{c.residual}  ({lead})")
        return out


def _singular_points(expr) -> List[float]:
    """Positive h where ``expr`` (phi's allowed) has a pole: zeros of its denominator's factors
    (polynomial factors: exact real roots; others: sign changes on a dense log grid)."""
    e = sympy.together(expand_phi(sympy.sympify(expr)))
    den = sympy.denom(e)
    if h not in den.free_symbols:
        return []
    bad = []
    hs = np.geomspace(1e-4, H_MAX_CHECK, 2000)
    for f in sympy.Mul.make_args(sympy.factor(den)):
        base = f.base if f.is_Pow else f
        if h not in base.free_symbols or base == h or base.func is sympy.exp:
            continue
        if base.is_polynomial(h):
            for r in sympy.Poly(base, h).real_roots():
                if r > 0:
                    bad.append(float(r))
            continue
        fn = sympy.lambdify(h, base, "numpy")
        with np.errstate(all="ignore"):
            vals = np.broadcast_to(np.asarray(fn(hs), dtype=float), hs.shape)
        sign = np.sign(vals)
        hits = np.nonzero((sign[:-1] * sign[1:] <= 0) | ~np.isfinite(vals[:-1]))[0]
        bad.extend(float(hs[i]) for i in hits[:1])
    return bad


def validate_tableau(tab: ExpRKTableau) -> None:
    """Reject a tableau that cannot be a consistent explicit sampler (``ValueError`` naming the
    argument): nodes not real numbers >= 0; a free symbol other than ``h`` (give numbers); a
    coefficient with a pole at some ``0 < h <= H_MAX_CHECK`` or not analytic at ``h = 0``;
    ``sum_i b_i != phi_1(-h)`` (condition (1), consistency); stage rows whose ``h -> 0`` limit
    does not sum to the node (``sum_j a_ij(0) = c_i``, the classical row-sum convention)."""
    if tab.free_symbols:
        raise ValueError(f"A, b, c must be numbers or expressions in h only; found free symbols "
                         f"{sorted(map(str, tab.free_symbols))} (substitute their values, or "
                         f"declare them as options: register_exp_rk(..., params=...))")
    for i, ci in enumerate(tab.c):
        if h in ci.free_symbols:
            continue  # converted methods (heun) have h-dependent nodes
        if ci.free_symbols or not ci.is_real or ci < 0:
            raise ValueError(f"c must hold real numbers >= 0 (stage nodes in lambda), got "
                             f"c[{i}] = {ci}")
    entries = [("A", f"A[{i}][{j}]", tab.A[i, j]) for i in range(tab.stages) for j in range(i)]
    entries += [("b", f"b[{i}]", tab.b[i]) for i in range(tab.stages)]
    for arg, where, e in entries:
        if e == 0:
            continue
        poles = _singular_points(e)
        if poles:
            raise ValueError(f"{arg}: {where} = {e} is singular at h = {poles[0]:.6g} > 0; the "
                             f"coefficients must be finite for every step 0 < h <= {H_MAX_CHECK:g}")
        try:
            taylor_coefficients(e, 1)
        except ValueError as exc:
            raise ValueError(f"{arg}: {where} = {e} is not analytic at h = 0 ({exc})") from None
        except NotImplementedError:
            pass
    consistency = _psi(tab, 1)
    if not is_identically_zero(consistency):
        raise ValueError(f"b: sum_i b_i must equal phi_1(-h) (consistency, condition (1)); "
                         f"sum_i b_i - phi_1(-h) = {tidy_phi_expr(-consistency)}")
    A0, _ = limit_tableau(tab)
    for i in range(tab.stages):
        ci = tab.c[i]
        if h in ci.free_symbols:
            ci = sympy.limit(ci, h, 0, "+")
        row = sympy.nsimplify(sum(A0[i, :]))
        if sympy.simplify(row - ci) != 0:
            raise ValueError(f"A: row {i} must sum to c[{i}] = {ci} as h -> 0 (stage "
                             f"condition psi_1,{i + 1}: sum_j a_ij = c_i phi_1(-c_i h)); its "
                             f"h -> 0 row sum is {row}")


def analyse_tableau(tab: ExpRKTableau, max_order: int = MAX_ANALYSIS_ORDER) -> TableauAnalysis:
    """Validate ``tab`` (:func:`validate_tableau`) and derive its stiff, classical and underlying
    orders (:class:`TableauAnalysis`)."""
    validate_tableau(tab)
    checks = tuple(check_stiff_conditions(tab, max_order))
    stiff, classical = orders_from_checks(checks, max_order)
    A0, b0 = limit_tableau(tab)
    c0 = [sympy.limit(ci, h, 0, "+") if h in ci.free_symbols else ci for ci in tab.c]
    underlying = rk_order(A0.tolist(), list(b0), c0, max_order=max_order)
    return TableauAnalysis(tab, stiff, classical, underlying, max_order, checks, A0, b0)


def tableau_from_data(name: str, c, A, b, *, source: str = "") -> ExpRKTableau:
    """An :class:`ExpRKTableau` from user data (numbers or sympy expressions in :data:`h`, phi's
    via ``Phi(k, -c h)`` or ``phi_sym``); shape/explicitness errors name ``c``, ``A`` or ``b``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    for arg, v in (("c", c), ("b", b)):
        if isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
            raise TypeError(f"{arg} must be a sequence of numbers or sympy expressions, got "
                            f"{type(v).__name__}")
    if isinstance(A, (str, bytes)) or not hasattr(A, "__len__"):
        raise TypeError(f"A must be an s x s array of numbers or sympy expressions, got "
                        f"{type(A).__name__}")
    if isinstance(A, (list, tuple)):
        A = [list(r) if isinstance(r, (list, tuple, np.ndarray)) else r for r in A]
    return ExpRKTableau(name, tuple(c) if isinstance(c, (list, tuple)) else c, A,
                        list(b) if isinstance(b, (list, tuple)) else b, source=source)


@dataclasses.dataclass(frozen=True)
class ParametrisedTableau:
    """A family of exponential RK tableaux in named parameters (a user's method with options).

    ``c``, ``A``, ``b`` hold sympy Symbols named in ``params``; ``params`` is a tuple of
    ``(name, default, low, high)`` with exact rational defaults and closed ranges. :meth:`at`
    substitutes exact values (validated by :func:`validate_tableau` on first use of each value,
    cached) and :meth:`step_coefficients` compiles them (``samplerlab.theory.single_step``)."""

    name: str
    c: Tuple
    A: Tuple
    b: Tuple
    params: Tuple

    @property
    def symbols(self) -> Dict[str, sympy.Symbol]:
        out = {}
        for e in list(self.c) + [x for r in self.A for x in r] + list(self.b):
            for sym in sympy.sympify(e).free_symbols:
                if sym != h:
                    out[sym.name] = sym
        return out

    @property
    def defaults(self) -> Dict[str, sympy.Rational]:
        return {p[0]: p[1] for p in self.params}

    def at(self, **values) -> ExpRKTableau:
        """The numeric tableau at ``values`` (missing ones at their defaults; exact rationals)."""
        from samplerlab.theory.single_step import exact_param
        unknown = sorted(set(values) - set(self.defaults))
        if unknown:
            raise ValueError(f"{self.name} takes parameters {sorted(self.defaults)}, got {unknown}")
        merged = {**self.defaults, **values}
        key = tuple(sorted((k, exact_param(v, k)) for k, v in merged.items()))
        return _tableau_at(self, key)

    def step_coefficients(self, sigma_from, sigma_to, **values):
        return self.at(**values).step_coefficients(sigma_from, sigma_to)


_TABLEAU_AT_CACHE: Dict = {}


def _tableau_at(fam: ParametrisedTableau, key) -> ExpRKTableau:
    cache_key = (fam, key)
    if cache_key not in _TABLEAU_AT_CACHE:
        syms = fam.symbols
        sub = {syms[k]: v for k, v in key if k in syms}
        tab = ExpRKTableau(fam.name, tuple(sympy.sympify(e).subs(sub) for e in fam.c),
                           [[sympy.sympify(e).subs(sub) for e in r] for r in fam.A],
                           [sympy.sympify(e).subs(sub) for e in fam.b], params=dict(key))
        validate_tableau(tab)
        if len(_TABLEAU_AT_CACHE) > 256:
            _TABLEAU_AT_CACHE.clear()
        _TABLEAU_AT_CACHE[cache_key] = tab
    return _TABLEAU_AT_CACHE[cache_key]
