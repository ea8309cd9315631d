"""Study ``res-order-conditions`` (seed 003): RES vs DPM-Solver(++) — defects, orders, schedules,
and the order-condition residuals behind them.

Paper: Zhang, Song, Chen, *Improved order analysis and design of exponential integrator for
diffusion models sampling* (RES, arXiv 2308.02157); claims and algorithms as pinned down in
shared/papers/notes-accelerated-samplers-and-res.md §2 (checks of the notes: §4.4).

What is measured
----------------
* Numerical defect (mean and median over exact starting samples of ||x_N - x*||, reference from
  experiments.reference.solve_pf_ode) vs NFE for ``euler``, ``dpmpp_2s``, ``res_2s``,
  ``dpmpp_2m``, ``res_2m``, ``dpm_solver_3``, ``res_3s`` on two mixture targets (the notes' 1-D
  mixture, weights 0.3/0.7, means -1.5/1, variances 0.05/0.2, and the 8-mode 2-D ring), on the
  EDM/Karras grid (rho = 7, sigma 80 -> 0.002, ending at 0.002, not 0), with fitted orders.
* RES vs DPM-Solver++ at NFE 9. **Decision (documented):** following the notes (§2.7, "plausibly
  NFE = 9 means 4 two-stage steps plus one final denoise") an odd NFE for a 2-stage method is
  ``(NFE - 1)/2`` steps on the Karras grid 80 -> 0.002 followed by the final denoising step
  ``x <- D(x, 0.002)`` (grid ``karras(., append_zero=True)``), compared with the exact PF-ODE
  endpoint at sigma = 0; an even NFE is ``NFE/2`` steps ending at 0.002, compared with the exact
  solution at 0.002. Generally: NFE = stages * steps (+ 1 with the final denoise), the denoise used
  only when NFE is not a multiple of the stage count. The headline is the single-step pair
  DPM-Solver++(2S) vs RES-2S (the paper's "single-step DPM-Solver++ vs RES"); the multistep pair
  (2M) and the 3-stage pair are reported alongside, and NFE 7, 8, 10, 11 as neighbours. The
  reduction is ``1 - mean defect(RES) / mean defect(DPM-Solver++)`` on the same starting points,
  with a paired bootstrap 95% interval (seeded).
* Schedule robustness: the same sweep on a grid uniform in sigma (the brief's "suboptimal"
  schedule; the paper's exact inefficient schedule is not known, notes §2.8) and, for context, on
  a log-SNR-uniform grid: the NFE each sampler needs to reach a defect tolerance on each grid
  (log-log interpolation), and the inflation factor relative to the Karras grid.
* The order-condition residuals from theory/: for each exponential-RK tableau
  (``theory.exp_rk.check_stiff_conditions``: the stage conditions and Hochbruck-Ostermann (1)-(4),
  residual as a function of h, whether it vanishes identically and its leading term as h -> 0)
  and, for the multistep pair, the moment (order) conditions of their weight sets
  (``sum_j w_j s_j^k = m_k`` with theory.multistep's weights and kernel moments). From these:
  the *stiff* order (all conditions up to p hold for every h) and the *classical* order (each
  condition of order j <= p holds up to O(h^(p+1-j))).
"""
from __future__ import annotations

import functools
import math
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402
import torch  # noqa: E402

from samplerlab.experiments.convergence import defect_sweep, starting_points  # noqa: E402
from samplerlab.experiments.io import save_figure  # noqa: E402
from samplerlab.experiments.metrics import defect  # noqa: E402
from samplerlab.experiments.reference import solve_pf_ode  # noqa: E402
from samplerlab.experiments.targets import GaussianMixture  # noqa: E402
from samplerlab.solvers import SOLVERS, grids  # noqa: E402
from samplerlab.experiments.order_card import MULTISTEP_WEIGHT_SETS  # noqa: E402
from samplerlab.theory.exp_rk import EXP_RK_TABLEAUX, check_stiff_conditions  # noqa: E402
from samplerlab.theory.orders import exp_rk_orders, multistep_orders  # noqa: E402

