"""The ``samplerlab`` console script.

Subcommands:

* ``samplerlab reproduce [--only NAME ...] [--quick] [--device cpu|cuda] [--dtype float64|float32]
  [--out DIR] [--seed N]`` — run the registered studies, write CSV/JSON/figures and REPORT.md.
* ``samplerlab theory ...`` — print a named tableau or weight set and its order conditions.
* ``samplerlab bench`` — solver overhead beyond the model, against diffusers' schedulers.
* ``samplerlab demo`` — sample a 2-D mixture with a few samplers and print their defects.
* ``samplerlab check NAME | module:attr | file.py:attr [--against a,b] [--quick] [--out DIR]
  [--device cpu|cuda]`` — the order card of any sampler (experiments/check.py).
* ``samplerlab compare module:factory --samplers a,b --nfe 4,6,8 [--out DIR]`` — verify samplers
  on your own denoiser against its self-reference (experiments/verify.py); ``factory()`` returns
  ``(denoiser, x_start, sigmas_or_grid_spec)``.
"""
from __future__ import annotations

import argparse
import sys


def _cmd_demo(args) -> int:
    import torch

    from samplerlab.experiments.metrics import defect
    from samplerlab.experiments.reference import solve_pf_ode
    from samplerlab.experiments.targets import GaussianMixture
    from samplerlab.solvers import SOLVERS, NFECounter, grids, sample

    if args.steps < 1 or args.n < 1:
        raise ValueError(f"--steps and --n must be >= 1, got --steps {args.steps} --n {args.n}")
    target = GaussianMixture.ring_2d()
    g = torch.Generator().manual_seed(args.seed)
    sigmas = grids.karras(args.steps, append_zero=False)
    x = target.sample(args.n, generator=g, sigma=float(sigmas[0]))
    ref = solve_pf_ode(target, x, float(sigmas[0]), float(sigmas[-1]))
    print(f"2-D ring mixture, {args.n} samples, Karras grid with {args.steps} steps "
          f"({float(sigmas[0]):g} -> {float(sigmas[-1]):g})")
    print(f"{'sampler':<14}{'NFE':>5}{'median defect':>16}")
    for name in ("euler", "heun", "dpmpp_2m", "res_2s", "unipc", "f_ddim"):
        counted = NFECounter(target.denoiser)
        out = sample(name, counted, x, sigmas)
        print(f"{name:<14}{counted.count:>5}{defect(out, ref).median:>16.3e}")
    return 0


def _cmd_reproduce(args) -> int:
    from samplerlab.experiments.bench import check_writable
    from samplerlab.experiments.executors import CellError
    from samplerlab.experiments.reproduce import reproduce

    from samplerlab.experiments.devices import check_device

    try:
        check_device(args.device, "--device")
        if args.out is not None:
            check_writable(args.out, "--out")
        return reproduce(only=args.only, quick=args.quick, device=args.device, dtype=args.dtype,
                         out=args.out, seed=args.seed, progress=not args.no_progress,
                         report_only=args.report_only, jobs=args.jobs, dask=args.dask)
    except ValueError as exc:
        print(f"samplerlab reproduce: error: {exc}", file=sys.stderr)
        return 2
    except CellError as exc:
        print(f"samplerlab reproduce: {exc} (outputs of the unfinished study were not written)",
              file=sys.stderr)
        return 1


def _cmd_check(args) -> int:
    from samplerlab.experiments.check import main_check
    return main_check(args)


def _load_factory(target: str):
    """``module:factory`` -> the factory callable (the current folder is importable)."""
    import importlib
    import os

    if target.count(":") != 1 or not all(target.split(":")):
        raise ValueError(f"expected module:factory (e.g. mymodels.toy:make), got {target!r}")
    module_name, attr = target.split(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"module {module_name!r} has no callable {attr!r}")
    return factory


def _int_list(text: str, name: str):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ValueError(f"{name} must be a comma-separated list of integers, got {text!r}") from exc
    if not values:
        raise ValueError(f"{name} must hold at least one integer, got {text!r}")
    return values


