"""``samplerlab bench``: how much time the samplers spend outside the model.

A benchmark command, never a timed test (benchmarks/README.md). Four sections, each printed as a
table and written as CSV (``benchmarks/results/`` of the source checkout by default, or ``--out``):

* ``overhead`` — for every sampler in ``SOLVERS`` (``fv_ideal`` skipped: its NFE is the number of
  fixed-point iterations, a theory check, not a fast sampler) on a cheap model (2-D mixture,
  K = 4 full covariances, n = 1024 samples, M = 100 steps) and an expensive one (d = 64, K = 16
  full covariances, n = 4096, M = 10), in float64 and float32, on ``--threads`` threads (2).
  A third, ``null`` model (``D(x) = x / 2``, one elementwise op; cheap model's sizes) isolates the
  stepper's own time per step from the model's noise. Two ``floor:`` rows per (model, dtype) time
  the least work any sampler does, in the same loop shape: one model call and one single-pass
  in-place update ``x <- x + b (D - x)`` per step (``floor:update``), plus one Gaussian draw per step
  (``floor:update+noise``, what a stochastic sampler cannot avoid). On a model that evicts the
  state from the caches, the floor is the memory traffic of reading ``x`` and ``D`` once.
  Each run is timed as a whole (wall clock) while :class:`~samplerlab.solvers.NFECounter` times
  every model call *in the same run*; ``overhead = wall - model``, reported per step and as the
  ratio ``overhead / model`` (= overhead / (NFE x mean model time)). The grid is diffusers'
  DPM-Solver grid of the DDPM linear table (``timestep_spacing='trailing'``, final level 0,
  :func:`~samplerlab.solvers.diffusers_interop.grid_from_scheduler`), so every sampler and the
  diffusers schedulers step over the same levels. The coefficient build (theory/, once per
  grid) is inside the timed run: it is part of what a sweep pays. ``amed`` and ``amed_plugin``
  run without a trained predictor (their fixed default ``r, c, a``), so their rows time the
  per-sample coefficient path (theory's tableau evaluated on ``[batch]`` tensors) without the
  predictor network's own cost.
* side by side, when diffusers is installed: ``DPMSolverMultistepScheduler`` (dpmsolver++, 2M)
  and ``UniPCMultistepScheduler`` (order 2, bh2) driving the same mixture at the same NFE through
  an epsilon adapter (:func:`~samplerlab.solvers.diffusers_interop.model_from_denoiser`); the
  adapter's conversions are timed as *model* time (in diffusers' favour), so their overhead is
  the scheduler's ``step`` and the loop.
* ``throughput`` — the mixture denoiser in samples x components per second against a plain
  torch matmul roofline on the same machine: the two products the eigenbasis evaluation needs,
  ``[n, d] @ [d, K d]`` and ``[n, K d] @ [K d, d]`` (targets.py), timed alone.
* ``reference`` — cost of an exact reference solution (:func:`solve_pf_ode`, DOP853) for 64
  trajectories of a 3-D mixture from sigma = 80 to 0.002 at tolerance 1e-10.

Targets (issue 7, 2-core machines): on the cheap model samplerlab's ``dpmpp_2m`` spends at most
0.25 x the time per step outside the model that diffusers' ``DPMSolverMultistepScheduler``
spends in the same run; on the expensive model every sampler's total time is within 1.01 x its
model time. Both verdicts are printed. After one untimed warm-up run of each, the samplers run
``repeats`` rounds (cheap 7, expensive 3), each round every sampler once in turn (so a slow
spell of a shared machine hits all of them alike); ``wall``, ``model`` and ``overhead`` are each the minimum
over the repeats (timeit's convention: other processes only ever add time), and
``total_over_model = 1 + overhead/model``. The load average at the start is printed and stored
in settings.json: on a shared machine read the numbers with it.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

__all__ = ["BenchConfig", "run_bench", "add_parser", "default_output_dir"]

SKIPPED = {"fv_ideal": "implicit: NFE = fixed-point iterations (theory check, not timed)"}


class BenchConfig:
    """Sizes of one bench run (full or ``quick``)."""

    def __init__(self, quick: bool = False):
        if quick:
            self.models = {"cheap": dict(d=2, K=4, n=128, M=10),
                           "expensive": dict(d=8, K=4, n=256, M=4),
                           "null": dict(d=2, K=4, n=128, M=10, null=True)}
            self.repeats = {"cheap": 1, "expensive": 1, "null": 1}
            self.reference = dict(n=4, d=3, K=4, tol=1e-6)
            self.throughput_calls = 2
        else:
            self.models = {"cheap": dict(d=2, K=4, n=1024, M=100),
                           "expensive": dict(d=64, K=16, n=4096, M=10),
                           "null": dict(d=2, K=4, n=1024, M=100, null=True)}
            self.repeats = {"cheap": 7, "expensive": 3, "null": 7}
            self.reference = dict(n=64, d=3, K=4, tol=1e-10)
            self.throughput_calls = 10


def check_writable(folder: Path, name: str = "out") -> Path:
    """Create ``folder`` if needed and check a file can be written there (``ValueError`` naming
    ``name`` otherwise), so a long run does not fail only when it writes its results."""
    folder = Path(folder)
    probe = folder / ".samplerlab-write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"{name}: cannot write to {str(folder)!r} ({exc.strerror or exc})") from None
    return folder


def default_output_dir() -> Path:
    """``benchmarks/results/`` of the source checkout when running from one, else ``./bench``."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here / "benchmarks" / "results"
    return Path.cwd() / "bench"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _grid(steps: int, dtype, device):
    """The shared grid: diffusers' DPM-Solver 'trailing' grid of the DDPM table, final level 0."""
    from samplerlab.solvers import grids
    from samplerlab.solvers.diffusers_interop import sigmas_from_timesteps
    table = grids.ddpm_linear_alphas_cumprod()
    ts = grids.discrete_timesteps(table.numel(), steps, "trailing")
    return table, sigmas_from_timesteps(ts, table, final="zero", dtype=dtype, device=device), ts