from .base import Claim, Context, StudyResult, register_study  # noqa: E402
from samplerlab.experiments.convergence import order_fields, safe_fit  # noqa: E402
from samplerlab.experiments.plotting import paper_label, slope_triangle  # noqa: E402

__all__ = ["run_res_order_conditions", "SAMPLERS", "study_settings", "targets"]

STUDY = "res-order-conditions"
PAPER = "Zhang, Song, Chen 2023 (RES, arXiv 2308.02157), seed 003"
SAMPLERS = ("euler", "dpmpp_2s", "res_2s", "dpmpp_2m", "res_2m", "dpm_solver_3", "res_3s")
PAIRS = (("dpmpp_2s", "res_2s"), ("dpmpp_2m", "res_2m"), ("dpm_solver_3", "res_3s"))
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
HEADLINE_NFE = 9
NEIGHBOUR_NFE = (7, 8, 9, 10, 11)
BOOTSTRAP = 2000

def _condition_rows() -> List[dict]:
    rows = []
    for name in ("euler", "dpmpp_2s", "res_2s", "dpm_solver_3", "res_3s"):
        stiff, classical, checks = exp_rk_orders(name)
        for c in checks:
            rows.append({"sampler": name, "paper_name": paper_label(name), "kind": "exp-RK stiff",
                         "condition": c.name, "order": c.order, "statement": c.statement,
                         "residual": str(c.residual), "holds_for_all_h": bool(c.holds),
                         "holds_as_h_to_0": bool(c.holds_as_h_to_0),
                         "leading_term_h_to_0": "" if c.leading is None else str(c.leading),
                         "max_abs_residual": float(c.max_abs),
                         "stiff_order": stiff, "classical_order": classical})
    for name in ("dpmpp_2m", "res_2m"):
        method, q = MULTISTEP_WEIGHT_SETS[name]
        stiff, classical, mrows = multistep_orders(method, q)
        for r in mrows:
            rows.append({"sampler": name, "paper_name": paper_label(name),
                         "kind": "multistep moment", "condition": f"moment k={r['k']}",
                         "order": r["k"] + 1, "statement": f"sum_j w_j s_j^{r['k']} = m_{r['k']}",
                         "residual": r["residual"], "holds_for_all_h": r["holds"],
                         "holds_as_h_to_0": r["vanishes_as_h_to_0"],
                         "leading_term_h_to_0": r["leading"], "max_abs_residual": None,
                         "stiff_order": stiff, "classical_order": classical})
    return rows


def study_settings(quick: bool) -> Dict:
    if quick:
        return {"targets": ["two_mode_1d"], "n": 48, "karras_nfe": [12, 24, 48, 96, 192],
                "alt_nfe": [48, 192, 768], "alt_grids": ["sigma_uniform"], "n_headline": 200,
                "tolerance": 5e-2}
    return {"targets": ["two_mode_1d", "ring_2d"], "n": 128,
            "karras_nfe": [6, 12, 24, 48, 96, 192, 384],
            "alt_nfe": [12, 48, 192, 768, 3072], "alt_grids": ["sigma_uniform", "lambda_uniform"],
            "n_headline": 1000, "tolerance": 5e-2}


def targets(ctx: Context) -> Dict[str, GaussianMixture]:
    kw = dict(dtype=ctx.dtype, device=ctx.device)
    return {"two_mode_1d": GaussianMixture.two_mode_1d(means=(-1.5, 1.0),
                                                       stds=(math.sqrt(0.05), math.sqrt(0.2)),
                                                       **kw),
            "ring_2d": GaussianMixture.ring_2d(**kw)}


def _grid_fn(name: str, ctx: Context, append_zero: bool = False):
    kw = dict(append_zero=append_zero, dtype=ctx.dtype, device=ctx.device)
    if name == "karras":
        return lambda m: grids.karras(m, SIGMA_MIN, SIGMA_MAX, RHO, **kw)
    if name == "sigma_uniform":
        return lambda m: grids.sigma_uniform(m, SIGMA_MIN, SIGMA_MAX, **kw)
    if name == "lambda_uniform":
        return lambda m: grids.lambda_uniform(m, SIGMA_MIN, SIGMA_MAX, **kw)
    raise ValueError(f"unknown grid {name!r}")


