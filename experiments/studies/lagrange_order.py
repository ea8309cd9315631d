"""Study ``lagrange-order`` (seed 001): convergence order of the K-th order Lagrange sampler.

Paper: Li, Zhou, Wei, Chen, *Faster diffusion models via higher-order approximation* (arXiv
2506.24042). Its abstract claims Õ(d^{1+2/K} eps^{-1/K}) score evaluations for eps accuracy in TV,
i.e. at fixed d an error ~ (polylog T / T)^K and, at fixed T, a constant growing at most like
d^{K+2} (``(d^{1+2/K}/T)^K``). The algorithm is the RECONSTRUCTION of
shared/papers/notes-fdpmsolver-and-lagrange-sampler.md §2.3 (registry sampler ``lagrange``;
K anchors equispaced in alpha-bar, R Picard rounds, 1 + R(K-1) NFE per step), whose order the
notes measured as min(R+1, NC(K)) with NC(K) = K for even and K+1 for odd K (§3).

What is measured
----------------
* Defect (median over exact starting samples of ||x_T - x_ref||, reference: the exact PF-ODE
  solution, experiments.reference.solve_pf_ode) of ``lagrange`` with K = 1..4 (R = K-1) and
  (K, R) = (3, 3) on the notes' 1-D two-mode mixture, on the papers' schedule
  ``grids.li_grid`` (c0 = 1, c1 = 3, T = number of levels, T - 1 steps ending at
  alpha-bar_1 = 1 - 1/T). On that schedule every T is a different problem (both ends move with
  T), so each T gets its own starting points and reference. Orders are fitted against T, against
  the step size proxy 1/h with h = c1 log T / T (the notes' variable: the schedule's relative
  steps are h, so the error is ~ h^K up to the moving ends) and against NFE = (T-1)(1 + R(K-1)).
* The same on a log-SNR-uniform grid with fixed ends (sigma 80 -> 0.002; full run only), where
  the fitted slope vs the number of steps is the order without log factors.
* TV between the law of the sampler's output (the deterministic map applied to the exact
  marginal at the first level) and the exact marginal at the last level, by exact 1-D density
  propagation (experiments.metrics.tv_density_1d_deterministic; no Monte-Carlo noise). Where the
  map's image of the quadrature range misses target mass (K = 1 at small T), that mass counts in
  full: TV = integral + (1 - mass_p)/2 (q has all its mass inside the image).
* Dimension: defect at fixed T on GaussianMixture.random_anisotropic(d, 4, seed) for
  d = 1..32 (several seeds), fitted growth exponent a in defect ~ d^a per K, and the implied
  step-count exponent a/K (error ~ C(d) T^-K at fixed accuracy needs T ~ C(d)^{1/K}), compared
  with the paper's 1 + 2/K.
* Equal NFE: median defect of Lagrange K = 2, 3, 4 (R = K-1), DDIM (``euler``), the seed-002
  accelerated ODE sampler (``li_accel_ode``) and DPM-Solver-3 on the log-SNR-uniform grid with fixed
  ends (sigma 80 -> 0.002), each with the number of steps whose ledger-counted NFE equals the
  budget (budgets divisible by every sampler's NFE per step: 1, 2, 3, 5, 10).

Verdicts follow the written rules of ``studies.base`` (``order_verdict``: reproduced if the
interval contains K or the slope is within 5 % of K). The seed's complexity counts *iterations*,
Õ(d^(1+2/K) eps^(-1/K)), and score evaluations, d^(1+o(1)) eps^(-1/K) (seed 001, Theorem 1);
the paper's-number cells quote both.
"""
from __future__ import annotations

import math
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from samplerlab.experiments.convergence import defect_sweep, starting_points  # noqa: E402
from samplerlab.experiments.executors import map_calls  # noqa: E402
from samplerlab.experiments.reference import solve_pf_ode  # noqa: E402
from samplerlab.experiments.io import save_figure  # noqa: E402
from samplerlab.experiments.metrics import tv_density_1d_deterministic  # noqa: E402
from samplerlab.experiments.order import fit_power_law  # noqa: E402
from samplerlab.experiments.targets import GaussianMixture  # noqa: E402
from samplerlab.solvers import SOLVERS, grids  # noqa: E402