def _diffusers_schedulers(table):
    """The two diffusers schedulers of the side-by-side comparison (None without diffusers)."""
    try:
        from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
    except ImportError:
        return None
    # diffusers' default table is the same DDPM linear table (built in float32)
    common = dict(num_train_timesteps=table.numel(), beta_schedule="linear", beta_start=1e-4,
                  beta_end=0.02, timestep_spacing="trailing", prediction_type="epsilon")
    return {
        "diffusers:DPMSolverMultistep": lambda: DPMSolverMultistepScheduler(
            algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", **common),
        "diffusers:UniPCMultistep": lambda: UniPCMultistepScheduler(
            solver_order=2, solver_type="bh2", final_sigmas_type="zero", **common),
    }


def _null_denoiser(x, sigma):
    """A model that costs one elementwise op: isolates the stepper's own time per step."""
    return x * 0.5


def _time_samplerlab(name, denoiser, x, sigmas, seed, **checks):
    from samplerlab.solvers import NFECounter, resolve_solver, sample
    counted = NFECounter(denoiser)
    gen = seed if resolve_solver(name).stochastic else None
    _sync(x.device)
    start = time.perf_counter()
    sample(name, counted, x, sigmas, generator=gen, **checks)
    _sync(x.device)
    return time.perf_counter() - start, counted.seconds, counted.count


def _time_diffusers(make_scheduler, denoiser, x, sigmas, ts):
    from samplerlab.solvers import NFECounter
    from samplerlab.solvers.diffusers_interop import model_from_denoiser
    scheduler = make_scheduler()
    model = NFECounter(model_from_denoiser(denoiser, scheduler))
    x_vp = x / torch.sqrt(1 + sigmas[0] ** 2)
    _sync(x.device)
    start = time.perf_counter()
    scheduler.set_timesteps(len(ts))
    if scheduler.timesteps.tolist() != ts.tolist():
        raise RuntimeError(f"{type(scheduler).__name__} chose other timesteps than the shared grid")
    for t in scheduler.timesteps:
        x_vp = scheduler.step(model(x_vp, t), t, x_vp).prev_sample
    _sync(x.device)
    return time.perf_counter() - start, model.seconds, model.count


def _time_floor(denoiser, x, sigmas, seed, noise):
    """The least work any sampler does per step, timed like a sampler: one model call and one
    single-pass in-place update ``x <- x + b (D - x)`` (Euler's, as ``lerp_``: the state and the
    model output each read once, the state written once, nothing allocated; the last step to
    sigma = 0 just takes ``D``), plus with ``noise`` one Gaussian draw added in place (what a
    one-draw-per-step stochastic sampler cannot avoid). Its ``wall - model`` is the floor of the
    overhead column. The working copy of ``x`` is made before the clock starts."""
    from samplerlab.solvers import NFECounter
    counted = NFECounter(denoiser)
    gen = torch.Generator(device=x.device).manual_seed(seed) if noise else None
    levels = sigmas.tolist()
    y = x.clone()
    _sync(x.device)
    start = time.perf_counter()
    for n in range(len(levels) - 1):
        d = counted(y, sigmas[n])
        if levels[n + 1] == 0:
            y = d
            continue
        y.lerp_(d, 1.0 - levels[n + 1] / levels[n])
        if noise:
            y.add_(torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device),
                   alpha=0.5 * levels[n + 1])
    _sync(x.device)
    return time.perf_counter() - start, counted.seconds, counted.count


