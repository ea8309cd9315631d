"""``samplerlab check``: the order card of any sampler — a built-in, a user's tableau, a spec or a
plain function — measured the way the built-ins are measured.

    from samplerlab.experiments import check
    report = check("res_2s")                 # or a SolverSpec, an ExpRKTableau, a callable
    print(report.text())
    report.write("out/")                     # check_<name>.md, check_<name>.csv, check_<name>.png

The card (every number is measured or derived here, nothing is typed in):

* **declared** order: ``spec.order_for(**options)`` (``None`` for an undeclared function).
* **symbolic** orders (exponential RK tableaux): stiff and classical order from the
  Hochbruck-Ostermann conditions up to order 4 and the rooted-tree order of the ``h -> 0`` limit
  tableau (:func:`samplerlab.theory.exp_rk.analyse_tableau`), with the residual of every violated
  condition as a function of h; built-in multistep weight sets: their moment-condition orders
  (:func:`samplerlab.experiments.order_card.theory_order`).
* **NFE per step** counted by the ledger (:class:`~samplerlab.solvers.NFECounter`) on two grids,
  beside ``spec.nfe`` (the declared cost).
* **measured global order** with its 95 % interval (:func:`samplerlab.experiments.order.estimate_order`:
  floor, pre-asymptotic points and near-floor points are excluded by its rule and reported) on
  three exact targets — the 1-D two-mode mixture, the 2-D ring, a d = 64 anisotropic mixture —
  on the Karras and log-SNR-uniform (``lambda_uniform``) grids, sigma 20 -> 0.05, defect against
  the exact PF-ODE solution (:func:`samplerlab.experiments.convergence.defect_sweep`). Stochastic
  samplers do not converge to the PF-ODE solution pathwise: their strong defect is not an order
  and is not fitted (the card says so).
* **median defect at NFE 4-20** on the ring beside comparison samplers (default: the
  deterministic built-ins of the same NFE per step).
* **exact 1-D TV slope** (deterministic samplers): TV between the law of the sampler's output and
  the exact marginal on the 1-D mixture by density propagation
  (:func:`samplerlab.experiments.metrics.tv_density_1d_deterministic`), fitted against M.
* **verdicts**, one line per claim, disagreement stated with the numbers
  ("declared 3, measured 2.02 [1.97, 2.06]"). A measured order agrees with a claimed one when the
  claim lies in the 95 % interval or within :data:`AGREEMENT_TOL` of the estimate.

``quick=True`` uses fewer steps and samples, only the Karras grid and skips the TV slope (timed by
benchmarks/check_speed.py, never in a test).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from samplerlab.solvers import SOLVERS, NFECounter, SolverSpec, grids, resolve_solver
from samplerlab.solvers.progress import Progress
from samplerlab.theory.exp_rk import EXP_RK_TABLEAUX, ExpRKTableau, ParametrisedTableau, \
    TableauAnalysis, analyse_tableau, get_tableau

from .convergence import defect_sweep, starting_points
from .devices import check_device
from .order import OrderEstimationError, estimate_order
from .reference import solve_pf_ode
from .targets import GaussianMixture

__all__ = ["CheckReport", "check", "CheckSettings", "AGREEMENT_TOL", "as_solver_spec",
           "load_sampler"]

#: a measured order agrees with a claim within this distance (or when the interval covers it)
AGREEMENT_TOL = 0.2
SIGMA_MAX, SIGMA_MIN = 20.0, 0.05
#: preferred comparison samplers per NFE per step (deterministic built-ins)
_COMPARISONS = {1: ("euler", "dpmpp_2m", "res_2m", "unipc"),
                2: ("heun", "dpmpp_2s", "res_2s", "dpm_solver_2"),
                3: ("dpm_solver_3", "res_3s")}
_GRIDS = {"karras": grids.karras, "lambda_uniform": grids.lambda_uniform}


@dataclasses.dataclass(frozen=True)
class CheckSettings:
    """Sizes of one check (``quick`` picks the small set)."""

    steps: Sequence[int]
    n: int
    grids: Sequence[str]
    nfe_budgets: Sequence[int]
    tv_steps: Sequence[int]
    tv_panels: int = 400

    @classmethod
    def make(cls, quick: bool) -> "CheckSettings":
        if quick:
            return cls(steps=(8, 16, 32, 64), n=16, grids=("karras",),
                       nfe_budgets=(4, 6, 8, 12, 16, 20), tv_steps=())
        return cls(steps=(8, 16, 32, 64, 128, 256), n=64, grids=("karras", "lambda_uniform"),
                   nfe_budgets=(4, 6, 8, 10, 12, 16, 20), tv_steps=(4, 8, 16, 32))


def _targets(device: str = "cpu") -> Dict[str, GaussianMixture]:
    return {"two_mode_1d": GaussianMixture.two_mode_1d(device=device),
            "ring_2d": GaussianMixture.ring_2d(device=device),
            "aniso_64d": GaussianMixture.random_anisotropic(64, 4, seed=0, device=device)}


def as_solver_spec(sampler) -> SolverSpec:
    """A registered name, a SolverSpec, an ExpRKTableau (validated and analysed, not registered)
    or a plain callable as a :class:`SolverSpec`."""
    if isinstance(sampler, ExpRKTableau):
        from samplerlab.solvers.catalogue import tableau_spec
        return tableau_spec(sampler)
    return resolve_solver(sampler)


def _symbolic(spec: SolverSpec, options) -> Optional[TableauAnalysis]:
    method = spec.method
    if isinstance(method, ParametrisedTableau):
        opts = spec.options(**options)
        return analyse_tableau(method.at(**{k: opts[k] for k in method.defaults}))
    if isinstance(spec.analysis, TableauAnalysis):
        return spec.analysis
    if spec.builtin and isinstance(method, str) and method in EXP_RK_TABLEAUX \
            and spec.family == "single_step" and not spec.stochastic:
        opts = spec.options(**options)
        params = {k: opts[k] for k in EXP_RK_TABLEAUX[method][1] if k in opts}
        from samplerlab.theory.single_step import exact_param
        return analyse_tableau(get_tableau(method, **{k: exact_param(v, k)
                                                      for k, v in params.items()}))
    return None


def _fmt_order(v) -> str:
    if v is None:
        return "undeclared"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


@dataclasses.dataclass
class CheckReport:
    """The order card of one sampler (module docstring); ``rows()`` are every number of it."""

    name: str
    family: str
    stochastic: bool
    declared: Optional[float]
    options: dict
    symbolic: Optional[TableauAnalysis]
    theory: str
    nfe_per_step: Optional[float]
    nfe_declared_ok: Optional[bool]
    orders: List[dict]
    defects: List[dict]
    tv: Optional[dict]
    verdicts: List[str]
    quick: bool
    device: str = "cpu"

    # -- tidy numbers ------------------------------------------------------------------------
    def rows(self) -> List[dict]:
        out = [{"section": "declared", "sampler": self.name, "value": self.declared}]
        if self.symbolic is not None:
            a = self.symbolic
            out += [{"section": "symbolic", "sampler": self.name, "key": k, "value": v}
                    for k, v in (("stiff_order", a.stiff_order), ("classical_order",
                                 a.classical_order), ("underlying_order", a.underlying_order))]
            out += [{"section": "condition", "sampler": self.name, "key": c.name,
                     "value": int(c.holds), "residual": str(c.residual),
                     "leading": "" if c.leading is None else str(c.leading)}
                    for c in a.checks]
        out.append({"section": "nfe_per_step", "sampler": self.name, "value": self.nfe_per_step})
        for r in self.orders:
            out.append({"section": "measured_order", "sampler": self.name, **r})
        for r in self.defects:
            out.append({"section": "defect_at_nfe", **r})
        if self.tv is not None:
            out.append({"section": "tv_slope", "sampler": self.name, **self.tv})
        return out

    # -- the card ------------------------------------------------------------------------------
    def lines(self) -> List[str]:
        L = [f"# Order card: {self.name}", "",
             f"family {self.family}; stochastic: {self.stochastic}; options: "
             f"{self.options or 'defaults'}{'; --quick sizes' if self.quick else ''}"
             f"{'' if self.device == 'cpu' else f'; device {self.device}'}", "",
             f"* declared order: {_fmt_order(self.declared)}"]
        if self.symbolic is not None:
            a = self.symbolic
            L.append(f"* symbolic: classical order {a.classical_order}, stiff order "
                     f"{a.stiff_order} (Hochbruck-Ostermann conditions up to {a.max_order}); "
                     f"h -> 0 limit tableau (rooted trees): order {a.underlying_order}")
            bad = a.violated()
            if bad:
                L.append("* violated conditions (residual as a function of h; leading term at h = 0):")
                L += [f"    {c.name} [order {c.order}] {c.statement}: {c.residual}"
                      f"  (leading {c.leading})" for c in bad]
        elif self.theory:
            L.append(f"* theory: {self.theory}")
        L.append(f"* NFE per step (ledger): {_fmt_order(self.nfe_per_step)}"
                 + (" (mean on 8 steps; the cost depends on the iterations)"
                    if self.nfe_declared_ok is None and self.family == "implicit" else "")
                 + ("" if self.nfe_declared_ok is None else
                    f"; declared cost {'matches' if self.nfe_declared_ok else 'DIFFERS'}"))
        L += ["", "## Measured global order (95 % interval; defect vs the exact PF-ODE solution)", "",
              "| target | grid | order | 95 % interval | points used (M) | note |",
              "|---|---|---|---|---|---|"]
        for r in self.orders:
            if r.get("order") is None:
                L.append(f"| {r['target']} | {r['grid']} | — | — | — | {r['note']} |")
            else:
                L.append(f"| {r['target']} | {r['grid']} | {r['order']:.2f} | [{r['ci_low']:.2f}, "
                         f"{r['ci_high']:.2f}] | {r['n_used']} | {r['note']} |")
        if self.defects:
            budgets = sorted({r["nfe"] for r in self.defects})
            names = list(dict.fromkeys(r["sampler"] for r in self.defects))
            L += ["", "## Median defect at NFE 4-20 (ring_2d, Karras grid)", "",
                  "| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
            for nm in names:
                cells = {r["nfe"]: r["defect_median"] for r in self.defects if r["sampler"] == nm}
                L.append(f"| {nm} | " + " | ".join(f"{cells[b]:.2e}" if b in cells else "—"
                                                    for b in budgets) + " |")
        if self.tv is not None:
            t = self.tv
            L += ["", "## Exact 1-D TV (density propagation, two_mode_1d, Karras grid)", "",
                  "TV at M = " + (", ".join(f"{m}: {v:.3e}" for m, v in zip(t["steps"], t["tv"]))
                                  or "none")
                  + (f"; slope {t['order']:.2f} [{t['ci_low']:.2f}, {t['ci_high']:.2f}]"
                     if t.get("order") is not None else f"; no fit ({t.get('note')})")]
            if t.get("skipped") and t.get("order") is not None:
                L.append(f"(not computed: {t['skipped']})")
        L += ["", "## Verdicts", ""] + [f"* {v}" for v in self.verdicts]
        return L

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def write(self, out) -> Dict[str, Path]:
        """Write ``check_<name>.md``, ``.csv`` and the work-precision ``.png`` (atomically)."""
        from .io import atomic_write_bytes, save_figure, write_csv
        out = Path(out)
        stem = out / f"check_{self.name}"
        paths = {"md": atomic_write_bytes(stem.with_suffix(".md"), self.text().encode())}
        rows = self.rows()
        columns = list(dict.fromkeys(k for r in rows for k in r))
        paths["csv"] = write_csv(stem.with_suffix(".csv"), rows, columns)
        if self.defects:
            paths["png"] = save_figure(self._figure(), stem, formats=("png",))[0]
        return paths

    def _figure(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.5, 4.0))
        for nm in dict.fromkeys(r["sampler"] for r in self.defects):
            sel = sorted((r["nfe"], r["defect_median"]) for r in self.defects if r["sampler"] == nm)
            ax.loglog([a for a, _ in sel], [b for _, b in sel], "o-" if nm == self.name else ".--",
                      lw=2.0 if nm == self.name else 1.0, label=nm)
        ax.set_xlabel("NFE")
        ax.set_ylabel("median defect (ring_2d, Karras)")
        ax.set_title(f"work-precision: {self.name}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        plt.close(fig)
        return fig


def _agrees(est: dict, claim: float) -> bool:
    return (est["ci_low"] <= claim <= est["ci_high"]) or abs(est["order"] - claim) <= AGREEMENT_TOL


def _nfe_per_step(spec, options, target) -> Tuple[Optional[float], Optional[bool]]:
    counts, ok = [], True
    for m in (4, 8):
        sig = grids.karras(m, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, device=target.device)
        x = starting_points(target, 2, SIGMA_MAX, 0)
        counted = NFECounter(target.denoiser)
        spec(counted, x, sig, generator=0, **options)
        counts.append(counted.count)
        declared = spec.nfe(sig, **options)
        ok = ok and (declared is None or declared == counted.count)
        if declared is None:
            ok = None
    if ok is None:  # iteration-dependent cost: the mean per step on the 8-step grid
        return counts[1] / 8.0, None
    per = (counts[1] - counts[0]) / 4.0
    return (int(per) if per == int(per) else per), ok


def _comparisons(spec, per_step, against):
    if against is not None:
        return [a for a in against if a != spec.name]
    pool = _COMPARISONS.get(per_step, ())
    return [n for n in pool if n in SOLVERS and n != spec.name][:4]


def check(sampler, *, against: Optional[Sequence[str]] = None, quick: bool = False,
          seed: int = 0, progress: bool = False, out=None, threads: Optional[int] = 1,
          device: str = "cpu", **options) -> CheckReport:
    """The order card of ``sampler`` (module docstring) with sampler ``options``.

    ``sampler``: a registered name, a :class:`SolverSpec`, an ``ExpRKTableau`` or a plain callable
    with the sample signature. ``against``: comparison sampler names (default: the deterministic
    built-ins with the same NFE per step). ``out``: if given, the card is written there.
    ``threads``: torch intra-op threads during the check, restored afterwards (default 1: the
    tensors are tiny; on a loaded 2-core machine 2 threads made the default check 20x slower,
    benchmarks/check_speed.py); None leaves torch's setting alone. ``device``: ``"cpu"`` or
    ``"cuda"``, where the targets, grids, samples and references live (the numbers agree to
    round-off; ``ValueError`` naming ``device`` for any other value or CUDA missing here).
    """
    check_device(device)
    if threads is None:
        return _check(sampler, against, quick, seed, progress, out, options, device)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _check(sampler, against, quick, seed, progress, out, options, device)
    finally:
        torch.set_num_threads(before)


def _check(sampler, against, quick, seed, progress, out, options, device) -> CheckReport:
    spec = as_solver_spec(sampler)
    opts = dict(options)
    spec.options(**opts)  # validate now (names, ranges)
    cfg = CheckSettings.make(bool(quick))
    targets = _targets(device)
    declared = spec.order_for(**opts)
    symbolic = _symbolic(spec, opts)
    theory = ""
    if symbolic is None and spec.builtin:
        from .order_card import theory_order
        theory = theory_order(spec.name)
        theory = "" if theory == "\u2014" else theory
    elif symbolic is None and spec.family == "multistep" and isinstance(spec.method, str):
        from samplerlab.theory.orders import multistep_orders
        k = spec.options(**opts).get("order", None) or _declared_steps(spec)
        stiff, classical, _ = multistep_orders(spec.method, k)
        theory = f"{classical} (stiff {stiff}; weights {spec.method!r} with {k} values)"
    per_step, nfe_ok = _nfe_per_step(spec, opts, targets["ring_2d"])
    comps = _comparisons(spec, per_step, against)
    for c in comps:
        resolve_solver(c)
    fits = [] if spec.stochastic else [(t, g) for t in targets for g in cfg.grids]
    total = len(fits) + 1 + (0 if spec.stochastic or not cfg.tv_steps else 1)
    orders: List[dict] = []
    with Progress(total, f"check {spec.name}", enabled=progress) as bar:
        for tname, gname in fits:
            target = targets[tname]
            make = _GRIDS[gname]
            rows = defect_sweep(target, [(spec.name, spec, opts)], list(cfg.steps),
                                lambda m: make(m, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                                               device=device),
                                n=cfg.n, seed=seed)
            orders.append(_fit_row(tname, gname, rows))
            bar.update()
        if spec.stochastic:
            orders.append({"target": "all", "grid": "all", "order": None,
                           "note": "stochastic: its pathwise defect vs the PF-ODE solution is "
                                   "not an order (weak order: tests/test_solvers_weak_order.py)"})
        defects = _defect_rows(spec, opts, comps, per_step, cfg, targets["ring_2d"], seed)
        bar.update()
        tv = None
        if not spec.stochastic and cfg.tv_steps:
            tv = _tv_slope(spec, opts, targets["two_mode_1d"], cfg)
            bar.update()
    report = CheckReport(name=spec.name, family=spec.family, stochastic=spec.stochastic,
                         declared=declared, options=opts, symbolic=symbolic, theory=theory,
                         nfe_per_step=per_step, nfe_declared_ok=nfe_ok, orders=orders,
                         defects=defects, tv=tv, verdicts=[], quick=bool(quick),
                         device=device)
    report.verdicts = _verdicts(report)
    if out is not None:
        report.write(out)
    return report


def _declared_steps(spec) -> int:
    """Past values of a user multistep method (its declared weight order)."""
    try:
        return int(spec.order_for(warmup="single_step"))
    except ValueError:        # more than 4 values: no single-step starter; the declared order
        return int(spec.order_for())


def _fit_row(tname, gname, rows) -> dict:
    errs = [r["defect_median"] for r in rows]
    base = {"target": tname, "grid": gname,
            "steps": " ".join(str(r["steps"]) for r in rows),
            "defect_median": " ".join(f"{e:.3e}" for e in errs)}
    try:
        est = estimate_order([r["steps"] for r in rows], errs, floor=1e-11)
    except OrderEstimationError as exc:
        return {**base, "order": None, "note": f"no fit: {exc}"}
    labels = [lab for lab in est.labels if lab != "used"]
    note = ", ".join(sorted(set(labels))) + " excluded" if labels else ""
    return {**base, "order": float(est.order), "ci_low": float(est.ci_low),
            "ci_high": float(est.ci_high), "n_used": " ".join(f"{v:g}" for v in est.n_used),
            "note": note}


def _defect_rows(spec, opts, comps, per_step, cfg, target, seed) -> List[dict]:
    cases = [(spec.name, spec, opts)] + [(c, resolve_solver(c), {}) for c in comps]
    x = starting_points(target, cfg.n, SIGMA_MAX, seed + 1)
    ref = solve_pf_ode(target, x, SIGMA_MAX, SIGMA_MIN)
    out = []
    for label, s, o in cases:
        per = per_step if s is spec else _nfe_per_step(s, o, target)[0]
        if not per or per != int(per):
            continue
        steps = sorted({b // int(per) for b in cfg.nfe_budgets if b % int(per) == 0 and b // int(per) >= 1})
        if not steps:
            continue
        rows = defect_sweep(target, [(label, s, o)], steps,
                            lambda m: grids.karras(m, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                                                   device=target.device),
                            n=cfg.n, seed=seed, x_start=x, x_ref=ref)
        out += [{"sampler": label, "nfe": r["nfe"], "steps": r["steps"],
                 "defect_median": r["defect_median"]} for r in rows]
    return out


def _tv_slope(spec, opts, target, cfg) -> dict:
    from .metrics import tv_density_1d_deterministic
    values, steps, skipped = [], [], []
    for m in cfg.tv_steps:
        sig = grids.karras(m, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, device=target.device)
        s0, s1 = float(sig[0]), float(sig[-1])
        base = target.marginal(s0)
        half = float(base.means.abs().max()) + 8.0 * math.sqrt(float(base.eigenvalues.max()))
        edges = torch.linspace(-half, half, cfg.tv_panels + 1, dtype=torch.float64,
                               device=target.device)
        try:
            res = tv_density_1d_deterministic(lambda z: spec(target.denoiser, z, sig, **opts),
                                              lambda z: target.log_prob(z, s0),
                                              lambda y: target.log_prob(y, s1), edges,
                                              mass_tol=1e-3)
        except ValueError as exc:   # e.g. the sampler's map is not monotone at this M
            skipped.append(f"M={m}: {exc}")
            continue
        values.append(float(res.value))
        steps.append(m)
    row = {"steps": steps, "tv": values}
    if skipped:
        row["skipped"] = "; ".join(skipped)
    try:
        est = estimate_order(steps, values, floor=1e-5)  # the quadrature's mass error
        row.update(order=float(est.order), ci_low=float(est.ci_low), ci_high=float(est.ci_high))
    except (OrderEstimationError, ValueError) as exc:
        row.update(order=None, note=str(exc) + (f" ({row['skipped']})" if skipped else ""))
    return row


def _verdicts(r: CheckReport) -> List[str]:
    out = []
    claims = []
    if r.declared is not None:
        claims.append(("declared", r.declared))
    if r.symbolic is not None:
        a = r.symbolic
        if r.declared == a.classical_order:
            claims = [("declared = symbolic classical", r.declared)]
        else:
            claims.append(("symbolic classical", a.classical_order))
        if r.declared is not None:
            same = r.declared == a.order
            out.append(f"declared {_fmt_order(r.declared)} vs symbolic {a.order} (classical "
                       f"{a.classical_order}, stiff {a.stiff_order}, limit tableau "
                       f"{a.underlying_order}): {'agree' if same else 'DISAGREE'}")
    if r.nfe_declared_ok is False:
        out.append(f"NFE: the ledger counts {r.nfe_per_step} per step, the declared cost "
                   f"(spec.nfe) DIFFERS")
    elif r.nfe_declared_ok:
        out.append(f"NFE: the ledger counts {r.nfe_per_step} per step = the declared cost")
    fitted = [o for o in r.orders if o.get("order") is not None]
    for o in r.orders:
        where = f"{o['target']}/{o['grid']}"
        if o.get("order") is None:
            out.append(f"{where}: no measured order ({o['note']})")
            continue
        meas = f"measured {o['order']:.2f} [{o['ci_low']:.2f}, {o['ci_high']:.2f}]"
        if not claims:
            out.append(f"{where}: {meas} (no claim to compare)")
        for label, claim in claims:
            ok = _agrees(o, claim)
            out.append(f"{where}: {label} {_fmt_order(claim)}, {meas}: "
                       f"{'agrees' if ok else 'DISAGREES'}")
    if r.tv is not None and r.tv.get("order") is not None:
        t = r.tv
        meas = f"{t['order']:.2f} [{t['ci_low']:.2f}, {t['ci_high']:.2f}]"
        if claims:
            label, claim = claims[0]
            ok = (t["ci_low"] <= claim <= t["ci_high"]) or abs(t["order"] - claim) <= AGREEMENT_TOL
            out.append(f"1-D TV slope: {label} {_fmt_order(claim)}, measured {meas}: "
                       f"{'agrees' if ok else 'DISAGREES'}")
        else:
            out.append(f"1-D TV slope: measured {meas}")
    if fitted and claims:
        bad = sum(1 for o in fitted for _, c in claims if not _agrees(o, c))
        tv_bad = any("1-D TV slope" in v and "DISAGREES" in v for v in out)
        note = ""
        if bad and r.quick:
            note = (" (--quick sizes, M <= 64 and 16 samples: a disagreement may be "
                    "pre-asymptotic; rerun without --quick)")
        tv = "" if r.tv is None else (", TV slope disagrees" if tv_bad else ", TV slope agrees"
                                      if r.tv.get("order") is not None else ", no TV fit")
        out.append(f"summary: {len(fitted)} measured orders, {bad} disagreement(s) with the "
                   f"claims{tv}{note}")
    return out


def load_sampler(text: str):
    """``NAME`` (registered), ``module:attr`` or ``path/to/file.py:attr`` -> the object to check
    (an ExpRKTableau, a SolverSpec, a callable, or a registered name). Importing the module may
    register samplers (``register_exp_rk`` at import), which is how a file adds its own."""
    import importlib
    import importlib.util
    if not isinstance(text, str) or not text:
        raise ValueError(f"sampler must be NAME, module:attr or file.py:attr, got {text!r}")
    if ":" not in text:
        return text
    where, attr = text.rsplit(":", 1)
    if not attr.isidentifier():
        raise ValueError(f"{text!r}: the attribute after ':' must be a Python name, got {attr!r}")
    if where.endswith(".py") or Path(where).is_file():
        path = Path(where)
        if not path.is_file():
            raise FileNotFoundError(f"{text!r}: no file {where}")
        modname = f"samplerlab_check_{path.stem}"
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    if not hasattr(module, attr):
        raise AttributeError(f"{text!r}: {where} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if isinstance(obj, (ExpRKTableau, SolverSpec, str)) or callable(obj):
        return obj
    raise TypeError(f"{text!r} is a {type(obj).__name__}; expected an ExpRKTableau, a SolverSpec, "
                    f"a sampler function or a registered name")


def main_check(args) -> int:
    """``samplerlab check`` (experiments/cli.py)."""
    try:
        sampler = load_sampler(args.sampler)
        against = [a for a in args.against.split(",") if a] if args.against else None
        device = check_device(getattr(args, "device", "cpu"), "--device")
        report = check(sampler, against=against, quick=args.quick, seed=args.seed,
                       progress=not args.no_progress, threads=None,  # the CLI's --threads
                       device=device)
    except (ValueError, TypeError, ImportError, AttributeError, FileNotFoundError) as exc:
        print(f"samplerlab check: error: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    paths = report.write(args.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
