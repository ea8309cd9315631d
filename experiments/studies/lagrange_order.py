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
"""
from __future__ import annotations

import math
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from samplerlab.experiments.convergence import defect_sweep  # noqa: E402
from samplerlab.experiments.io import save_figure  # noqa: E402
from samplerlab.experiments.metrics import tv_density_1d_deterministic  # noqa: E402
from samplerlab.experiments.order import fit_power_law  # noqa: E402
from samplerlab.experiments.targets import GaussianMixture  # noqa: E402
from samplerlab.solvers import SOLVERS, grids  # noqa: E402

from .base import Claim, Context, StudyResult, register_study  # noqa: E402
from samplerlab.experiments.convergence import order_fields, safe_fit  # noqa: E402
from samplerlab.experiments.plotting import paper_label, slope_triangle  # noqa: E402

__all__ = ["run_lagrange_order", "CASES", "study_settings"]

STUDY = "lagrange-order"
PAPER = "Li, Zhou, Wei, Chen 2025 (arXiv 2506.24042), seed 001"
C0, C1 = 1.0, 3.0                      # the notes' schedule constants (§3)
LAMBDA_RANGE = (0.002, 80.0)           # log-SNR-uniform grid: sigma_min, sigma_max
CASES = ((1, None), (2, None), (3, None), (4, None), (3, 3))   # (K, R); R=None -> K-1
DIM_COMPONENTS = 4


def study_settings(quick: bool) -> Dict:
    """Sizes of the quick (CI) and full runs."""
    if quick:
        return {"T_li": [64, 128, 256, 512], "n": 48, "lambda_steps": [],
                "tv_panels": 600, "tv_cases": [(2, None, [32])],
                "dims": [1, 4, 16], "dim_seeds": 1, "dim_T": 64, "dim_n": 32}
    return {"T_li": [32, 64, 128, 256, 512, 1024], "n": 200,
            "lambda_steps": [8, 16, 32, 64, 128, 256],
            "tv_panels": 1500,
            "tv_cases": [(1, None, [16, 32, 64, 128]), (2, None, [16, 32, 64, 128]),
                         (3, None, [16, 32, 64]), (4, None, [16, 32, 64])],
            "dims": [1, 2, 4, 8, 16, 32], "dim_seeds": 2, "dim_T": 128, "dim_n": 64}


def _resolved(K, R):
    return K - 1 if R is None else R


def _label(K, R) -> str:
    return paper_label("lagrange", {"K": K, "R": R})


def _case(K, R):
    return (_label(K, R), "lagrange", {"K": K, "R": R})


def _li_grid(T: int, ctx: Context) -> torch.Tensor:
    return grids.li_grid(T - 1, C0, C1, dtype=ctx.dtype, device=ctx.device)


def _inv_h(T: int) -> float:
    """1/h with the schedule's relative step h = c1 log T / T (notes §2.2)."""
    return T / (C1 * math.log(T))


def _defect_li(target, ctx: Context, s: Dict) -> List[dict]:
    rows = []
    cases = [_case(K, R) for K, R in CASES]
    for i, T in enumerate(s["T_li"]):
        sweep = defect_sweep(target, cases, [T - 1], lambda m: _li_grid(m + 1, ctx), n=s["n"],
                             seed=ctx.seed + 1000 + i)
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


def _tv_rows(target, ctx: Context, s: Dict) -> List[dict]:
    """Exact 1-D TV of the deterministic sampler map vs the exact marginal (module docstring)."""
    rows = []
    spec = SOLVERS["lagrange"]
    for K, R, t_list in s["tv_cases"]:
        for T in t_list:
            sig = _li_grid(T, ctx)
            s0, s1 = float(sig[0]), float(sig[-1])
            base = target.marginal(s0)
            half_width = float(base.means.abs().max()) + 8.0 * math.sqrt(
                float(base.eigenvalues.max()))
            edges = torch.linspace(-half_width, half_width, s["tv_panels"] + 1, dtype=ctx.dtype,
                                   device=ctx.device)
            res = tv_density_1d_deterministic(
                lambda x, K=K, R=R: spec(target.denoiser, x, sig, K=K, R=R),
                lambda x: target.log_prob(x, s0), lambda y: target.log_prob(y, s1), edges,
                mass_tol=1.0)
            uncovered = max(0.0, 1.0 - res.mass_p)
            rows.append({"grid": f"li(c0={C0:g},c1={C1:g})", "sampler": _label(K, R), "K": K,
                         "R": _resolved(K, R), "T": T, "steps": T - 1, "inv_h": _inv_h(T),
                         "nfe": (T - 1) * (1 + _resolved(K, R) * (K - 1)),
                         "tv": res.value + 0.5 * uncovered, "tv_integral": res.value,
                         "uncovered_target_mass": uncovered,
                         "quadrature_mass_error_q": abs(1.0 - res.mass_q),
                         "panels": s["tv_panels"]})
    return rows