FLOORS = {"floor:update": False, "floor:update+noise": True}
#: samplers timed a second time with the finite-value guard and the grid check off (row label
#: ``name + UNGUARDED``): the guard's cost is the difference to the default (guarded) row
GUARD_PROBES = ("dpmpp_2m", "unipc", "res_3s")
UNGUARDED = ":unguarded"


def _overhead_rows(cfg: BenchConfig, samplers, dtypes, device, seed, with_diffusers, log):
    from samplerlab.experiments.targets import GaussianMixture
    rows = []
    for model_name, size in cfg.models.items():
        for dtype in dtypes:
            target = GaussianMixture.random_anisotropic(size["d"], size["K"], seed=seed,
                                                        dtype=dtype, device=device)
            table, sigmas, ts = _grid(size["M"], dtype, device)
            x = target.sample(size["n"], generator=torch.Generator(device=device).manual_seed(seed),
                              sigma=float(sigmas[0]))
            den = _null_denoiser if size.get("null") else target.denoiser
            runners = {name: (lambda name=name: _time_samplerlab(name, den, x, sigmas, seed))
                       for name in samplers}
            for name in GUARD_PROBES:
                if name in samplers:
                    runners[name + UNGUARDED] = (lambda name=name: _time_samplerlab(
                        name, den, x, sigmas, seed, check_finite=False, check_grid=False))
            for label, noise in FLOORS.items():
                runners[label] = (lambda noise=noise: _time_floor(den, x, sigmas, seed, noise))
            if with_diffusers:
                makers = _diffusers_schedulers(table) or {}
                for label, make in makers.items():
                    runners[label] = (lambda make=make: _time_diffusers(make, den, x, sigmas, ts))
            steps = sigmas.numel() - 1
            for run in runners.values():
                run()  # warm-up (caches, allocator)
            # repeats interleaved across the runners (round robin), so a slow spell of the
            # machine lands on every runner alike instead of on whichever ran during it
            timings_of = {label: [] for label in runners}
            for _ in range(cfg.repeats[model_name]):
                for label, run in runners.items():
                    timings_of[label].append(run())
            for label, timings in timings_of.items():
                # minima over the repeats (timeit's convention: other processes only add time)
                wall = min(t[0] for t in timings)
                model = min(t[1] for t in timings)
                over = min(t[0] - t[1] for t in timings)
                rows.append({"model": model_name, "dtype": str(dtype).replace("torch.", ""),
                             "sampler": label, "d": size["d"], "K": size["K"], "n": size["n"],
                             "steps": steps, "nfe": timings[0][2], "wall_s": wall,
                             "model_s": model, "overhead_s": over,
                             "overhead_us_per_step": 1e6 * over / steps,
                             "overhead_ratio": over / model if model > 0 else math.nan,
                             "total_over_model": 1 + over / model if model > 0 else math.nan})
                log(f"  {model_name:<9} {rows[-1]['dtype']:<8} {label:<30} "
                    f"{rows[-1]['overhead_us_per_step']:9.1f} us/step  "
                    f"ratio {rows[-1]['overhead_ratio']:.4f}")
    # relative to diffusers' DPM-Solver++(2M) in the same (model, dtype)
    ref = {(r["model"], r["dtype"]): r["overhead_us_per_step"] for r in rows
           if r["sampler"] == "diffusers:DPMSolverMultistep"}
    for r in rows:
        base = ref.get((r["model"], r["dtype"]))
        r["vs_dpmsolver"] = r["overhead_us_per_step"] / base if base else math.nan
    return rows


