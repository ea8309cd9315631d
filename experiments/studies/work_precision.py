"""Study ``work-precision``: defect vs NFE and vs wall time for every deterministic sampler, the
measured-order table and the order card of REPORT.md.

Samplers: every deterministic entry of the registry except the implicit ``fv_ideal``
(``[n for n, s in SOLVERS.items() if not s.stochastic and n != "fv_ideal"]``), at their default
options. Targets: the 8-mode 2-D ring (GaussianMixture.ring_2d) and a seeded d = 64 anisotropic
mixture (GaussianMixture.random_anisotropic(64, 4, seed)). Grid: EDM/Karras rho = 7 from
sigma 80 to sigma_min = 0.002 > 0 (no final denoise, so the slope is the solver's order). The
alpha-bar-chain samplers (``li_*``, ``lagrange``) read the same grid as their alpha-bar chain
(abar = 1/(1 + sigma^2), DESIGN.md), so every sampler sees the same levels.

Defect: median over exact starting samples of ||x_M - x_ref||, reference
experiments.reference.solve_pf_ode; measured order: experiments.convergence.fit_order (slope of
the median defect vs the number of steps M, 95% interval, pre-asymptotic points and floor
dropped). Wall times (sampling call; inside the denoiser) go to the ``defect_timing`` table only,
since they are not reproducible byte for byte.

Order card (``StudyResult.extra["order_card"]``, rendered by reproduce.py): declared order
(``SOLVERS[name].order_for()``: the delivered order at default options, warm-up and final-step
caps included); the order theory/ assigns from its conditions where it has them — for exponential
RK tableaux the classical order with the stiff order (Hochbruck-Ostermann conditions of
theory.exp_rk), for multistep weight sets the same from their moment conditions (see
res_order_conditions.multistep_orders; this is the order of the interior rows, before warm-up
caps) — else "—"; the measured order on the 2-D target.

The module also holds the plotting/fit helpers shared with the ``lagrange-order`` and
``res-order-conditions`` studies.
"""
from __future__ import annotations

import functools
import math
from typing import Dict, List, Mapping, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from samplerlab.experiments.convergence import (defect_sweep, fit_order, order_fields,  # noqa: E402
                                                safe_fit, start_and_reference)
from samplerlab.experiments.executors import map_calls  # noqa: E402
from samplerlab.experiments.order_card import theory_order  # noqa: E402
from samplerlab.experiments.plotting import paper_label, slope_triangle  # noqa: E402
from samplerlab.experiments.io import save_figure  # noqa: E402
from samplerlab.experiments.targets import GaussianMixture  # noqa: E402
from samplerlab.solvers import SOLVERS, grids  # noqa: E402

from .base import (Claim, Context, StudyResult, check_verdict, draw_figures,  # noqa: E402
                   fraction_verdict, order_verdict, register_study)

__all__ = ["deterministic_samplers", "run_work_precision", "study_settings"]

# ----------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------

STUDY = "work-precision"
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
D_HIGH, HIGH_COMPONENTS = 64, 4
_FAMILY_STYLE = {"single_step": "-", "multistep": "--", "predictor_corrector": ":"}


def deterministic_samplers() -> List[str]:
    """Every deterministic sampler of the registry except the implicit ideal forward value and
    the learned ones (AMED needs a trained predictor; its own study compares it)."""
    return [n for n, s in SOLVERS.items()
            if not s.stochastic and n != "fv_ideal" and s.family != "learned"]


def study_settings(quick: bool) -> Dict:
    if quick:
        return {"steps": [16, 32, 64, 128], "n": {"ring_2d": 24, f"anisotropic_d{D_HIGH}": 12}}
    return {"steps": [8, 16, 32, 64, 128, 256],
            "n": {"ring_2d": 64, f"anisotropic_d{D_HIGH}": 32}}


def _targets(ctx: Context) -> Dict[str, GaussianMixture]:
    kw = dict(dtype=ctx.dtype, device=ctx.device)
    return {"ring_2d": GaussianMixture.ring_2d(**kw),
            f"anisotropic_d{D_HIGH}": GaussianMixture.random_anisotropic(
                D_HIGH, HIGH_COMPONENTS, seed=ctx.seed + 64, **kw)}


