"""The catalogue of named samplers: each one a few lines of data for a generic stepper.

Every entry names the coefficient set theory/ derives for it (``method``), its options with
defaults, its theoretical order and its paper. Nothing here computes a coefficient: the builders
below only route options to theory/ (once per grid) and, for the stochastic samplers, attach a
noise plan (:mod:`samplerlab.solvers.noise`).

Deviations between papers and their authors' code are documented in the theory/ function that
derives each coefficient set (follow the ``method`` name).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numpy as np

import samplerlab.theory  # noqa: F401  (registers every step method)
from samplerlab.theory.exp_rk import ParametrisedTableau, analyse_tableau, tableau_from_data
from samplerlab.theory.single_step import (PARAM_RANGES, RANGE_RULE, check_limit_weights,
                                           compile_tableau, exact_param)
from samplerlab.theory.step_form import step_coefficients
from samplerlab.theory.multistep import (MULTISTEP_METHODS, PREDICTIONS, MultistepCoefficients,
                                         multistep_coefficients, row_orders)
from samplerlab.theory.predictor_corrector import pc_coefficients
from samplerlab.theory.alpha_bar_chain import lookback_sigmas

from ._checks import check_positive_int
from .noise import ancestral_split, churn_levels
from .registry import (IMPLICIT, MULTI, PAPERS, PC, SINGLE, SOLVERS, OptionRange, SolverSpec,
                       register_spec)

__all__ = ["register_exp_rk", "register_multistep", "single_step_spec", "multistep_spec",
           "tableau_spec",
           "NOISE_RANGES"]


_PROBE_GRID = np.array([4.0, 2.0, 1.0])  # a small grid to read a method's stage count from

#: the ranges of the noise options, declared once (churn: EDM's S_churn >= 0)
NOISE_RANGES = {
    "eta": OptionRange(0.0, 1.0, cast=True, why="eta = 1: DDPM posterior variance, 0: DDIM"),
    "s_churn": OptionRange(0.0, None, cast=True, why="EDM's S_churn >= 0"),
}


def _node_ranges(method) -> dict:
    """The ranges theory/ derives for a named tableau's node parameters (single_step.PARAM_RANGES)."""
    if not isinstance(method, str):
        return {}
    return {k: OptionRange(lo, hi, why=RANGE_RULE)
            for k, (lo, hi) in PARAM_RANGES.get(method, {}).items()}


def single_step_spec(name, method, order, paper, summary, params=None, *, noise=None,
                     order_fn=None, validate=None, extra_params=None, builtin=True,
                     analysis=None, ranges=None) -> SolverSpec:
    """A single-step sampler running theory's step method ``method`` (a registered name or a
    method value such as an ``ExpRKTableau``).

    ``params``: options forwarded to theory (with defaults). ``noise``: None, 'ancestral' (option
    ``eta``), or 'choice' (options ``mode`` = 'ancestral' | 'churn', ``eta``, ``s_churn``). In churn
    mode the lift is EDM's ``gamma = min(s_churn / M, sqrt(2) - 1)`` per step (Karras et al. 2022,
    Alg. 2; RES Alg. 2), so the injected noise per step shrinks with the step count and the
    sampler converges to one SDE as M grows.
    ``extra_params(grid) -> dict`` adds grid-derived arrays (e.g. look-back sigmas).
    """
    if noise not in (None, "ancestral", "choice"):
        raise ValueError(f"noise must be None, 'ancestral' or 'choice', got {noise!r}")
    params = dict(params or {})
    defaults = dict(params)
    ranges = dict(_node_ranges(method), **(ranges or {}))
    if noise in ("ancestral", "choice"):
        defaults["eta"] = 1.0
        ranges["eta"] = NOISE_RANGES["eta"]
    if noise == "choice":
        defaults["mode"] = "ancestral"
        defaults["s_churn"] = 1.0
        ranges["s_churn"] = NOISE_RANGES["s_churn"]

    def theory_params(opts):
        return {k: opts[k] for k in params}

    def build(grid, opts):
        sf, st = grid[:-1], grid[1:]
        tp = theory_params(opts)
        if extra_params is not None:
            tp.update(extra_params(grid))
        mode = opts.get("mode", noise)
        if mode == "ancestral":
            down, up = ancestral_split(sf, st, opts["eta"])
            return dataclasses.replace(step_coefficients(method, sf, down, **tp), post_noise=up)
        if mode == "churn":
            hat, lift = churn_levels(sf, min(opts["s_churn"] / len(sf), math.sqrt(2.0) - 1.0))
            return dataclasses.replace(step_coefficients(method, hat, st, **tp), pre_noise=lift)
        return step_coefficients(method, sf, st, **tp)

    def nfe_per_step(opts):
        return build(_PROBE_GRID, opts).stages

    def check(opts):
        if "mode" in opts and opts["mode"] not in ("ancestral", "churn"):
            raise ValueError(f"mode must be 'ancestral' or 'churn', got {opts['mode']!r}")
        return validate(opts) if validate is not None else opts

    stochastic = noise is not None or method in ("li_ddpm", "li_accel_sde")
    return SolverSpec(name=name, family=SINGLE, order=order, stochastic=stochastic, paper=paper,
                      summary=summary, defaults=defaults, build=build, order_fn=order_fn,
                      nfe_per_step=nfe_per_step, validate=check, ranges=ranges, builtin=builtin,
                      method=method, analysis=analysis)