from .base import (Claim, Context, StudyResult, check_verdict, draw_figures,  # noqa: E402
                   fraction_verdict, order_verdict, register_study, worst_verdict)
from samplerlab.experiments.convergence import order_fields, safe_fit  # noqa: E402
from samplerlab.experiments.plotting import paper_label, slope_triangle  # noqa: E402

__all__ = ["run_lagrange_order", "CASES", "study_settings"]

STUDY = "lagrange-order"
PAPER = "Li, Zhou, Wei, Chen 2025 (arXiv 2506.24042), seed 001"
C0, C1 = 1.0, 3.0                      # the notes' schedule constants (§3)
LAMBDA_RANGE = (0.002, 80.0)           # log-SNR-uniform grid: sigma_min, sigma_max
CASES = ((1, None), (2, None), (3, None), (4, None), (3, 3))   # (K, R); R=None -> K-1
DIM_COMPONENTS = 4
#: equal-NFE comparison: (label, registry name, options), all on the log-SNR-uniform grid
EQUAL_NFE_CASES = (("Lagrange K=2", "lagrange", {"K": 2, "R": 1}),
                   ("Lagrange K=3", "lagrange", {"K": 3, "R": 2}),
                   ("Lagrange K=4", "lagrange", {"K": 4, "R": 3}),
                   ("DDIM (euler)", "euler", {}), ("li_accel_ode", "li_accel_ode", {}),
                   ("DPM-Solver-3", "dpm_solver_3", {}))
PAPER_COMPLEXITY = ("Õ(d^(1+2/K) eps^(-1/K)) iterations, d^(1+o(1)) eps^(-1/K) score evaluations "
                    "(Theorem 1)")


def study_settings(quick: bool) -> Dict:
    """Sizes of the quick (CI) and full runs."""
    if quick:
        return {"T_li": [64, 128, 256, 512], "n": 48, "lambda_steps": [],
                "tv_panels": 600, "tv_cases": [(2, None, [32])],
                "dims": [1, 4, 16], "dim_seeds": 1, "dim_T": 64, "dim_n": 32,
                "equal_nfe": [30, 60, 120], "equal_nfe_n": 32}
    return {"T_li": [32, 64, 128, 256, 512, 1024], "n": 200,
            "lambda_steps": [8, 16, 32, 64, 128, 256],
            "tv_panels": 1500,
            "tv_cases": [(1, None, [16, 32, 64, 128]), (2, None, [16, 32, 64, 128]),
                         (3, None, [16, 32, 64, 128]), (4, None, [16, 32, 64, 128])],
            "dims": [1, 2, 4, 8, 16, 32], "dim_seeds": 2, "dim_T": 128, "dim_n": 64,
            "equal_nfe": [30, 60, 120, 240, 480, 960], "equal_nfe_n": 200}


def _resolved(K, R):
    return K - 1 if R is None else R


def _label(K, R) -> str:
    return paper_label("lagrange", {"K": K, "R": R})


def _case(K, R):
    # check_grid=False: the sweep starts at T = 4 on purpose (the coarse, pre-asymptotic end of
    # the convergence curve, where K >= 3 Lagrange weights on steps of h ~ 3.5 amplify model
    # errors ~1e5-1e6x and the default grid guard refuses the grid); the errors measured there
    # are reported as they are, and the order fits drop the pre-asymptotic points
    return (_label(K, R), "lagrange", {"K": K, "R": R, "check_grid": False})


def _li_grid(T: int, ctx: Context) -> torch.Tensor:
    return grids.li_grid(T - 1, C0, C1, dtype=ctx.dtype, device=ctx.device)


def _inv_h(T: int) -> float:
    """1/h with the schedule's relative step h = c1 log T / T (notes §2.2)."""
    return T / (C1 * math.log(T))