def _figure(ctx, tname, rows, timing):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    cmap = plt.get_cmap("tab20")
    names = list(dict.fromkeys(r["name"] for r in rows))
    for i, name in enumerate(names):
        sel = [r for r in rows if r["name"] == name]
        tsel = [r for r in timing if r["name"] == name]
        ls = _FAMILY_STYLE.get(SOLVERS[name].family, "-")
        kw = dict(color=cmap(i % 20), ls=ls, marker="o", ms=3, lw=1.1, label=paper_label(name))
        axes[0].loglog([r["nfe"] for r in sel], [r["defect_median"] for r in sel], **kw)
        axes[1].loglog([r["seconds"] for r in tsel], [r["defect_median"] for r in tsel], **kw)
    nfe = sorted({r["nfe"] for r in rows})
    low = min(r["defect_median"] for r in rows)
    for k, order in enumerate((1, 2, 3)):
        slope_triangle(axes[0], nfe[len(nfe) // 2], low * 10 ** (1.2 * (2 - k)) * 3, order)
    axes[0].set_xlabel("NFE (denoiser evaluations)")
    axes[1].set_xlabel("wall time of the sampling call (s)")
    for ax in axes:
        ax.set_ylabel("median defect |x_M - x_ref| (data units)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title(f"{tname}: defect vs NFE (Karras 80 -> 0.002)")
    axes[1].set_title(f"{tname}: defect vs wall time ({ctx.device})")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    save_figure(fig, ctx.out / f"{STUDY}__{tname}")
    plt.close(fig)
    return {"path": f"{STUDY}__{tname}.png",
            "caption": f"Work-precision on {tname}: median defect against the exact PF-ODE "
                       "solution vs NFE (left; triangles: slopes 1, 2, 3) and vs wall time "
                       "(right) for every deterministic sampler at default options, Karras grid "
                       "80 -> 0.002 (alpha-bar-chain samplers read it as their chain). Solid: "
                       "single-step, dashed: multistep, dotted: predictor-corrector."}


@register_study(STUDY, "work-precision of every deterministic sampler; measured-order card", "—")
def run_work_precision(ctx: Context) -> StudyResult:
    s = study_settings(ctx.quick)
    names = deterministic_samplers()
    grid = functools.partial(grids.karras, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=RHO,
                             dtype=ctx.dtype, device=ctx.device)
    targets = _targets(ctx)
    ends = grid(s["steps"][0])
    # cells (experiments.executors): the exact references of both targets, then theory/'s order
    # of each sampler (symbolic, so it runs beside the sweeps rather than after them) and one
    # sweep cell per (target, sampler); merged in this fixed order
    refs = map_calls([(f"reference {tname}", start_and_reference,
                       (target, s["n"][tname], float(ends[0]), float(ends[-1]),
                        ctx.seed + 500 + i))
                      for i, (tname, target) in enumerate(targets.items())])
    calls = [(f"theory order {n}", theory_order, (n,)) for n in names]
    calls += [(f"sweep {tname} {n}", defect_sweep, (target, [(n, n, {})], s["steps"], grid),
               dict(n=s["n"][tname], seed=ctx.seed + 500 + i, timing=True, x_start=x_start,
                    x_ref=x_ref))
              for i, ((tname, target), (x_start, x_ref)) in enumerate(zip(targets.items(), refs))
              for n in names]
    done = map_calls(calls)
    theory, sweeps = dict(zip(names, done[:len(names)])), done[len(names):]
    defect_rows, timing_rows, order_rows = [], [], []
    for i, tname in enumerate(targets):
        rows = [r for sweep in sweeps[i * len(names):(i + 1) * len(names)] for r in sweep]
        for r in rows:
            base = {"target": tname, "sampler": paper_label(r["name"]), "name": r["name"],
                    "family": SOLVERS[r["name"]].family, "steps": r["steps"], "nfe": r["nfe"]}
            defect_rows.append({**base, **{k: r[k] for k in ("defect_mean", "defect_median",
                                                             "defect_q90", "defect_max")}})
            timing_rows.append({**base, "seconds": r["seconds"],
                                "model_seconds": r["model_seconds"],
                                "defect_median": r["defect_median"]})
        for n in names:
            est = safe_fit(rows, n)
            order_rows.append({"target": tname, "sampler": paper_label(n), "name": n,
                               "family": SOLVERS[n].family, "declared": SOLVERS[n].order_for(),
                               **order_fields(est)})
    figures = draw_figures(ctx, [(_figure, (tname,
                                            [r for r in defect_rows if r["target"] == tname],
                                            [r for r in timing_rows if r["target"] == tname]))
                                 for tname in targets])
    card = []
    for n in names:
        r = next(o for o in order_rows if o["name"] == n and o["target"] == "ring_2d")
        card.append({"sampler": n, "family": SOLVERS[n].family, "declared": r["declared"],
                     "theory": theory[n],
                     "measured": "no fit" if r["order"] is None else f"{r['order']:.2f}",
                     "interval": "" if r["order"] is None else
                     f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]",
                     "points": f"M = {r['n_used']}" if r["points"] else "0"})
    for o in order_rows:
        o["verdict"] = order_verdict(None if o["order"] is None else
                                     (o["order"], o["ci_low"], o["ci_high"]), o["declared"])
    for o in order_rows:
        nominal = theory[o["name"]].split(" ")[0]
        o["theory_order"] = int(nominal) if nominal.isdigit() else None
        o["verdict_vs_theory"] = (None if o["theory_order"] is None else order_verdict(
            None if o["order"] is None else (o["order"], o["ci_low"], o["ci_high"]),
            o["theory_order"]))
    agree = [o for o in order_rows if o["verdict"] == "reproduced"]
    n_pre = sum(o["verdict"] == "pre-asymptotic" for o in order_rows)
    n_theory = sum(o["verdict"] != "reproduced" and o["verdict_vs_theory"] == "reproduced"
                   for o in order_rows)
    above = [o for o in order_rows if o["verdict"] != "reproduced" and o["order"] is not None
             and o["order"] > o["declared"]]
    below = [o for o in order_rows if o["verdict"] != "reproduced" and o not in above]
    claims = [Claim(
        STUDY, "registry (declared orders)",
        "every deterministic sampler converges at its declared order on the Karras grid",
        "declared order (SOLVERS[name].order_for())",
        f"{len(agree)}/{len(order_rows)} (sampler, target) fits agree with the declared order "
        "(interval contains it or within 5 %); higher: "
        + (", ".join(f"{o['name']}@{o['target']} {o['order']:.2f}" for o in above) or "none")
        + "; lower/no fit: "
        + (", ".join(f"{o['name']}@{o['target']} "
                     + ("no fit" if o["order"] is None else f"{o['order']:.2f}")
                     for o in below) or "none"),
        check_verdict(fraction_verdict(len(agree), len(order_rows))),
        "a check of the registry, not a paper claim; all fitted slopes match" if not above and
        not below else
        f"a check of the registry, not a paper claim; of the {len(order_rows) - len(agree)} "
        f"others, {n_pre} are within 0.5 (pre-asymptotic) and {n_theory} agree with theory/'s "
        "nominal order instead (orders capped by low-order warm-up/final steps, whose error is "
        "still negligible at M <= 256, see the order card); per-sampler numbers in the orders "
        "table",
        kind="check")]
    summary = (f"Work-precision of {len(names)} deterministic samplers on the 2-D ring and a "
               f"d = {D_HIGH} anisotropic mixture (Karras 80 -> 0.002): {len(agree)}/"
               f"{len(order_rows)} measured orders agree with the declared ones (order rule).\n"
               "Order card: see the table above; wall times in work-precision__defect_timing.csv.")
    settings = {"samplers": names, "grid": f"karras(M, {SIGMA_MIN}, {SIGMA_MAX}, rho={RHO})",
                "alpha_bar_chain": "li_* and lagrange read the Karras grid as their alpha-bar "
                                   "chain, abar = 1/(1 + sigma^2)",
                "targets": {"ring_2d": "GaussianMixture.ring_2d()",
                            f"anisotropic_d{D_HIGH}": f"GaussianMixture.random_anisotropic("
                                                      f"{D_HIGH}, {HIGH_COMPONENTS}, "
                                                      f"seed={ctx.seed + 64})"},
                **s}
    return StudyResult(name=STUDY, tables={"defect": defect_rows, "orders": order_rows,
                                           "defect_timing": timing_rows},
                       claims=claims, figures=figures, summary=summary,
                       extra={"settings": settings, "order_card": card})