def _median_time(fn, calls: int, device) -> float:
    fn()
    out = []
    for _ in range(calls):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def _throughput_rows(cfg: BenchConfig, dtypes, device, seed):
    from samplerlab.experiments.targets import GaussianMixture
    rows = []
    for model_name, size in cfg.models.items():
        if size.get("null"):
            continue
        n, d, k = size["n"], size["d"], size["K"]
        for dtype in dtypes:
            target = GaussianMixture.random_anisotropic(d, k, seed=seed, dtype=dtype, device=device)
            g = torch.Generator(device=device).manual_seed(seed)
            x = target.sample(n, generator=g, sigma=1.0)
            sigma = torch.tensor(1.0, dtype=dtype, device=device)
            t_den = _median_time(lambda: target.denoiser(x, sigma), cfg.throughput_calls, device)
            a = torch.randn(n, d, dtype=dtype, device=device, generator=g)
            b = torch.randn(d, k * d, dtype=dtype, device=device, generator=g)
            c = torch.randn(k * d, d, dtype=dtype, device=device, generator=g)
            t_mm = _median_time(lambda: (a @ b) @ c, cfg.throughput_calls, device)
            flops = 4.0 * n * k * d * d
            rows.append({"model": model_name, "dtype": str(dtype).replace("torch.", ""),
                         "n": n, "d": d, "K": k, "denoiser_s": t_den, "matmul_s": t_mm,
                         "denoiser_samples_components_per_s": n * k / t_den,
                         "roofline_samples_components_per_s": n * k / t_mm,
                         "fraction_of_roofline": t_mm / t_den,
                         "matmul_gflops": flops / t_mm / 1e9})
    return rows


def _reference_rows(cfg: BenchConfig, device, seed):
    from samplerlab.experiments.reference import solve_pf_ode
    from samplerlab.experiments.targets import GaussianMixture
    ref = cfg.reference
    target = GaussianMixture.random_anisotropic(ref["d"], ref["K"], seed=seed, device=device)
    x = target.sample(ref["n"], generator=torch.Generator(device=device).manual_seed(seed),
                      sigma=80.0)
    start = time.perf_counter()
    solve_pf_ode(target, x, 80.0, 0.002, rtol=ref["tol"], atol=ref["tol"])
    wall = time.perf_counter() - start
    return [{"trajectories": ref["n"], "d": ref["d"], "K": ref["K"], "sigma_from": 80.0,
             "sigma_to": 0.002, "tolerance": ref["tol"], "wall_s": wall,
             "s_per_trajectory": wall / ref["n"]}]


def _table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _verdicts(rows) -> List[str]:
    lines = []
    for dtype, model in sorted({(r["dtype"], m) for r in rows for m in ("cheap", "null")}):
        cheap = {r["sampler"]: r for r in rows if r["model"] == model and r["dtype"] == dtype}
        base = cheap.get("diffusers:DPMSolverMultistep")
        if base is not None and "dpmpp_2m" in cheap:
            ratio = cheap["dpmpp_2m"]["vs_dpmsolver"]
            ours = [s for s in cheap if s not in FLOORS and not s.startswith("diffusers:")
                    and not s.endswith(UNGUARDED)]
            worst = max(ours, key=lambda s: cheap[s]["vs_dpmsolver"])
            lines.append(f"{model}/{dtype}: dpmpp_2m overhead per step = {ratio:.3f} x diffusers' "
                         f"DPMSolverMultistep ({'PASS' if ratio <= 0.25 else 'FAIL'} <= 0.25); "
                         f"{sum(cheap[s]['vs_dpmsolver'] <= 0.25 for s in ours)}/{len(ours)} "
                         f"samplers within 0.25, worst {worst} {cheap[worst]['vs_dpmsolver']:.3f}")
        exp = [r for r in rows if r["model"] == "expensive" and r["dtype"] == dtype
               and r["sampler"] not in FLOORS and not r["sampler"].startswith("diffusers:")
               and not r["sampler"].endswith(UNGUARDED)] if model == "cheap" else []
        lines += _guard_verdicts(rows, model, dtype)
        floors = {r["sampler"]: r["total_over_model"] for r in rows
                  if r["model"] == "expensive" and r["dtype"] == dtype and r["sampler"] in FLOORS}
        if exp:
            bad = [r for r in exp if r["total_over_model"] > 1.01]
            worst = max(exp, key=lambda r: r["total_over_model"])
            lines.append(f"expensive/{dtype}: total/model <= 1.01 for {len(exp) - len(bad)}/"
                         f"{len(exp)} samplers ({'PASS' if not bad else 'FAIL'}); worst "
                         f"{worst['sampler']} {worst['total_over_model']:.4f}"
                         + (f"; over: {', '.join(r['sampler'] for r in bad)}" if bad else ""))
            if floors:
                lines.append(f"expensive/{dtype}: floor (one model call + one in-place update per "
                             f"step) total/model = {floors['floor:update']:.4f}; with one Gaussian "
                             f"draw per step {floors['floor:update+noise']:.4f}")
    return lines