def _defect_li(target, ctx: Context, s: Dict, i: int, T: int) -> List[dict]:
    """The rows of every case at T levels of the papers' schedule (one cell: T's own starting
    points, seed ``ctx.seed + 1000 + i``, and reference)."""
    sweep = defect_sweep(target, [_case(K, R) for K, R in CASES], [T - 1],
                         lambda m: _li_grid(m + 1, ctx), n=s["n"], seed=ctx.seed + 1000 + i)
    rows = []
    for (K, R), row in zip(CASES, sweep):
        rows.append({"grid": f"li(c0={C0:g},c1={C1:g})", "sampler": row["sampler"], "K": K,
                     "R": _resolved(K, R), "T": T, "steps": row["steps"],
                     "inv_h": _inv_h(T), "nfe": row["nfe"],
                     "nfe_formula": (T - 1) * (1 + _resolved(K, R) * (K - 1)),
                     **{k: row[k] for k in ("defect_mean", "defect_median", "defect_q90",
                                            "defect_max")}})
    return rows


def _defect_lambda(target, ctx: Context, s: Dict) -> List[dict]:
    if not s["lambda_steps"]:
        return []
    lo, hi = LAMBDA_RANGE
    sweep = defect_sweep(target, [_case(K, R) for K, R in CASES], s["lambda_steps"],
                         lambda m: grids.lambda_uniform(m, lo, hi, dtype=ctx.dtype,
                                                        device=ctx.device),
                         n=s["n"], seed=ctx.seed + 2000)
    by_label = {_label(K, R): (K, R) for K, R in CASES}
    rows = []
    for row in sweep:
        K, R = by_label[row["sampler"]]
        rows.append({"grid": f"lambda_uniform({hi:g}->{lo:g})", "sampler": row["sampler"],
                     "K": K, "R": _resolved(K, R), "T": row["steps"] + 1, "steps": row["steps"],
                     "inv_h": row["steps"] / math.log(hi / lo), "nfe": row["nfe"],
                     "nfe_formula": row["steps"] * (1 + _resolved(K, R) * (K - 1)),
                     **{k: row[k] for k in ("defect_mean", "defect_median", "defect_q90",
                                            "defect_max")}})
    return rows


def _tv_row(target, ctx: Context, s: Dict, K: int, R, T: int) -> dict:
    """Exact 1-D TV of the deterministic sampler map vs the exact marginal (module docstring),
    for one case at T levels (one cell)."""
    spec = SOLVERS["lagrange"]
    sig = _li_grid(T, ctx)
    s0, s1 = float(sig[0]), float(sig[-1])
    base = target.marginal(s0)
    half_width = float(base.means.abs().max()) + 8.0 * math.sqrt(float(base.eigenvalues.max()))
    edges = torch.linspace(-half_width, half_width, s["tv_panels"] + 1, dtype=ctx.dtype,
                           device=ctx.device)
    res = tv_density_1d_deterministic(
        lambda x: spec(target.denoiser, x, sig, K=K, R=R),
        lambda x: target.log_prob(x, s0), lambda y: target.log_prob(y, s1), edges,
        mass_tol=1.0)
    uncovered = max(0.0, 1.0 - res.mass_p)
    return {"grid": f"li(c0={C0:g},c1={C1:g})", "sampler": _label(K, R), "K": K,
            "R": _resolved(K, R), "T": T, "steps": T - 1, "inv_h": _inv_h(T),
            "nfe": (T - 1) * (1 + _resolved(K, R) * (K - 1)),
            "tv": res.value + 0.5 * uncovered, "tv_integral": res.value,
            "uncovered_target_mass": uncovered,
            "quadrature_mass_error_q": abs(1.0 - res.mass_q),
            "panels": s["tv_panels"]}