def stages(name: str) -> int:
    """NFE per step of a sampler at its default options (1 for multistep)."""
    return int(SOLVERS[name].nfe(grids.karras(1)))



# ----------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------

def _sweep(target, tname, grid_name, nfe_list, ctx, s, seed_offset) -> List[dict]:
    rows = []
    x = starting_points(target, s["n"], SIGMA_MAX, ctx.seed + seed_offset)
    ref = solve_pf_ode(target, x, SIGMA_MAX, SIGMA_MIN)
    for name in SAMPLERS:
        st = stages(name)
        steps = [f // st for f in nfe_list if f % st == 0 and f // st >= 1]
        for row in defect_sweep(target, [(paper_label(name), name, {})], steps,
                                _grid_fn(grid_name, ctx), n=s["n"], x_start=x, x_ref=ref):
            rows.append({"target": tname, "grid": grid_name, "sampler": row["sampler"],
                         "name": name, "steps": row["steps"], "nfe": row["nfe"],
                         **{k: row[k] for k in ("defect_mean", "defect_median", "defect_q90",
                                                "defect_max")}})
    return rows


def _headline(target, tname, ctx, s, seed_offset) -> List[dict]:
    """RES vs DPM-Solver(++) at NFE 7..11 with paired bootstrap intervals (module docstring)."""
    n = s["n_headline"]
    x = starting_points(target, n, SIGMA_MAX, ctx.seed + seed_offset)
    refs = {SIGMA_MIN: solve_pf_ode(target, x, SIGMA_MAX, SIGMA_MIN),
            0.0: solve_pf_ode(target, x, SIGMA_MAX, 0.0)}
    rng = np.random.default_rng(ctx.seed + seed_offset)
    idx = rng.integers(0, n, size=(BOOTSTRAP, n))
    rows = []
    for base, res in PAIRS:
        st = stages(base)
        for nfe in NEIGHBOUR_NFE:
            if nfe % st == 0:
                steps, denoise = nfe // st, False
            elif (nfe - 1) % st == 0:
                steps, denoise = (nfe - 1) // st, True
            else:
                continue
            sig = _grid_fn("karras", ctx, append_zero=denoise)(steps + int(denoise))
            ref = refs[0.0 if denoise else SIGMA_MIN]
            per = {}
            for name in (base, res):
                out = SOLVERS[name](target.denoiser, x, sig)
                per[name] = defect(out, ref).per_sample.detach().cpu().double().numpy()
                if SOLVERS[name].nfe(sig) != nfe:
                    raise RuntimeError(f"{name}: grid costs {SOLVERS[name].nfe(sig)} NFE, not {nfe}")
            a, b = per[base], per[res]
            red = 1.0 - b.mean() / a.mean()
            boot = 1.0 - b[idx].mean(axis=1) / a[idx].mean(axis=1)
            lo, hi = np.quantile(boot, [0.025, 0.975])
            rows.append({"target": tname, "pair": f"{paper_label(base)} vs {paper_label(res)}",
                         "baseline": base, "res": res, "nfe": nfe, "steps": steps,
                         "final_denoise": denoise,
                         "defect_mean_baseline": float(a.mean()), "defect_mean_res": float(b.mean()),
                         "reduction": float(red), "reduction_ci_low": float(lo),
                         "reduction_ci_high": float(hi),
                         "median_reduction": float(1.0 - np.median(b) / np.median(a)),
                         "frac_samples_res_better": float(np.mean(b < a))})
    return rows


def _nfe_to_reach(rows, tol) -> Optional[float]:
    """Smallest NFE at which the mean defect reaches ``tol`` (log-log interpolation)."""
    pts = sorted((r["nfe"], r["defect_mean"]) for r in rows)
    for (n0, e0), (n1, e1) in zip(pts, pts[1:]):
        if e0 <= tol:
            return float(n0)
        if e1 <= tol:
            t = (math.log(tol) - math.log(e0)) / (math.log(e1) - math.log(e0))
            return float(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    return float(pts[0][0]) if pts and pts[0][1] <= tol else None


def _robustness(sweeps, tol) -> List[dict]:
    out = []
    for tname in dict.fromkeys(r["target"] for r in sweeps):
        for name in SAMPLERS:
            sel = lambda g: [r for r in sweeps if r["target"] == tname and r["name"] == name
                             and r["grid"] == g]
            base = _nfe_to_reach(sel("karras"), tol)
            for g in dict.fromkeys(r["grid"] for r in sweeps):
                if g == "karras":
                    continue
                need = _nfe_to_reach(sel(g), tol)
                out.append({"target": tname, "sampler": paper_label(name), "name": name,
                            "grid": g, "tolerance": tol, "nfe_karras": base, "nfe_grid": need,
                            "inflation": (need / base) if (need and base) else None,
                            "max_nfe_tried": max(r["nfe"] for r in sel(g))})
    return out


def _orders(sweeps) -> List[dict]:
    out = []
    for tname in dict.fromkeys(r["target"] for r in sweeps):
        for g in dict.fromkeys(r["grid"] for r in sweeps):
            sel = [r for r in sweeps if r["target"] == tname and r["grid"] == g]
            for name in SAMPLERS:
                est = safe_fit(sel, paper_label(name), x="nfe", y="defect_median")
                stiff = classical = None
                if name in EXP_RK_TABLEAUX:
                    stiff, classical, _ = exp_rk_orders(name)
                elif name in MULTISTEP_WEIGHT_SETS:
                    stiff, classical, _ = multistep_orders(*MULTISTEP_WEIGHT_SETS[name])
                out.append({"target": tname, "grid": g, "sampler": paper_label(name),
                            "name": name, "declared": SOLVERS[name].order_for(),
                            "theory_stiff": stiff, "theory_classical": classical,
                            **order_fields(est)})
    return out


# ----------------------------------------------------------------------------------------------
# figures and claims
# ----------------------------------------------------------------------------------------------

_STYLE = {"euler": ("k", "-"), "dpmpp_2s": ("tab:blue", "--"), "res_2s": ("tab:blue", "-"),
          "dpmpp_2m": ("tab:orange", "--"), "res_2m": ("tab:orange", "-"),
          "dpm_solver_3": ("tab:green", "--"), "res_3s": ("tab:green", "-")}


def _figure_defects(ctx, sweeps, grid_names, tnames):
    fig, axes = plt.subplots(len(tnames), len(grid_names),
                             figsize=(5.8 * len(grid_names), 4.6 * len(tnames)), squeeze=False)
    for i, tname in enumerate(tnames):
        for j, g in enumerate(grid_names):
            ax = axes[i, j]
            for name in SAMPLERS:
                sel = [r for r in sweeps if r["target"] == tname and r["grid"] == g
                       and r["name"] == name]
                color, ls = _STYLE[name]
                ax.loglog([r["nfe"] for r in sel], [r["defect_mean"] for r in sel], ls,
                          color=color, marker="o", ms=3, label=paper_label(name))
            if g == "karras":
                xs = sorted({r["nfe"] for r in sweeps if r["grid"] == g})
                ymin = min(r["defect_mean"] for r in sweeps if r["target"] == tname
                           and r["grid"] == g)
                for k, order in enumerate((1, 2, 3)):
                    slope_triangle(ax, xs[1 + k], ymin * 0.5 ** (2 - k) * 1.5, order,
                                   factor=1.8)
            ax.set_xlabel("NFE (denoiser evaluations)")
            ax.set_ylabel("mean defect |x_N - x*(sigma_min)| (data units)")
            ax.set_title(f"{tname}, {g} grid\n(sigma 80 -> 0.002)", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, ctx.out / f"{STUDY}__defect_vs_nfe")
    plt.close(fig)
    return {"path": f"{STUDY}__defect_vs_nfe.png",
            "caption": "Seed 003 (RES): mean numerical defect against the exact PF-ODE solution "
                       "vs NFE on each target (rows) and grid (columns: the EDM/Karras rho = 7 "
                       "grid and the suboptimal grid(s)); dashed = DPM-Solver(++), solid = RES "
                       "of the same stage count; triangles: slopes 1, 2, 3."}


def _figure_headline(ctx, headline):
    pairs = list(dict.fromkeys(r["pair"] for r in headline))
    tnames = list(dict.fromkeys(r["target"] for r in headline))
    fig, axes = plt.subplots(1, len(tnames), figsize=(5.5 * len(tnames), 4.0), squeeze=False)
    for j, tname in enumerate(tnames):
        ax = axes[0, j]
        for k, pair in enumerate(pairs):
            sel = [r for r in headline if r["target"] == tname and r["pair"] == pair]
            x = np.array([r["nfe"] for r in sel]) + (k - 1) * 0.12
            y = np.array([100 * r["reduction"] for r in sel])
            err = np.array([[100 * (r["reduction"] - r["reduction_ci_low"]) for r in sel],
                            [100 * (r["reduction_ci_high"] - r["reduction"]) for r in sel]])
            ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, label=pair)
        ax.axhline(25.2, color="0.4", ls=":", label="paper: 25.2 % (ImageNet-64, NFE 9)")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xlabel("NFE (odd: final denoise at sigma = 0.002 for 2-stage methods)")
        ax.set_ylabel("defect reduction of RES vs DPM-Solver(++) (%)")
        ax.set_title(tname)
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, ctx.out / f"{STUDY}__nfe9")
    plt.close(fig)
    return {"path": f"{STUDY}__nfe9.png",
            "caption": "Relative reduction of the mean numerical defect, 1 - mean(RES)/mean(DPM-"
                       "Solver(++)), at NFE 7-11 on the Karras grid (95% paired bootstrap "
                       "intervals). NFE 9 for the 2-stage pair = 4 steps + the final denoise "
                       "(notes §2.7)."}