def _dimension_rows(ctx: Context, s: Dict) -> List[dict]:
    rows = []
    T = s["dim_T"]
    cases = [_case(K, None) for K in (1, 2, 3, 4)]
    for d in s["dims"]:
        for j in range(s["dim_seeds"]):
            target = GaussianMixture.random_anisotropic(d, DIM_COMPONENTS, seed=ctx.seed + 100 + j,
                                                        dtype=ctx.dtype, device=ctx.device)
            sweep = defect_sweep(target, cases, [T - 1], lambda m: _li_grid(m + 1, ctx),
                                 n=s["dim_n"], seed=ctx.seed + 3000 + 97 * d + j)
            for K, row in zip((1, 2, 3, 4), sweep):
                rows.append({"d": d, "target_seed": ctx.seed + 100 + j, "sampler": row["sampler"],
                             "K": K, "T": T, "nfe": row["nfe"],
                             "defect_median": row["defect_median"],
                             "defect_per_sqrt_d": row["defect_median"] / math.sqrt(d)})
    return rows


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


def _within(f, expected, tol=0.2) -> bool:
    return f is not None and f["order"] is not None and abs(f["order"] - expected) <= tol


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
        if _within(f_h, K):
            verdict = "reproduced"
            reason = (f"slope vs 1/h = T/(c1 log T) within 0.2 of {K}; vs T it is lower by the "
                      "(log T)^K factor the bound carries")
        elif f_h is not None and f_h["order"] is not None and f_h["order"] > 0.5 * K:
            verdict = "partly"
            reason = (f"converges, but the fitted slope is not yet {K} in the measured range "
                      "(pre-asymptotic: local slopes still rising)")
        else:
            verdict = "not reproduced"
            reason = f"fitted slope far from {K}"
        claims.append(Claim(STUDY, PAPER, f"K = {K}: error ~ T^-K at fixed d (R = K-1 rounds)",
                            f"order {K} (Õ(d^(1+2/K) eps^(-1/K)) evaluations)", measured,
                            verdict, reason))
    lab = _label(3, 3)
    f_h = _find(fits, "defect_median vs 1/h", lab)
    claims.append(Claim(STUDY, "notes §2.3/§3 (reconstruction)",
                        "parity rule: order min(R+1, NC(K)), NC(3) = 4, so K = 3, R = 3 gives 4",
                        "4 (notes' numerics: ~3.9)", f"defect vs 1/h: {_fmt(f_h)}",
                        "reproduced" if _within(f_h, 4) else "not reproduced",
                        "equispaced 3-point (Simpson) quadrature gains one order with an extra "
                        "refinement round" if _within(f_h, 4) else "slope not within 0.2 of 4"))
    nfe_ok = all(r["nfe"] == r["nfe_formula"] for r in defect_rows)
    claims.append(Claim(STUDY, "notes §2.3 (reconstruction)",
                        "cost: 1 + R(K-1) score evaluations per step",
                        "T (1 + R(K-1)) in total",
                        "ledger count = formula in every run" if nfe_ok else
                        "ledger count differs from the formula",
                        "reproduced" if nfe_ok else "not reproduced",
                        "NFE counted by the ledger around the exact denoiser"))
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
        "d^(1+2/K) (worst-case upper bound)", "; ".join(parts), "not testable here",
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
    defect_rows = _defect_li(target, ctx, s) + _defect_lambda(target, ctx, s)
    tv_rows = _tv_rows(target, ctx, s)
    dim_rows = _dimension_rows(ctx, s)
    fits = _fits(defect_rows, tv_rows)
    dim_fits = _dimension_fits(dim_rows)
    claims = _claims(fits, dim_fits, defect_rows)
    figures = [_figure_defect(ctx, defect_rows, fits), _figure_tv(ctx, tv_rows, defect_rows),
               _figure_dimension(ctx, dim_rows, dim_fits)]
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
                                           "dimension": dim_rows, "dimension_fit": dim_fits},
                       claims=claims, figures=figures, summary=summary,
                       extra={"settings": settings})