def equal_nfe_rows(target, ctx: Context, s: Dict) -> List[dict]:
    """Median defect at equal ledger-counted NFE on the log-SNR-uniform grid (module docstring)."""
    lo, hi = LAMBDA_RANGE
    grid = lambda m: grids.lambda_uniform(m, lo, hi, dtype=ctx.dtype, device=ctx.device)  # noqa
    x_start = starting_points(target, s["equal_nfe_n"], hi, ctx.seed + 4000)
    x_ref = solve_pf_ode(target, x_start, hi, lo)
    rows = []
    for label, name, opts in EQUAL_NFE_CASES:
        per_step = int(SOLVERS[name].nfe(grid(1), **opts))
        steps = [b // per_step for b in s["equal_nfe"]]
        if any(b % per_step for b in s["equal_nfe"]):
            raise ValueError(f"budgets {s['equal_nfe']} not divisible by {label}'s {per_step} "
                             "NFE per step")
        # check_grid=False: at the small budgets the K >= 3 Lagrange weights on log-SNR steps of
        # h > 1 amplify model errors far beyond the default grid guard's bound; the comparison
        # reports the errors they actually give there
        sweep = defect_sweep(target, [(label, name, {**opts, "check_grid": False})], steps, grid,
                             n=s["equal_nfe_n"], x_start=x_start, x_ref=x_ref)
        for r in sweep:
            rows.append({"sampler": label, "name": name, "nfe_per_step": per_step,
                         "steps": r["steps"], "nfe": r["nfe"],
                         "defect_median": r["defect_median"], "defect_mean": r["defect_mean"]})
    return rows


def _dimension_rows(ctx: Context, s: Dict, d: int, j: int) -> List[dict]:
    """Defect at fixed T of K = 1..4 on the j-th seeded random mixture in dimension d (one
    cell)."""
    T = s["dim_T"]
    target = GaussianMixture.random_anisotropic(d, DIM_COMPONENTS, seed=ctx.seed + 100 + j,
                                                dtype=ctx.dtype, device=ctx.device)
    sweep = defect_sweep(target, [_case(K, None) for K in (1, 2, 3, 4)], [T - 1],
                         lambda m: _li_grid(m + 1, ctx), n=s["dim_n"],
                         seed=ctx.seed + 3000 + 97 * d + j)
    return [{"d": d, "target_seed": ctx.seed + 100 + j, "sampler": row["sampler"], "K": K,
             "T": T, "nfe": row["nfe"], "defect_median": row["defect_median"],
             "defect_per_sqrt_d": row["defect_median"] / math.sqrt(d)}
            for K, row in zip((1, 2, 3, 4), sweep)]


def _dimension_fits(rows: List[dict]) -> List[dict]:
    """Growth exponent a of defect ~ d^a (geometric mean over target seeds) per K."""
    out = []
    for K in (1, 2, 3, 4):
        sel = [r for r in rows if r["K"] == K]
        dims = sorted({r["d"] for r in sel})
        gm = [math.exp(float(np.mean([math.log(r["defect_median"]) for r in sel if r["d"] == d])))
              for d in dims]
        p, _, lo, hi, _ = fit_power_law(dims, gm)
        a, a_lo, a_hi = -p, -hi, -lo
        out.append({"K": K, "growth_exponent": a, "ci_low": a_lo, "ci_high": a_hi,
                    "step_count_exponent": a / K, "paper_step_count_exponent": 1 + 2 / K,
                    "paper_error_exponent_at_fixed_T": K + 2, "dims": " ".join(map(str, dims))})
    return out


def _fits(defect_rows, tv_rows) -> List[dict]:
    out = []
    combos = [("defect_median vs T", defect_rows, "li", "T", "defect_median"),
              ("defect_median vs 1/h", defect_rows, "li", "inv_h", "defect_median"),
              ("defect_median vs NFE", defect_rows, "li", "nfe", "defect_median"),
              ("defect_median vs M (log-SNR grid)", defect_rows, "lambda", "steps",
               "defect_median"),
              ("TV vs 1/h", tv_rows, "li", "inv_h", "tv")]
    for what, rows, grid, x, y in combos:
        sel = [r for r in rows if r["grid"].startswith(grid)]
        for K, R in CASES:
            lab = _label(K, R)
            if not any(r["sampler"] == lab for r in sel):
                continue
            est = safe_fit(sel, lab, x=x, y=y)
            out.append({"quantity": what, "sampler": lab, "K": K, "R": _resolved(K, R),
                        "expected": SOLVERS["lagrange"].order_for(K=K, R=R), **order_fields(est)})
    return out


def _find(fits, what, lab):
    for f in fits:
        if f["quantity"] == what and f["sampler"] == lab:
            return f
    return None


def _fmt(f) -> str:
    if f is None or f["order"] is None:
        return "no fit"
    return f"{f['order']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}] ({f['points']} pts)"


def _triple(f):
    """(order, ci_low, ci_high) of a fits row, or None without a fit."""
    if f is None or f["order"] is None:
        return None
    return (f["order"], f["ci_low"], f["ci_high"])


def _within(f, expected, tol=0.2) -> bool:
    return f is not None and f["order"] is not None and abs(f["order"] - expected) <= tol


def _equal_nfe_claim(rows) -> Claim:
    nfes = sorted({r["nfe"] for r in rows})
    at = {(r["sampler"], r["nfe"]): r["defect_median"] for r in rows}
    wins, total, parts = 0, 0, []
    top = nfes[-1]
    crossover = {}
    for K in (2, 3, 4):
        lab = f"Lagrange K={K}"
        below = [b for b in nfes if at[(lab, b)] < at[("DDIM (euler)", b)]]
        crossover[K] = below[0] if below and all(b in below for b in nfes if b >= below[0]) \
            else None
        total += 1
        wins += at[(lab, top)] < at[("DDIM (euler)", top)]
    for lab in [c[0] for c in EQUAL_NFE_CASES]:
        parts.append(f"{lab} " + " / ".join(f"{at[(lab, b)]:.2g}" for b in nfes if (lab, b) in at))
    ctx_parts = []
    for other in ("li_accel_ode", "DPM-Solver-3"):
        n_lower = sum(at[(f"Lagrange K={K}", b)] < at[(other, b)] for K in (2, 3, 4) for b in nfes
                      if (f"Lagrange K={K}", b) in at and (other, b) in at)
        ctx_parts.append(f"Lagrange below {other} at {n_lower}/{3 * len(nfes)}")
    return Claim(
        STUDY, PAPER, "at equal score evaluations the K-th order sampler (K = 2-4) is more "
                      "accurate than DDIM ('outperforms vanilla DDIM (d/eps)')",
        "d^(1+o(1)) eps^(-1/K) evaluations vs DDIM's d/eps (Theorem 1; no measured number)",
        f"median defect on the log-SNR grid 80 -> 0.002 at NFE {', '.join(map(str, nfes))}: "
        + "; ".join(parts) + f". Below DDIM at NFE {top}: {wins}/{total} K; below DDIM from NFE "
        + ", ".join(f"K={K}: {'-' if c is None else c}" for K, c in crossover.items())
        + "; context (no seed claim): " + ", ".join(ctx_parts),
        fraction_verdict(wins, total),
        "the seed's statement is asymptotic (eps -> 0), so the verdict counts the K that are "
        f"below DDIM at the largest budget (NFE {top}); at small budgets the K-th order sampler "
        "is worse (its anchors are equispaced in alpha-bar over steps that are long at low NFE). "
        "Ledger-counted NFE; each sampler runs NFE / (its NFE per step) steps on the same grid; "
        "li_accel_ode (seed 002) and DPM-Solver-3 are context, not part of the verdict")


def _claims(fits, dim_fits, defect_rows) -> List[Claim]:
    claims = []
    for K, R in CASES[:4]:
        lab = _label(K, R)
        f_h = _find(fits, "defect_median vs 1/h", lab)
        f_t = _find(fits, "defect_median vs T", lab)
        f_l = _find(fits, "defect_median vs M (log-SNR grid)", lab)
        f_tv = _find(fits, "TV vs 1/h", lab)
        measured = f"defect vs 1/h: {_fmt(f_h)}; vs T: {_fmt(f_t)}"
        if f_l is not None:
            measured += f"; log-SNR grid vs M: {_fmt(f_l)}"
        if f_tv is not None:
            measured += f"; TV vs 1/h: {_fmt(f_tv)}"
        verdict = order_verdict(_triple(f_h), K)
        reason = {"reproduced": f"slope vs 1/h = T/(c1 log T) within the interval or 5 % of {K}; "
                                "vs T it is lower by the (log T)^K factor the bound carries",
                  "pre-asymptotic": f"converges, but the slope vs 1/h is not yet {K} in the "
                                    "measured range (interval excludes it)",
                  "not measured": "no slope could be fitted"}.get(verdict,
                                                                 f"fitted slope far from {K}")
        claims.append(Claim(STUDY, PAPER, f"K = {K}: error ~ T^-K at fixed d (R = K-1 rounds)",
                            f"order {K} ({PAPER_COMPLEXITY})", measured,
                            verdict, reason))
    lab = _label(3, 3)
    f_h = _find(fits, "defect_median vs 1/h", lab)
    claims.append(Claim(STUDY, "notes §2.3/§3 (reconstruction)",
                        "parity rule: order min(R+1, NC(K)), NC(3) = 4, so K = 3, R = 3 gives 4",
                        "4 (notes' numerics: ~3.9)", f"defect vs 1/h: {_fmt(f_h)}",
                        check_verdict(order_verdict(_triple(f_h), 4)),
                        "a check of the notes' reconstruction (not a paper claim): equispaced "
                        "3-point (Simpson) quadrature gains one order with an extra refinement "
                        "round", kind="check"))
    nfe_ok = all(r["nfe"] == r["nfe_formula"] for r in defect_rows)
    claims.append(Claim(STUDY, "notes §2.3 (reconstruction)",
                        "cost: 1 + R(K-1) score evaluations per step",
                        "T (1 + R(K-1)) in total",
                        "ledger count = formula in every run" if nfe_ok else
                        "ledger count differs from the formula",
                        check_verdict(nfe_ok),
                        "NFE counted by the ledger around the exact denoiser (a check of the "
                        "implementation's cost, not a paper claim)", kind="check"))
    parts, ok = [], True
    for f in dim_fits:
        parts.append(f"K={f['K']}: defect ~ d^{f['growth_exponent']:.2f} "
                     f"[{f['ci_low']:.2f}, {f['ci_high']:.2f}] -> steps ~ d^"
                     f"{f['step_count_exponent']:.2f} (paper {f['paper_step_count_exponent']:.2f})")
        ok &= f["step_count_exponent"] <= f["paper_step_count_exponent"]
    largest = max(f["growth_exponent"] for f in dim_fits)
    claims.append(Claim(
        STUDY, PAPER, "dimension dependence: the step count grows like d^(1+2/K) "
                      "(error constant at fixed T at most ~ d^(K+2))",
        "Õ(d^(1+2/K)) iterations (worst-case upper bound, Theorem 1)", "; ".join(parts),
        "not testable here",
        (f"a worst-case upper bound cannot be reproduced on specific smooth targets; the measured "
         f"growth of the constant (exponents <= {largest:.2f}; sqrt(d) would mean a "
         f"per-coordinate error independent of d) stays below the bound's, i.e. consistent "
         f"with it" if ok else
         "measured growth exceeds the bound's step-count exponent on these targets")))
    return claims


def _figure_defect(ctx, defect_rows, fits):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    li = [r for r in defect_rows if r["grid"].startswith("li")]
    for K, R in CASES:
        lab = _label(K, R)
        sel = [r for r in li if r["sampler"] == lab]
        style = "--" if R is not None else "-"
        axes[0].loglog([r["T"] for r in sel], [r["defect_median"] for r in sel], "o" + style,
                       label=lab, ms=4)
        axes[1].loglog([r["nfe"] for r in sel], [r["defect_median"] for r in sel], "o" + style,
                       label=lab, ms=4)
        f = _find(fits, "defect_median vs 1/h", lab)
        if R is None and sel:
            last = sel[-1]
            slope_triangle(axes[0], last["T"] / 2.6, last["defect_median"] * 0.25, K)
    axes[0].set_xlabel("number of levels T (papers' schedule, c0 = 1, c1 = 3)")
    axes[0].set_ylabel("median defect |x_T - x_ref| (data units)")
    axes[0].set_title("defect vs T (triangles: slope K)")
    axes[1].set_xlabel("NFE = (T - 1)(1 + R(K - 1))")
    axes[1].set_ylabel("median defect (data units)")
    axes[1].set_title("defect vs score evaluations")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, ctx.out / f"{STUDY}__defect")
    plt.close(fig)
    return {"path": f"{STUDY}__defect.png",
            "caption": "Lagrange sampler (seed 001, reconstruction) on the 1-D two-mode mixture, "
                       "papers' schedule c0 = 1, c1 = 3: median defect against the exact PF-ODE "
                       "solution vs the number of levels T (left, with slope-K triangles) and vs "
                       "NFE (right). The fitted orders against 1/h = T/(c1 log T) are in "
                       f"{STUDY}__orders.csv."}