def _fmt_order(r) -> str:
    if r is None or r["order"] is None:
        return "no fit"
    return f"{r['order']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def _claims(headline, robust, orders, s) -> List[Claim]:
    claims = []
    main = [r for r in headline if r["baseline"] == "dpmpp_2s" and r["nfe"] == HEADLINE_NFE]
    meas = "; ".join(f"{r['target']}: {100 * r['reduction']:.1f} % "
                     f"[{100 * r['reduction_ci_low']:.1f}, {100 * r['reduction_ci_high']:.1f}]"
                     for r in main)
    nb = [r for r in headline if r["baseline"] == "dpmpp_2s" and r["nfe"] != HEADLINE_NFE]
    meas += "; NFE 7/8/10/11: " + ", ".join(
        f"{r['target']}@{r['nfe']}: {100 * r['reduction']:.0f} %" for r in nb)
    win = [r["target"] for r in main if r["reduction_ci_low"] > 0]
    lose = [r["target"] for r in main if r["reduction_ci_high"] < 0]
    close = [r["target"] for r in main if abs(100 * r["reduction"] - 25.2) <= 12.6]
    nb_win = sorted({r["nfe"] for r in nb if r["reduction_ci_low"] > 0 and all(
        q["reduction_ci_low"] > 0 for q in nb if q["nfe"] == r["nfe"])})
    if main and len(win) == len(main):
        verdict = "reproduced"
        reason = ("RES-2S has the lower defect on every target (interval above 0); size "
                  + ("within a factor 2 of the paper's on " + ", ".join(close) if close else
                     "differs from the paper's 25.2 % (toy mixtures, not an image model)"))
    elif win:
        verdict = "partly"
        reason = (f"at NFE 9 RES-2S is lower on {', '.join(win)} but higher on "
                  f"{', '.join(lose) or 'none'}; at NFE {', '.join(map(str, nb_win)) or '-'} it is "
                  "lower on every target, so the sign at one NFE depends on where the 4-step "
                  "Karras grid puts its levels")
    else:
        verdict = "not reproduced"
        reason = "the reduction's interval is not above 0 on any target at NFE 9"
    claims.append(Claim(
        STUDY, PAPER, "RES reduces the numerical defect of single-step DPM-Solver++ at NFE 9",
        "25.2 % (ImageNet-64 EDM model)", meas, verdict, reason))
    m2 = [r for r in headline if r["baseline"] == "dpmpp_2m" and r["nfe"] == HEADLINE_NFE]
    if m2:
        better = all(r["reduction_ci_low"] > 0 for r in m2)
        claims.append(Claim(
            STUDY, PAPER, "multistep RES (RES-2M) improves on DPM-Solver++(2M)",
            "improvement reported (no number for NFE 9)",
            "; ".join(f"{r['target']}@NFE 9: {100 * r['reduction']:.1f} % "
                      f"[{100 * r['reduction_ci_low']:.1f}, {100 * r['reduction_ci_high']:.1f}]"
                      for r in m2),
            "reproduced" if better else "not reproduced",
            "RES-2M lower on every target" if better else
            "at NFE 9 on these targets RES-2M has the larger defect (the notes' own check, "
            "§4.4, found the same at NFE 6-48)"))
    sens = []
    for r in robust:
        if r["grid"] != "sigma_uniform":
            continue
        sens.append(r)
    pairs_ok, parts = [], []
    for base, res in PAIRS:
        for tname in dict.fromkeys(r["target"] for r in sens):
            rb = next((r for r in sens if r["name"] == base and r["target"] == tname), None)
            rr = next((r for r in sens if r["name"] == res and r["target"] == tname), None)
            if rb is None or rr is None:
                continue
            fb = "n/a" if rb["inflation"] is None else f"{rb['inflation']:.1f}x"
            fr = "n/a" if rr["inflation"] is None else f"{rr['inflation']:.1f}x"
            parts.append(f"{tname}: {paper_label(base)} {fb}, {paper_label(res)} {fr}")
            if rb["inflation"] and rr["inflation"]:
                pairs_ok.append(rr["inflation"] < rb["inflation"])
    verdict = ("reproduced" if pairs_ok and all(pairs_ok) else
               "partly" if any(pairs_ok) else "not reproduced")
    infl = [r["inflation"] for r in sens if r["inflation"]]
    sig = grids.sigma_uniform(max(1, max(r["max_nfe_tried"] for r in sens) // 2), SIGMA_MIN,
                              SIGMA_MAX) if sens else None
    h_last = float(torch.log(sig[-2] / sig[-1])) if sig is not None else float("nan")
    claims.append(Claim(
        STUDY, PAPER, "an inefficient schedule can need ~2x the steps; RES is less sensitive",
        "~2x more steps (schedule not identified)",
        f"NFE inflation to reach mean defect {s['tolerance']:g} on a sigma-uniform grid vs "
        "Karras: " + "; ".join(parts),
        verdict,
        (f"uniform-in-sigma needs {min(infl):.0f}-{max(infl):.0f}x the NFE (its last step is "
         f"still h = {h_last:.1f} at the largest grid), far beyond 2x; " if infl else
         "tolerance not reached on the uniform grid; ")
        + "RES' inflation " + ("is lower for every pair" if verdict == "reproduced" else
                               "is lower only for some pairs" if verdict == "partly" else
                               "is not lower than DPM-Solver(++)'s")))
    parts, ok = [], True
    for name in SAMPLERS:
        rs = [r for r in orders if r["name"] == name and r["grid"] == "karras"]
        parts.append(f"{paper_label(name)}: " + ", ".join(
            f"{r['target']} {_fmt_order(r)}" for r in rs))
        ok &= all(r["order"] is not None and abs(r["order"] - r["declared"]) <= 0.3 for r in rs)
    stiff = {n: (exp_rk_orders(n)[0] if n in EXP_RK_TABLEAUX else
                 multistep_orders(*MULTISTEP_WEIGHT_SETS[n])[0]) for n in SAMPLERS}
    stiff_ok = all(stiff[res] > stiff[base] for base, res in PAIRS)
    parts.append("stiff orders (theory/): " + ", ".join(f"{paper_label(n)} {stiff[n]}"
                                                         for n in SAMPLERS))
    ok &= stiff_ok
    claims.append(Claim(
        STUDY, "notes §2.3-2.6 (order conditions)",
        "orders: RES-2S/RES-2M/DPM-Solver++(2S,2M) 2, RES-3S/DPM-Solver-3 3 (classical limit); "
        "RES satisfies the stiff conditions DPM-Solver++ violates",
        "2 / 3 (stiff: RES-2S 2, DPM-Solver++(2S) 1)", "; ".join(parts),
        "reproduced" if ok else "partly",
        "fitted slopes of the median defect vs NFE on the Karras grid within 0.3 of the declared "
        "orders; stiff orders from theory/ in the conditions table" if ok else
        "some fitted slopes are off by more than 0.3 from the declared order (see orders table)"))
    return claims


@register_study(STUDY, "RES vs DPM-Solver(++): defects vs NFE, NFE-9 reduction, schedules, "
                       "order conditions", "003")
def run_res_order_conditions(ctx: Context) -> StudyResult:
    s = study_settings(ctx.quick)
    tg = targets(ctx)
    sweeps, headline = [], []
    for i, tname in enumerate(s["targets"]):
        target = tg[tname]
        sweeps += _sweep(target, tname, "karras", s["karras_nfe"], ctx, s, 10 + i)
        for g in s["alt_grids"]:
            sweeps += _sweep(target, tname, g, s["alt_nfe"], ctx, s, 10 + i)
        headline += _headline(target, tname, ctx, s, 20 + i)
    robust = _robustness(sweeps, s["tolerance"])
    orders = _orders(sweeps)
    conditions = _condition_rows()
    claims = _claims(headline, robust, orders, s)
    figures = [_figure_defects(ctx, sweeps, ["karras"] + s["alt_grids"], s["targets"]),
               _figure_headline(ctx, headline)]
    main = [r for r in headline if r["baseline"] == "dpmpp_2s" and r["nfe"] == HEADLINE_NFE]
    cond_lines = []
    for name in ("euler", "dpmpp_2s", "res_2s", "dpm_solver_3", "res_3s", "dpmpp_2m", "res_2m"):
        rs = [r for r in conditions if r["sampler"] == name]
        failed = [f"{r['condition']}: {r['residual']}"
                  + (f" (~ {r['leading_term_h_to_0']})" if r["leading_term_h_to_0"] else "")
                  for r in rs if not r["holds_for_all_h"]]
        cond_lines.append(f"- {paper_label(name)}: stiff order {rs[0]['stiff_order']}, classical "
                          f"{rs[0]['classical_order']}; violated: "
                          + ("; ".join(failed) if failed else "none"))
    summary = ("RES vs DPM-Solver++(2S) at NFE 9 (4 steps + final denoise): "
               + ", ".join(f"{r['target']} {100 * r['reduction']:.1f} % "
                           f"[{100 * r['reduction_ci_low']:.1f}, {100 * r['reduction_ci_high']:.1f}]"
                           for r in main)
               + " defect reduction (paper: 25.2 % on ImageNet-64).\n\n"
               "Order-condition residuals from theory/ (residual as a function of h; leading "
               "term as h -> 0):\n\n" + "\n".join(cond_lines))
    settings = {"samplers": list(SAMPLERS), "grid": f"karras(M, {SIGMA_MIN}, {SIGMA_MAX}, "
                                                     f"rho={RHO}) ending at {SIGMA_MIN}",
                "alt_grids": s["alt_grids"],
                "targets": {"two_mode_1d": "weights 0.3/0.7, means -1.5/1, variances 0.05/0.2",
                            "ring_2d": "GaussianMixture.ring_2d()"},
                "nfe9_convention": "stages*steps (+1 final denoise at sigma_min to 0 when NFE is "
                                   "not a multiple of the stage count); reference x*(0) with the "
                                   "denoise, x*(sigma_min) without",
                "bootstrap": BOOTSTRAP, **s}
    return StudyResult(name=STUDY, tables={"defect": sweeps, "nfe9": headline, "orders": orders,
                                           "robustness": robust, "conditions": conditions},
                       claims=claims, figures=figures, summary=summary,
                       extra={"settings": settings})