def _single(name, method, order, paper, summary, params=None, **kw):
    return register_spec(single_step_spec(name, method, order, paper, summary, params, **kw))


# single-step starters that keep a k-step method's order: starting step j needs local order >= k
# (global contribution O(h^{p+1}) from a fixed number of steps of order p = k - 1)
_STARTERS = {1: "euler", 2: "euler", 3: "res_2s", 4: "res_3s"}


def multistep_spec(name, coefficients, order, paper, summary, params=None, *, steps=None,
                   weights_order=None, validate=None, builtin=True, method=None) -> SolverSpec:
    """A linear multistep sampler; ``coefficients(grid, k, opts) -> MultistepCoefficients`` (the
    theory options of ``opts`` only) gives its weights with ``k`` past values on a grid.

    ``steps``: the number of past evaluations the weights use (default: ``order``); a user
    option ``order`` (when in ``params``) overrides it. Every multistep sampler takes the option
    ``warmup``: 'lower_order' (default, as DPM-Solver/diffusers/k-diffusion: step n < k-1 uses
    order n+1, 1 NFE each; the first step's O(h^2) local error limits the *asymptotic* global
    order to 2, usually invisible at practical M because the model is smooth at sigma_max) or
    'single_step' (the first k-1 steps by an exponential RK method of order k-1 — euler, res_2s,
    res_3s — whose first stage is the history evaluation: the order k is kept for extra NFE).

    ``order`` is the nominal order of the weights with ``k`` nodes (``order`` may be a user
    option); ``weights_order(opts, k)`` overrides it where the weights are of lower order than
    their node count (DPM-Solver++(3M), fixed-step iPNDM). The registry reports the *delivered*
    asymptotic order: that of the weights, capped at 2 under the default lower-order warm-up.
    """
    defaults = dict(params or {})
    defaults.setdefault("warmup", "lower_order")

    def build(grid, opts):
        o = dict(opts)
        k = o.pop("order", steps or order)
        warmup = o.pop("warmup")
        weights = coefficients(grid, k, o)
        starter = None
        if warmup == "single_step" and k > 2:
            n = min(k - 1, len(grid) - 1)
            starter = step_coefficients(_STARTERS[k], grid[:n], grid[1:n + 1])
        return weights, starter

    def delivered(opts):
        k = opts.get("order", steps or order)
        base = weights_order(opts, k) if weights_order is not None else k
        return base if (k <= 2 or opts["warmup"] == "single_step") else min(base, 2)

    def check(opts):
        if opts["warmup"] not in ("lower_order", "single_step"):
            raise ValueError(f"warmup must be 'lower_order' or 'single_step', got {opts['warmup']!r}")
        k = opts.get("order", steps or order)
        if opts["warmup"] == "single_step" and k not in _STARTERS:
            raise ValueError(f"warmup='single_step' supports order <= 4, got order {k}")
        return validate(opts) if validate is not None else opts

    return SolverSpec(name=name, family=MULTI, order=delivered(check(dict(defaults))),
                      stochastic=False, paper=paper, summary=summary, defaults=defaults,
                      build=build, order_fn=delivered, validate=check, builtin=builtin,
                      method=method)