def _cmd_compare(args) -> int:
    from pathlib import Path

    import torch

    from samplerlab.experiments.verify import ReferenceToleranceError, grid_from_spec, verify_model

    try:
        factory = _load_factory(args.factory)
        made = factory()
        if not isinstance(made, tuple) or len(made) != 3:
            raise TypeError(f"{args.factory}() must return the tuple (denoiser, x_start, "
                            f"sigmas_or_grid_spec), got {type(made).__name__}"
                            + (f" of length {len(made)}" if isinstance(made, tuple) else ""))
        denoiser, x_start, spec = made
        if not callable(denoiser):
            raise TypeError(f"{args.factory}()[0] (denoiser) must be callable, got "
                            f"{type(denoiser).__name__}")
        if not isinstance(x_start, torch.Tensor):
            raise TypeError(f"{args.factory}()[1] (x_start) must be a torch.Tensor, got "
                            f"{type(x_start).__name__}")
        sigma_max, sigma_min, grid, grid_options = grid_from_spec(spec)
        samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
        budgets = {"nfe": None, "steps": None}
        if args.steps is not None:
            budgets["steps"] = _int_list(args.steps, "--steps")
        else:
            budgets["nfe"] = _int_list(args.nfe, "--nfe")
        result = verify_model(denoiser, x_start, sigma_max, sigma_min, samplers,
                              budgets["steps"], nfe=budgets["nfe"], reference=args.reference,
                              grid=grid, grid_options=grid_options, rtol=args.rtol,
                              tolerance=args.tolerance, richardson_steps=args.richardson_steps,
                              model_name=args.factory)
        paths = result.write(Path(args.out), stem=args.stem)
    except (ValueError, TypeError, FloatingPointError, ReferenceToleranceError) as exc:
        print(f"samplerlab compare: error: {exc}", file=sys.stderr)
        return 2
    print(result.markdown())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samplerlab",
        description="Numerical analysis and theory verification for diffusion samplers.")
    sub = parser.add_subparsers(dest="command")

    rep = sub.add_parser("reproduce", help="run the studies, write figures/ and REPORT.md")
    rep.add_argument("--only", nargs="+", metavar="NAME", help="run only these studies")
    rep.add_argument("--quick", action="store_true", help="reduced sizes (CI)")
    rep.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    rep.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    rep.add_argument("--out", default=None, help="output folder (default: figures/ of the "
                     "source tree, or ./figures)")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--jobs", type=int, default=1,
                     help="run the sweep cells on N local worker processes (default 1: serial); "
                          "outputs are identical whatever N")
    rep.add_argument("--dask", metavar="ADDRESS", default=None,
                     help="run the sweep cells on a Dask cluster (scheduler address; needs "
                          "pip install 'samplerlab[dask]')")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep.add_argument("--report-only", action="store_true",
                     help="run nothing; rewrite REPORT.md from the results stored in --out")
    rep.add_argument("--threads", type=int, default=1,
                     help="torch intra-op threads (default 1: the studies' tensors are small)")
    rep.set_defaults(func=_cmd_reproduce)

    demo = sub.add_parser("demo", help="a small sampling demo on a 2-D mixture")
    demo.add_argument("--steps", type=int, default=8)
    demo.add_argument("--n", type=int, default=512)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    demo.set_defaults(func=_cmd_demo)

    chk = sub.add_parser("check", help="the order card of a sampler: declared, symbolic and "
                         "measured orders, NFE, defects beside comparison samplers")
    chk.add_argument("sampler", help="a registered NAME, module:attr or path/to/file.py:attr "
                     "(a tableau, a SolverSpec or a sampler function)")
    chk.add_argument("--against", default=None, metavar="A,B",
                     help="comparison samplers (default: built-ins with the same NFE per step)")
    chk.add_argument("--quick", action="store_true", help="small sizes, Karras grid only, no TV")
    chk.add_argument("--out", default="samplerlab_check", help="output folder")
    chk.add_argument("--seed", type=int, default=0)
    chk.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                     help="where the targets, grids and samples live (default cpu)")
    chk.add_argument("--no-progress", action="store_true", help="no progress bar")
    chk.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    chk.set_defaults(func=_cmd_check)
    cmp_ = sub.add_parser("compare", help="verify samplers on your own denoiser against its "
                          "self-reference (module:factory returning (denoiser, x_start, "
                          "sigmas_or_grid_spec))")
    cmp_.add_argument("factory", help="module:factory; factory() returns (denoiser, x_start, "
                      "sigmas or {'sigma_max', 'sigma_min', 'grid', ...})")
    cmp_.add_argument("--samplers", required=True, help="comma-separated deterministic samplers")
    cmp_.add_argument("--nfe", default="4,6,8,12,16,20", help="comma-separated NFE budgets "
                      "(per sampler the largest number of steps that fits)")
    cmp_.add_argument("--steps", default=None, help="comma-separated numbers of steps instead "
                      "of --nfe")
    cmp_.add_argument("--reference", default="dop853", choices=["dop853", "richardson"])
    cmp_.add_argument("--rtol", type=float, default=None, help="DOP853 tolerance (default 1e-10 "
                      "in float64, 1e-6 otherwise)")
    cmp_.add_argument("--tolerance", type=float, default=None, help="required accuracy of the "
                      "self-reference (absolute, per sample)")
    cmp_.add_argument("--richardson-steps", type=int, default=128)
    cmp_.add_argument("--out", default="compare", help="output folder (default ./compare)")
    cmp_.add_argument("--stem", default="compare", help="file name stem of the outputs")
    cmp_.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    cmp_.set_defaults(func=_cmd_compare)

    from samplerlab.experiments.bench import add_parser as add_bench_parser
    from samplerlab.theory.cli import add_parser as add_theory_parser

    add_theory_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            parser.error(f"--threads must be >= 1, got {threads}")
        import torch
        torch.set_num_threads(threads)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError, FloatingPointError) as exc:
        # bad input (arguments, an unwritable --out, ...): one line and exit code 2, no traceback
        print(f"samplerlab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