def _guard_verdicts(rows, model: str, dtype: str) -> List[str]:
    """The finite-value guard's cost: guarded (default) minus unguarded rows of the probes.

    Targets (issue 13): on the cheap model the guarded sampler's overhead per step stays <= 0.25
    x diffusers' DPMSolverMultistep; on the expensive model the guard adds at most 0.5 % of the
    model time (``(overhead_guarded - overhead_unguarded) / model_unguarded``: the difference of
    the time outside the model, so the model's own run-to-run spread cancels; each a minimum
    over the repeats, so the difference can come out slightly negative)."""
    lines = []
    by = {r["sampler"]: r for r in rows if r["model"] == model and r["dtype"] == dtype}
    exp = {r["sampler"]: r for r in rows if r["model"] == "expensive" and r["dtype"] == dtype}
    for name in GUARD_PROBES:
        on, off = by.get(name), by.get(name + UNGUARDED)
        if on is None or off is None:
            continue
        cost = on["overhead_us_per_step"] - off["overhead_us_per_step"]
        vs = on.get("vs_dpmsolver", math.nan)
        verdict = "" if math.isnan(vs) else (f"; guarded overhead = {vs:.3f} x diffusers' "
                                             f"({'PASS' if vs <= 0.25 else 'FAIL'} <= 0.25)")
        lines.append(f"{model}/{dtype}: guard cost {name} = {cost:+.1f} us/step "
                     f"({on['overhead_us_per_step']:.1f} on vs {off['overhead_us_per_step']:.1f} "
                     f"off){verdict}")
        if model == "cheap" and name in exp and name + UNGUARDED in exp:
            e_on, e_off = exp[name], exp[name + UNGUARDED]
            frac = (e_on["overhead_s"] - e_off["overhead_s"]) / e_off["model_s"]
            lines.append(f"expensive/{dtype}: guard cost {name} = {100 * frac:+.3f} % of the "
                         f"model time ({'PASS' if frac <= 0.005 else 'FAIL'} <= 0.5 %)")
    return lines