def _multistep(name, method, order, paper, summary, params=None, **kw):
    """Register the built-in multistep sampler running theory's weight set ``method``."""
    def coefficients(grid, k, o):
        return multistep_coefficients(method, grid, k, **o)
    return register_spec(multistep_spec(name, coefficients, order, paper, summary, params,
                                        method=method, **kw))


# --- a user's own methods: the same builders, the same registration -------------------------

def register_exp_rk(name: str, c, A, b, *, params=None, paper: str = "", summary: str = "",
                    noise=None, overwrite: bool = False) -> SolverSpec:
    """Register an explicit exponential Runge-Kutta method given as data (DESIGN.md data form)::

        X_i = e^{-c_i h} x + h sum_{j<i} a_ij(h) D_j,    x_{n+1} = e^{-h} x + h sum_i b_i(h) D_i

    ``c``: the s nodes (numbers >= 0); ``A`` (s x s, strictly lower triangular) and ``b`` (s):
    numbers or sympy expressions in ``samplerlab.theory.exp_rk.h`` (phi-functions as
    ``samplerlab.theory.phi_functions.Phi(k, -c h)`` or ``samplerlab.theory.phi_sym``).

    theory/ validates the tableau (shapes, explicit, finite for 0 < h <= 50, analytic at h = 0,
    ``sum b = phi_1(-h)``, h -> 0 row sums = nodes; every limit-tableau entry <= the weight
    bound ``theory.single_step.MAX_LIMIT_WEIGHT``; ValueError/TypeError naming c, A or b),
    derives its stiff and classical orders (Hochbruck-Ostermann conditions up to 4, rooted trees
    of the h -> 0 limit) and compiles the coefficients once. The spec's ``.order`` is the derived
    order; ``.analysis`` the :class:`~samplerlab.theory.exp_rk.TableauAnalysis`. ``noise``: as
    the built-ins (None, 'ancestral', 'choice'; then the order is the weak order 1). Returns
    the registered :class:`SolverSpec` (``sample(name, ...)``, ``sample(spec, ...)``).

    ``params``: a family in named parameters, ``{"c2": (default, low, high)}``: the tableau's
    sympy Symbols of those names become sampler options with that default and closed range
    (declared once; ``ValueError`` naming the option outside it). The tableau is validated and
    checked against the weight bound at the default and at both ends of every range at
    registration, and at every new value on first use; ``.order`` is the derived order at the
    defaults, ``order_for(c2=...)`` derives it at other values.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier, got {name!r}")
    if name in SOLVERS and not overwrite:
        raise ValueError(f"sampler {name!r} is already registered; pass overwrite=True to "
                         f"replace it (or unregister({name!r}) first)")
    tab = tableau_from_data(name, c, A, b, source=paper)
    if params is None:
        return register_spec(tableau_spec(tab, paper=paper, summary=summary, noise=noise),
                             overwrite=overwrite)
    fam = _parametrised(tab, params)
    analysis = analyse_tableau(fam.at())
    ranges = {}
    for pname, default, low, high in fam.params:
        ranges[pname] = OptionRange(float(low), float(high), why="declared at registration")
        for end, which in ((low, "low"), (high, "high")):
            try:
                check_limit_weights(fam.at(**{pname: end}))
            except ValueError as exc:
                raise ValueError(f"params[{pname!r}]: at its {which} end {float(end):g}: "
                                 f"{exc}") from None
    check_limit_weights(fam.at())
    compile_tableau(fam.at())

    @functools.lru_cache(maxsize=64)
    def order_at(key):
        return analyse_tableau(fam.at(**dict(key))).order

    def order_fn(opts):
        if noise is not None:
            return 1
        return order_at(tuple(sorted((k, opts[k]) for k in fam.defaults)))

    text = summary or (f"user exponential RK, {tab.stages} stage(s), parameters "
                       f"{', '.join(fam.defaults)}: at the defaults stiff order "
                       f"{analysis.stiff_order}, classical {analysis.classical_order}")
    defaults = {k: float(v) for k, v in fam.defaults.items()}
    spec = single_step_spec(name, fam, analysis.order if noise is None else 1,
                            paper or "user-registered tableau", text, defaults, noise=noise,
                            builtin=False, analysis=analysis, ranges=ranges, order_fn=order_fn)
    return register_spec(spec, overwrite=overwrite)


def _parametrised(tab, params) -> ParametrisedTableau:
    """Check ``params`` against the tableau's symbols and build the family value."""
    if not isinstance(params, dict) or not params:
        raise TypeError(f"params must be a non-empty dict name -> (default, low, high), got "
                        f"{type(params).__name__}")
    symbols = {s.name for s in tab.free_symbols}
    missing = sorted(symbols - set(params))
    if missing:
        raise ValueError(f"params: the tableau uses symbols {missing} that params does not declare")
    rows = []
    for pname, spec in params.items():
        if not isinstance(pname, str) or not pname.isidentifier():
            raise ValueError(f"params: names must be identifiers, got {pname!r}")
        if pname not in symbols:
            raise ValueError(f"params: {pname!r} does not appear in c, A or b")
        if not isinstance(spec, (tuple, list)) or len(spec) != 3:
            raise ValueError(f"params[{pname!r}] must be (default, low, high), got {spec!r}")
        default, low, high = (exact_param(v, f"params[{pname!r}]") for v in spec)
        if not low <= default <= high:
            raise ValueError(f"params[{pname!r}]: need low <= default <= high, got {spec!r}")
        rows.append((pname, default, low, high))
    return ParametrisedTableau(tab.name, tab.c, tuple(tuple(r) for r in tab.A.tolist()),
                               tuple(tab.b), tuple(rows))