def _figure_tv(ctx, tv_rows, defect_rows):
    lam = [r for r in defect_rows if r["grid"].startswith("lambda")]
    fig, axes = plt.subplots(1, 2 if lam else 1, figsize=(11 if lam else 5.5, 4.2),
                             squeeze=False)
    ax = axes[0, 0]
    for lab in dict.fromkeys(r["sampler"] for r in tv_rows):
        sel = [r for r in tv_rows if r["sampler"] == lab]
        ax.loglog([r["T"] for r in sel], [r["tv"] for r in sel], "o-", label=lab, ms=4)
        slope_triangle(ax, sel[-1]["T"] / 1.8, sel[-1]["tv"] * 0.3, sel[-1]["K"], factor=1.6)
    ax.set_xlabel("number of levels T (papers' schedule)")
    ax.set_ylabel("TV(law of sampler output, exact marginal)")
    ax.set_title("exact 1-D TV by density propagation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if lam:
        ax = axes[0, 1]
        for K, R in CASES:
            lab = _label(K, R)
            sel = [r for r in lam if r["sampler"] == lab]
            ax.loglog([r["steps"] for r in sel], [r["defect_median"] for r in sel],
                      "o" + ("--" if R is not None else "-"), label=lab, ms=4)
            if R is None:
                slope_triangle(ax, sel[-1]["steps"] / 2.6, sel[-1]["defect_median"] * 0.25, K)
        ax.set_xlabel("number of steps M (log-SNR-uniform grid, sigma 80 -> 0.002)")
        ax.set_ylabel("median defect (data units)")
        ax.set_title("fixed ends: slope vs M is the order")
        ax.grid(True, which="both", alpha=0.3)
    save_figure(fig, ctx.out / f"{STUDY}__tv")
    plt.close(fig)
    return {"path": f"{STUDY}__tv.png",
            "caption": "Left: exact TV between the law of the Lagrange sampler's output and the "
                       "exact marginal at the last level (1-D two-mode mixture, quadrature "
                       "density propagation, no Monte-Carlo noise) vs T. "
                       + ("Right: median defect on a log-SNR-uniform grid with fixed ends "
                          "(slope triangles = K)." if lam else "")}


def _figure_dimension(ctx, dim_rows, dim_fits):
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    for K in (1, 2, 3, 4):
        sel = [r for r in dim_rows if r["K"] == K]
        dims = sorted({r["d"] for r in sel})
        gm = [math.exp(float(np.mean([math.log(r["defect_median"]) for r in sel if r["d"] == d])))
              for d in dims]
        f = next(f for f in dim_fits if f["K"] == K)
        ax.loglog(dims, gm, "o-", ms=4,
                  label=f"Lagrange K={K}: ~d^{f['growth_exponent']:.2f}")
    dims = sorted({r["d"] for r in dim_rows})
    ref = [r["defect_median"] for r in dim_rows if r["K"] == 4 and r["d"] == dims[0]][0]
    ax.loglog(dims, [ref * 0.3 * (d / dims[0]) ** 0.5 for d in dims], ":", color="0.4",
              label="d^(1/2) reference")
    ax.set_xlabel("dimension d (random anisotropic 4-component mixtures)")
    ax.set_ylabel(f"median defect at T = {dim_rows[0]['T']} (data units)")
    ax.set_title("error constant vs dimension (paper's bound: d^(K+2))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, ctx.out / f"{STUDY}__dimension")
    plt.close(fig)
    return {"path": f"{STUDY}__dimension.png",
            "caption": f"Median defect of the Lagrange sampler at fixed T = {dim_rows[0]['T']} "
                       "vs dimension d on seeded random anisotropic mixtures (geometric mean over "
                       "target seeds); legend: fitted growth exponents. The paper's "
                       "d^(1+2/K) step count corresponds to a worst-case d^(K+2) at fixed T."}


@register_study(STUDY, "K-th order Lagrange sampler: order K in T, cost per NFE, dimension",
                "001")
def run_lagrange_order(ctx: Context) -> StudyResult:
    s = study_settings(ctx.quick)
    target = GaussianMixture.two_mode_1d(dtype=ctx.dtype, device=ctx.device)
    # cells (experiments.executors), submitted together: the equal-NFE comparison, one cell per
    # T of the papers' schedule (largest first), per TV case and per dimension/target seed;
    # merged in the tables' fixed order
    li = list(enumerate(s["T_li"]))[::-1]
    tv = [(K, R, T) for K, R, t_list in s["tv_cases"] for T in t_list]
    dims = [(d, j) for d in s["dims"] for j in range(s["dim_seeds"])]
    calls = [("equal NFE", equal_nfe_rows, (target, ctx, s))]
    calls += [(f"papers' schedule T={T}", _defect_li, (target, ctx, s, i, T)) for i, T in li]
    calls += [(f"TV {_label(K, R)} T={T}", _tv_row, (target, ctx, s, K, R, T)) for K, R, T in tv]
    calls += [(f"dimension d={d} seed {j}", _dimension_rows, (ctx, s, d, j)) for d, j in dims]
    done = map_calls(calls)
    eq_rows = done[0]
    by_t = dict(zip([T for _, T in li], done[1:1 + len(li)]))
    defect_rows = [r for T in s["T_li"] for r in by_t[T]] + _defect_lambda(target, ctx, s)
    tv_rows = done[1 + len(li):1 + len(li) + len(tv)]
    dim_rows = [r for rows in done[1 + len(li) + len(tv):] for r in rows]
    fits = _fits(defect_rows, tv_rows)
    dim_fits = _dimension_fits(dim_rows)
    claims = _claims(fits, dim_fits, defect_rows) + [_equal_nfe_claim(eq_rows)]
    figures = draw_figures(ctx, [(_figure_defect, (defect_rows, fits)),
                                 (_figure_tv, (tv_rows, defect_rows)),
                                 (_figure_dimension, (dim_rows, dim_fits))])
    head = ", ".join(f"K={K}: {_fmt(_find(fits, 'defect_median vs 1/h', _label(K, None)))}"
                     for K in (1, 2, 3, 4))
    parity = _fmt(_find(fits, "defect_median vs 1/h", _label(3, 3)))
    growth = ", ".join(f"K={f['K']}: d^{f['growth_exponent']:.2f}" for f in dim_fits)
    summary = (f"Lagrange sampler, median-defect order vs 1/h = T/(c1 log T) on the papers' "
               f"schedule: {head}.\n"
               f"Slopes against T itself are lower by the schedule's log T factor (orders.csv). "
               f"Parity rule, K = 3 with R = 3 (expected 4): {parity}. Error constant at fixed "
               f"T = {s['dim_T']} vs dimension: {growth} (paper's worst case: d^(K+2)).")
    settings = {"target": "GaussianMixture.two_mode_1d() (notes §3)",
                "schedule": f"grids.li_grid(T - 1, c0={C0}, c1={C1})",
                "lambda_grid": f"grids.lambda_uniform(M, {LAMBDA_RANGE[0]}, {LAMBDA_RANGE[1]})",
                "cases": [{"K": K, "R": _resolved(K, R)} for K, R in CASES],
                "dimension_targets": f"GaussianMixture.random_anisotropic(d, {DIM_COMPONENTS}, "
                                     f"seed={ctx.seed + 100}+j)",
                **s}
    return StudyResult(name=STUDY, tables={"defect": defect_rows, "tv": tv_rows, "orders": fits,
                                           "dimension": dim_rows, "dimension_fit": dim_fits,
                                           "equal_nfe": eq_rows},
                       claims=claims, figures=figures, summary=summary,
                       extra={"settings": settings})