def run_bench(*, quick: bool = False, out=None, threads: int = 2, samplers=None,
              dtypes=("float64", "float32"), sections=("overhead", "throughput", "reference"),
              device: str = "cpu", seed: int = 0, with_diffusers: bool = True,
              stream=None) -> Dict[str, list]:
    """Run the bench; print the tables and verdicts to ``stream``; write CSVs into ``out``.

    ``samplers``: names from ``SOLVERS`` (default: all but ``fv_ideal``). Returns the rows of
    each section. Restores torch's thread count afterwards.
    """
    from samplerlab.experiments.devices import check_device
    from samplerlab.experiments.io import write_csv, write_json
    from samplerlab.solvers import SOLVERS, get_solver

    stream = stream if stream is not None else sys.stdout

    def log(msg):
        print(msg, file=stream, flush=True)

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    table_dtypes = {"float64": torch.float64, "float32": torch.float32}
    bad = [d for d in dtypes if d not in table_dtypes]
    if bad or not dtypes:
        raise ValueError(f"dtypes must be a non-empty subset of {sorted(table_dtypes)}, got {dtypes!r}")
    unknown = [s for s in sections if s not in ("overhead", "throughput", "reference")]
    if unknown:
        raise ValueError(f"sections: unknown {unknown}; known: overhead, throughput, reference")
    dev = torch.device(check_device(device))
    if samplers is None:
        samplers = [s for s in SOLVERS if s not in SKIPPED]
    else:
        samplers = [get_solver(s).name for s in samplers]
        skipped = [s for s in samplers if s in SKIPPED]
        if skipped:
            raise ValueError(f"samplers: {skipped} cannot be benchmarked ({SKIPPED[skipped[0]]})")
    cfg = BenchConfig(quick)
    out = Path(out) if out is not None else default_output_dir()
    check_writable(out, "out")  # before the run, not after it
    torch_dtypes = [table_dtypes[d] for d in dtypes]
    have_diffusers = False
    if with_diffusers:
        try:
            import diffusers  # noqa: F401
            have_diffusers = True
        except ImportError:
            log("diffusers is not installed: the side-by-side rows are skipped "
                "(pip install 'samplerlab[diffusers]')")

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    results: Dict[str, list] = {}
    try:
        load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
        log(f"samplerlab bench{' --quick' if quick else ''}: {threads} threads, device {device}, "
            f"torch {torch.__version__}, load average {load[0]:.2f} on {os.cpu_count()} CPUs; "
            f"skipped: " + "; ".join(f"{k} ({v})" for k, v in SKIPPED.items()))
        if "overhead" in sections:
            log("overhead (wall - model, minima over repeats):")
            rows = _overhead_rows(cfg, samplers, torch_dtypes, dev, seed, have_diffusers, log)
            results["overhead"] = rows
            cols = ["model", "dtype", "sampler", "steps", "nfe", "wall_s", "model_s",
                    "overhead_us_per_step", "overhead_ratio", "total_over_model", "vs_dpmsolver"]
            log(_table(rows, cols))
            for line in _verdicts(rows):
                log(line)
            write_csv(out / "overhead.csv", rows)
        if "throughput" in sections:
            rows = _throughput_rows(cfg, torch_dtypes, dev, seed)
            results["throughput"] = rows
            log("mixture denoiser throughput vs matmul roofline:")
            log(_table(rows, ["model", "dtype", "n", "d", "K",
                              "denoiser_samples_components_per_s",
                              "roofline_samples_components_per_s", "fraction_of_roofline",
                              "matmul_gflops"]))
            write_csv(out / "throughput.csv", rows)
        if "reference" in sections:
            rows = _reference_rows(cfg, dev, seed)
            results["reference"] = rows
            log("reference solution cost (solve_pf_ode, DOP853):")
            log(_table(rows, list(rows[0])))
            write_csv(out / "reference.csv", rows)
        write_json(out / "settings.json", {
            "quick": quick, "threads": threads, "device": device, "seed": seed,
            "dtypes": list(dtypes), "samplers": samplers, "skipped": SKIPPED,
            "models": cfg.models, "repeats": cfg.repeats, "reference": cfg.reference,
            "torch": torch.__version__, "diffusers": have_diffusers,
            "load_average_at_start": list(load), "cpu_count": os.cpu_count()})
        log(f"wrote {out}")
    finally:
        torch.set_num_threads(old_threads)
    return results


def _cmd_bench(args) -> int:
    from samplerlab.experiments.devices import check_device
    try:
        check_device(args.device, "--device")
        run_bench(quick=args.quick, out=args.out, threads=args.threads, samplers=args.samplers,
                  dtypes=tuple(args.dtype), sections=tuple(args.sections), device=args.device,
                  seed=args.seed, with_diffusers=not args.no_diffusers)
    except ValueError as exc:
        print(f"samplerlab bench: error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``samplerlab bench`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("bench", help="time spent outside the model, per sampler "
                              "(and against diffusers' schedulers when installed)")
    p.add_argument("--quick", action="store_true", help="reduced sizes (smoke run, seconds)")
    p.add_argument("--out", default=None, help="output folder (default: benchmarks/results/)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--samplers", nargs="+", metavar="NAME", default=None,
                   help="only these samplers (default: every sampler but fv_ideal)")
    p.add_argument("--dtype", nargs="+", default=["float64", "float32"],
                   choices=["float64", "float32"])
    p.add_argument("--sections", nargs="+", default=["overhead", "throughput", "reference"],
                   choices=["overhead", "throughput", "reference"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-diffusers", action="store_true",
                   help="skip the diffusers side-by-side rows even when installed")
    p.set_defaults(func=_cmd_bench)
    return p