def tableau_spec(tab, *, paper: str = "", summary: str = "", noise=None) -> SolverSpec:
    """The (unregistered) :class:`SolverSpec` of an ``ExpRKTableau`` with numeric entries:
    validated, analysed and compiled as in :func:`register_exp_rk`."""
    if not tab.name.isidentifier():
        raise ValueError(f"the tableau's name must be a Python identifier, got {tab.name!r}")
    analysis = analyse_tableau(tab)
    check_limit_weights(tab)
    compile_tableau(tab)                                     # lambdify once, now
    order = analysis.order if noise is None else 1
    text = summary or (f"user exponential RK, {tab.stages} stage(s): stiff order "
                       f"{analysis.stiff_order}, classical {analysis.classical_order}")
    return single_step_spec(tab.name, tab, order, paper or tab.source or "user-registered tableau",
                            text, noise=noise, builtin=False, analysis=analysis)


def register_multistep(name: str, weights, *, prediction: str = "data", order: int,
                       lower_order_final: bool = False, paper: str = "", summary: str = "",
                       overwrite: bool = False) -> SolverSpec:
    """Register a linear multistep method ``x_{n+1} = out_x[n] x_n + sum_j w[n, j] F_{n-j}``.

    ``weights``: a theory weight set by name (``samplerlab.theory.multistep.MULTISTEP_METHODS``:
    'res', 'deis', 'lms', ... — the exact Lagrange/Adams integrals) or a function
    ``weights(sigmas, orders) -> (out_x [M], w [M, max(orders)])`` of the grid (float64 numpy,
    ``sigmas [M+1] > 0``; ``orders[n]`` = past values row n may use, from the warm-up).
    ``prediction``: 'data' (F = D) or 'noise' (F = eps = (x - D)/sigma). ``order``: the order
    of the weights with ``order`` past values (declared; ``samplerlab check`` measures it).
    The sampler takes the built-ins' option ``warmup`` ('lower_order' | 'single_step') and the
    delivered order follows the same rule (capped at 2 under the lower-order warm-up).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier, got {name!r}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be 'data' or 'noise', got {prediction!r}")
    order = check_positive_int(order, "order")
    if not isinstance(lower_order_final, bool):
        raise TypeError(f"lower_order_final must be a bool, got {type(lower_order_final).__name__}")
    if isinstance(weights, str):
        if weights not in MULTISTEP_METHODS:
            raise ValueError(f"weights must be a callable or one of {sorted(MULTISTEP_METHODS)}, "
                             f"got {weights!r}")
        method = weights

        def coefficients(grid, k, o):
            coeffs = multistep_coefficients(method, grid, k, lower_order_final=lower_order_final)
            if coeffs.prediction != prediction:
                raise ValueError(f"weights {method!r} are in {coeffs.prediction} form, not "
                                 f"prediction={prediction!r}")
            return coeffs
    elif callable(weights):
        fn = weights

        def coefficients(grid, k, o):
            orders = row_orders(len(grid) - 1, k, lower_order_final)
            got = fn(grid.copy(), orders.copy())
            if not isinstance(got, tuple) or len(got) != 2:
                raise TypeError(f"weights of {name!r} must return (out_x, w), got "
                                f"{type(got).__name__}")
            out_x, w = (np.asarray(v, dtype=np.float64) for v in got)
            m = len(grid) - 1
            if out_x.shape != (m,) or w.ndim != 2 or w.shape[0] != m or w.shape[1] > k:
                raise ValueError(f"weights of {name!r} must return out_x [{m}] and w [{m}, <= {k}]"
                                 f", got {out_x.shape} and {w.shape}")
            full = np.zeros((m, k))
            full[:, :w.shape[1]] = w
            return MultistepCoefficients(prediction=prediction, out_x=out_x, weights=full,
                                         orders=orders)
    else:
        raise TypeError(f"weights must be a callable or a theory weight-set name, got "
                        f"{type(weights).__name__}")
    spec = multistep_spec(name, coefficients, order, paper or "user-registered multistep method",
                          summary or f"user linear multistep method, {order} past values, "
                          f"{prediction} prediction", builtin=False, method=weights)
    return register_spec(spec, overwrite=overwrite)


def _predictor_corrector(name, method, order, paper, summary, params=None, *, order_fn=None,
                         validate=None):
    """Register a predictor-corrector sampler running theory's coefficient set ``method``."""
    defaults = dict(params or {})

    def build(grid, opts):
        o = dict(opts)
        k = o.pop("order")
        return pc_coefficients(method, grid, k, **o)

    return register_spec(SolverSpec(name=name, family=PC, order=order, stochastic=False,
                                paper=paper, summary=summary, defaults=defaults, build=build,
                                order_fn=order_fn, validate=validate))


def _order_option(supported):
    def check(opts):
        k = check_positive_int(opts["order"], "order")
        if k not in supported:
            raise ValueError(f"order must be one of {sorted(supported)}, got {k}")
        opts["order"] = k
        return opts
    return check


# --- classics: single step -----------------------------------------------------------------
_single("euler", "euler", 1, PAPERS["ddim"],
        "exponential Euler in lambda = DDIM = DPM-Solver-1 = Euler in sigma (VE): "
        "x' = (s'/s) x + (1 - s'/s) D(x, s)")
_single("heun", "heun", 2, PAPERS["edm"],
        "EDM's Heun (explicit trapezoid) in sigma for dx/dsigma = (x - D)/sigma; 2 NFE/step")
_single("dpm_solver_2", "dpm_solver_2", 2, PAPERS["dpm"],
        "DPM-Solver-2 (noise prediction, intermediate point at lambda + r h); 2 NFE/step",
        {"r": 0.5})
_single("dpm_solver_3", "dpm_solver_3", 3, PAPERS["dpm"],
        "DPM-Solver-3 (noise prediction, nodes r1, r2); 3 NFE/step", {"r1": 1 / 3, "r2": 2 / 3})
_single("dpmpp_2s", "dpmpp_2s", 2, PAPERS["dpmpp"],
        "DPM-Solver++(2S): data prediction, b2 = phi_1/(2r) (violates the stiff condition "
        "sum b c = phi_2); 2 NFE/step", {"r": 0.5})
_single("ddpm", "euler", 1, PAPERS["ddpm"],
        "ancestral sampler: Euler to sigma_down then + sigma_up z (eta = 1: DDPM posterior "
        "variance; eta = 0: DDIM). Weak order 1", noise="ancestral")

# --- seed 003: RES ---------------------------------------------------------------------------
_single("res_2s", "res_2s", 2, PAPERS["res"],
        "RES 2-stage: b2 = phi_2/c2, b1 = phi_1 - b2 (stiff order 2 for every h); 2 NFE/step",
        {"c2": 0.5})
_single("res_3s", "res_3s", 3, PAPERS["res"],
        "3-stage exponential RK of the Hochbruck-Ostermann family (notes §2.5, reconstructed); "
        "3 NFE/step", {"c2": 1 / 3, "c3": 2 / 3})
_single("res_sde", "res_2s", 1, PAPERS["res"],
        "stochastic RES: RES-2S after an ancestral split (mode='ancestral', eta) or inside EDM "
        "churn (mode='churn', gamma = min(s_churn/M, sqrt(2) - 1)); weak order 1", {"c2": 0.5}, noise="choice")

# --- seed 002: provably accelerated samplers (alpha-bar chain) --------------------------------
_single("li_ddim", "li_ddim", 1, PAPERS["li"],
        "DDIM-type update Y' = (Y + (1 - a_t)/2 s_t(Y))/sqrt(a_t) on the alpha-bar chain of the grid")
_single("li_ddpm", "li_ddpm", 1, PAPERS["li"],
        "DDPM-type update Y' = (Y + (1 - a_t) s_t(Y) + sqrt(1 - a_t) Z)/sqrt(a_t); weak order 1 "
        "on smooth targets (1/2 is the worst-case bound)")
_single("li_accel_ode", "li_accel_ode", 2, PAPERS["li"],
        "accelerated ODE sampler: DDIM-type step plus an AB2-type correction from the score at "
        "the look-back point Phi_t(Y_t) at time t+1; 2 NFE/step",
        extra_params=lambda grid: {"sigma_back": lookback_sigmas(grid)})
_multistep("li_accel_ode_1nfe", "li_accel_ode_1nfe", 2, PAPERS["li"],
           "the authors' 1-NFE practical accelerated ODE sampler: exact DDIM plus an arcsin-weighted "
           "correction (eps linear in alpha-bar through the last two evaluations)")
_single("li_accel_sde", "li_accel_sde", 1, PAPERS["li"],
        "accelerated SDE sampler: half the noise before the score call at Y+, half after; "
        "1 NFE/step, weak order 1 (constant ~2x smaller than DDPM-type on smooth targets)")


# --- seed 001: K-th order Lagrange sampler ----------------------------------------------------
def _lagrange_validate(opts):
    if opts["R"] is None:
        opts["R"] = opts["K"] - 1
    return opts


def _lagrange_order(opts):
    k, r = opts["K"], opts["R"]
    newton_cotes = k if k % 2 == 0 else k + 1
    return 1 if k == 1 else min(r + 1, newton_cotes)


_single("lagrange", "lagrange", 2, PAPERS["lagrange"],
        "K anchors equispaced in alpha-bar, Lagrange interpolation of the PF-ODE integrand "
        "gamma^-3/2 s, R Picard refinement rounds; 1 + R(K-1) NFE/step; order min(R+1, NC(K))",
        {"K": 2, "R": None}, validate=_lagrange_validate, order_fn=_lagrange_order,
        ranges={"K": OptionRange(1, None, integer=True, why="number of anchors"),
                "R": OptionRange(0, None, integer=True, why="Picard rounds; None: K - 1")})

# --- multistep classics -----------------------------------------------------------------------
_multistep("dpmpp_2m", "dpmpp", 2, PAPERS["dpmpp"],
           "DPM-Solver++(2M): x' = e^-h x + (1 - e^-h)[(1 + 1/(2r)) D_n - D_{n-1}/(2r)]",
           {"lower_order_final": True})
_multistep("dpmpp_3m", "dpmpp", 3, PAPERS["dpmpp"],
           "DPM-Solver++(3M) as written in the reference code (claimed third order; its D2 term is "
           "weighted h phi_3 where the exact integral needs 2 h phi_3, so it is second order — "
           "see theory.multistep; `res_3m` is the exact third-order method)",
           {"lower_order_final": True}, weights_order=lambda opts, k: 2)
_multistep("res_2m", "res", 2, PAPERS["res"],
           "RES multistep: exact exponential Adams integral, c2 = -h_prev/h (phi_2 where "
           "DPM-Solver++(2M) has phi_1/2)")
_multistep("res_3m", "res", 3, PAPERS["res"],
           "third-order exact exponential Adams (the RES multistep construction with three "
           "nodes; RES4LYF's res_3m); order 3 with warmup='single_step', 2 asymptotically "
           "with the default lower-order warm-up")
_multistep("deis", "deis", 3, PAPERS["deis"],
           "DEIS exponential Adams-Bashforth on eps, Lagrange in lambda (the log-rho variant); "
           "order k with warmup='single_step', 2 asymptotically with the default warm-up",
           {"order": 3}, validate=_order_option({1, 2, 3, 4}))
_multistep("ipndm", "ipndm", 4, PAPERS["ipndm"],
           "improved PNDM: fixed-step Adams-Bashforth weights on eps in sigma (order <= 4); on a "
           "non-uniform grid whose step ratios are 1 + O(h) that is second order at best; "
           "variable_step=True uses the exact variable-step weights (= lms)",
           {"order": 4, "variable_step": False},
           weights_order=lambda opts, k: k if opts["variable_step"] else min(k, 2),
           validate=_order_option({1, 2, 3, 4}))
_multistep("lms", "lms", 4, PAPERS["lms"],
           "linear multistep in sigma with exact Lagrange weights (no quadrature); order k with "
           "warmup='single_step', 2 asymptotically with the default warm-up",
           {"order": 4}, validate=_order_option({1, 2, 3, 4, 5, 6}))

# --- predictor-corrector ---------------------------------------------------------------------
def _unipc_order(opts):
    # UniC raises the predictor's order p to p+1; the first (warm-up) step is UniP-1 + UniC-1
    # (local O(h^3)), which caps the global order at 3; with lower_order_final the last step is
    # a corrector-free order-1 predictor step (local O(h^2)), which caps it at 2.
    return min(opts["order"] + 1, 2 if opts["lower_order_final"] else 3)


_predictor_corrector("unipc", "unipc", 2, PAPERS["unipc"],
                     "UniPC: UniP-p predictor + UniC corrector reusing the evaluation at the "
                     "predicted point (order p+1), B(h) variants bh1/bh2. With the official "
                     "defaults (lower_order_final, no final corrector) the last step is an "
                     "order-1 predictor step and the delivered order is 2; "
                     "lower_order_final=False gives p+1 (at most 3)",
                     {"order": 2, "variant": "bh1", "lower_order_final": True,
                      "final_corrector": False},
                     order_fn=_unipc_order, validate=_order_option({1, 2, 3}))
_predictor_corrector("f_ddim", "f_dpmsolver", 1, PAPERS["fv"],
                     "F-DDIM: DDIM lookahead from cached evaluations, then a data-form "
                     "forward-value step with D at the lookahead point; 1 NFE/step",
                     {"order": 1}, validate=_order_option({1}))
_predictor_corrector("f_dpmsolver", "f_dpmsolver", 1, PAPERS["fv"],
                     "F-DPMSolver-k: order-k noise-form multistep lookahead, first-order "
                     "forward-value corrector; 1 NFE/step; global order 1 (opposite-sign error)",
                     {"order": 2}, validate=_order_option({1, 2, 3}))


# --- the ideal forward value (implicit) --------------------------------------------------------
register_spec(SolverSpec(
    name="fv_ideal", family=IMPLICIT, order=1, stochastic=False, paper=PAPERS["fv"],
    summary="ideal forward value: x' = e^-h x + (1 - e^-h) D(x', s') solved by fixed-point "
            "iteration (theory checks; NFE depends on the iterations)",
    defaults={"tol": 1e-12, "max_iter": 5000},
    ranges={"tol": OptionRange(0.0, None, low_open=True, cast=True,
                               why="fixed-point tolerance in the state's units"),
            "max_iter": OptionRange(1, None, integer=True, why="fixed-point iterations")},
    build=lambda grid, opts: step_coefficients("euler", grid[:-1], grid[1:])))
