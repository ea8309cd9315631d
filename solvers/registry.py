"""The sampler registry: every named sampler is a value — a :class:`SolverSpec` — run by the
generic stepper of its family.

``SOLVERS[name]`` is a :class:`SolverSpec`: the family (which stepper runs it), the theoretical
global ``order`` at default options, whether it is ``stochastic``, the ``paper`` it comes from,
its option schema (defaults and, once, the ranges of the continuous options: :class:`OptionRange`)
and ``nfe(sigmas, **options)`` — the number of denoiser calls a grid costs (audited by the NFE
ledger in the tests). ``sample(sampler, denoiser, x, sigmas, **options)`` runs it. Coefficients are
computed once per grid by theory/ (``build``), never per step or sample.

One mechanism (issue 11). Every sampler — the built-in catalogue, AMED, and a user's own — is
added by :func:`register_spec`; the public constructors call it:

* :func:`register_exp_rk` — an exponential RK tableau given as sympy data (theory/ validates it
  and derives its order; ``samplerlab.solvers.user_methods``),
* :func:`register_multistep` — a linear multistep method from a function of the grid returning
  its weights,
* :func:`register` — any Python function with the sample signature.

A family is one :class:`Family` value ``{run, nfe}`` in :data:`FAMILIES` (what ``build`` returns
is the family's business): ``single_step``, ``multistep``, ``predictor_corrector``, ``implicit``,
``learned`` (AMED, added by solvers/amed.py through :func:`register_family`) and ``function``
(a user's callable). ``SolverSpec.__call__`` validates the arguments every sampler takes and the
options (names, ranges, the spec's own ``validate``), then hands over to its family.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from typing import Any, Callable, Dict, Mapping, Optional, Union

import torch

from ._checks import check_in_range, check_positive_int, check_same_device_dtype, check_sigmas
from ._checks import check_finite as _require_finite, check_grid_conditioning
from samplerlab.theory.validation import check_tensor_like
from . import steppers

__all__ = ["SolverSpec", "SOLVERS", "sample", "get_solver", "resolve_solver", "OptionRange",
           "Family", "FAMILIES", "register_family", "register_spec", "register", "unregister",
           "solver_from_function"]

SINGLE = "single_step"
MULTI = "multistep"
PC = "predictor_corrector"
IMPLICIT = "implicit"
FUNCTION = "function"

PAPERS = {
    "ddim": "Song, Meng, Ermon, Denoising Diffusion Implicit Models (ICLR 2021)",
    "ddpm": "Ho, Jain, Abbeel, Denoising Diffusion Probabilistic Models (NeurIPS 2020); "
            "eta form of Song et al. (ICLR 2021)",
    "edm": "Karras, Aittala, Aila, Laine, Elucidating the Design Space of Diffusion-Based "
           "Generative Models (NeurIPS 2022)",
    "dpm": "Lu, Zhou, Bao, Chen, Li, Zhu, DPM-Solver (NeurIPS 2022)",
    "dpmpp": "Lu, Zhou, Bao, Chen, Li, Zhu, DPM-Solver++ (arXiv 2211.01095)",
    "unipc": "Zhao, Bai, Rao, Zhou, Lu, UniPC (NeurIPS 2023)",
    "deis": "Zhang, Chen, Fast Sampling of Diffusion Models with Exponential Integrator "
            "(DEIS, ICLR 2023)",
    "ipndm": "Zhang, Chen (DEIS, ICLR 2023), improved PNDM of Liu et al. (ICLR 2022)",
    "lms": "linear multistep (Adams-Bashforth in sigma), as k-diffusion's sample_lms",
    "res": "Zhang, Song, Chen, Improved Order Analysis and Design of Exponential Integrator "
           "for Diffusion Models Sampling (RES, arXiv 2308.02157) — seed 003",
    "fv": "Jiao, Li, Cai, Li, Are First-Order Diffusion Samplers Really Slower? A Fast "
          "Forward-Value Approach (arXiv 2512.24927) — seed 000",
    "li": "Li, Huang, Efimov, Wei, Chi, Chen, Accelerating Convergence of Score-Based Diffusion "
          "Models, Provably (ICML 2024, arXiv 2403.03852) — seed 002",
    "lagrange": "Li, Zhou, Wei, Chen, Faster Diffusion Models via Higher-Order Approximation "
                "(arXiv 2506.24042) — seed 001 (algorithm reconstructed, see the notes)",
}


# ----------------------------------------------------------------------------------------------
# option ranges: declared once per option, checked by SolverSpec.options
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class OptionRange:
    """The admissible values of one continuous (or integer) option.

    ``low``/``high`` (None: unbounded) with open or closed ends; ``integer`` for integer options
    (bools rejected); ``cast`` converts an admissible real to ``float`` (an integer option is
    always returned as ``int``); ``why`` says where the range comes from (e.g. the weight bound
    of :data:`samplerlab.theory.single_step.MAX_LIMIT_WEIGHT`). ``None`` values are not checked
    (they mean "derived from the other options").
    """

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    cast: bool = False
    why: str = ""

    def __str__(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        lb = "(" if (self.low_open or self.low is None) else "["
        hb = ")" if (self.high_open or self.high is None) else "]"
        kind = "integer in " if self.integer else ""
        return f"{kind}{lb}{lo}, {hi}{hb}"

    def check(self, value, name: str):
        """``value`` if admissible, else ``ValueError``/``TypeError`` naming ``name`` and the range.
        A list or tuple (per-step values) is checked element by element."""
        if value is None:
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(self.check(v, name) for v in value)
        if self.integer:
            minimum = int(self.low) + int(self.low_open) if self.low is not None else -2 ** 63
            v = check_positive_int(value, name, minimum=minimum)
            if self.high is not None and (v >= self.high if self.high_open else v > self.high):
                raise ValueError(f"{name} must be an {self}, got {value!r}")
            return v
        try:
            v = check_in_range(value, name, self.low, self.high, low_open=self.low_open,
                               high_open=self.high_open)
        except ValueError as exc:
            why = f" ({self.why})" if self.why else ""
            raise ValueError(f"{exc}{why}") from None
        return v if self.cast else value


# ----------------------------------------------------------------------------------------------
# families: how a spec is run and what it costs
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Family:
    """How the samplers of one family run: ``run(spec, denoiser, x, sig, opts, *, generator,
    callback, progress, check_finite, check_grid) -> x0`` (``sig`` the validated grid tensor, ``opts`` the validated
    options, ``generator`` a torch.Generator or None) and ``nfe(spec, sig, opts) -> int | None``.
    What ``spec.build`` returns is private to the family."""

    name: str
    run: Callable
    nfe: Callable


FAMILIES: Dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family (solvers/amed.py adds ``learned`` this way)."""
    if not isinstance(family, Family):
        raise TypeError(f"family must be a Family, got {type(family).__name__}")
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} registered twice")
    FAMILIES[family.name] = family
    return family


def _steps(sig: torch.Tensor):
    ends_zero = bool(sig[-1] == 0)
    return sig.numel() - 1 - int(ends_zero), ends_zero


def _precomputed(runner: Callable) -> Callable:
    """A family run for coefficients computed once per grid by ``spec.build(grid, opts)``."""

    def run(spec, denoiser, x, sig, opts, *, generator, callback, progress, check_finite,
            check_grid):
        m, _ = _steps(sig)
        if m < 1:  # the grid is a single step to sigma = 0: just denoise
            return steppers._final_denoise(denoiser, x, sig[0], callback, 0, check_finite)
        grid = sig.detach().cpu().double().numpy()[: m + 1]
        coeffs = spec.build(grid, opts)
        if check_grid:  # theory.conditioning: no step amplifies model errors beyond its bound
            check_grid_conditioning(coeffs, grid, x.dtype, spec.name)
        return runner(denoiser, x, sig, coeffs, opts, generator=generator, callback=callback,
                      progress=progress, check_finite=check_finite)

    return run


def _grid(sig):
    m, _ = _steps(sig)
    return sig.detach().cpu().double().numpy()[: m + 1], m


def _single_nfe(spec, sig, opts):
    m, ends_zero = _steps(sig)
    return spec.nfe_per_step(opts) * m + int(ends_zero)


def _multi_nfe(spec, sig, opts):
    grid, m = _grid(sig)
    _, ends_zero = _steps(sig)
    _, starter = spec.build(grid, opts)
    extra = 0 if starter is None else min(starter.steps, m) * (starter.stages - 1)
    return m + int(ends_zero) + extra


def _pc_nfe(spec, sig, opts):
    grid, m = _grid(sig)
    _, ends_zero = _steps(sig)
    coeffs = spec.build(grid, opts)
    initial = 1 if getattr(coeffs, "initial", "evaluate") == "evaluate" else 0
    evaluated = sum(1 for n in range(m) if coeffs.corr_new[n] != 0.0 or n < m - 1)
    return initial + evaluated + int(ends_zero)


register_family(Family(SINGLE, _precomputed(
    lambda d, x, sig, c, opts, *, generator, callback, progress, check_finite: steppers.run_single_step(
        d, x, sig, c, generator=generator, callback=callback, progress=progress,
        check_finite=check_finite)), _single_nfe))
register_family(Family(MULTI, _precomputed(
    lambda d, x, sig, c, opts, *, generator, callback, progress, check_finite: steppers.run_multistep(
        d, x, sig, c[0], starter=c[1], callback=callback, progress=progress,
        check_finite=check_finite)), _multi_nfe))
register_family(Family(PC, _precomputed(
    lambda d, x, sig, c, opts, *, generator, callback, progress, check_finite: steppers.run_predictor_corrector(
        d, x, sig, c, callback=callback, progress=progress, check_finite=check_finite)),
    _pc_nfe))
register_family(Family(IMPLICIT, _precomputed(
    lambda d, x, sig, c, opts, *, generator, callback, progress, check_finite:
    steppers.run_implicit_forward_value(d, x, sig, c, tol=opts["tol"], max_iter=opts["max_iter"],
                                        callback=callback, progress=progress,
                                        check_finite=check_finite)),
    lambda spec, sig, opts: None))


def _check_function_output(out, x, name):
    check_tensor_like(out, x, f"sampler {name!r} (fn)")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"sampler {name!r} (fn) returned NaN or inf")
    return out


def _run_function(spec, denoiser, x, sig, opts, *, generator, callback, progress, check_finite,
                  check_grid):
    # a user's function: its output is always checked (shape, dtype, finite); check_grid has no
    # precomputed coefficients to look at
    out = spec.build(denoiser, x, sig, generator=generator, callback=callback, **opts)
    return _check_function_output(out, x, spec.name)


def _function_nfe(spec, sig, opts):
    if spec.nfe_per_step is None:
        return None
    m, ends_zero = _steps(sig)
    return spec.nfe_per_step(opts) * m + int(ends_zero)


register_family(Family(FUNCTION, _run_function, _function_nfe))


# ----------------------------------------------------------------------------------------------
# the spec
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """A sampler, as a value.

    Attributes
    ----------
    name, family : the sampler's name and the family (:data:`FAMILIES`) that runs it.
    order : theoretical global order at the default options (weak order for stochastic ones;
        ``None`` for a function whose order nobody declared).
    stochastic : whether it injects noise (needs a generator for reproducibility).
    paper : where the method comes from.
    summary : one line: the update and what is special.
    defaults : the options it accepts and their default values.
    ranges : option name -> :class:`OptionRange` (declared once; checked by :meth:`options`).
    build : the family's constructor of what it runs (coefficients per grid; the function itself
        for the ``function`` family).
    order_fn(opts), nfe_per_step(opts), validate(opts) : optional hooks.
    builtin : part of samplerlab's catalogue (False for a user's method).
    method : the method object it was made from, if any (e.g. the ExpRKTableau).
    analysis : what theory/ derived at registration (e.g. the tableau's order analysis).
    """

    name: str
    family: str
    order: Optional[float]
    stochastic: bool
    paper: str
    summary: str
    defaults: Mapping[str, Any]
    build: Callable = dataclasses.field(repr=False)
    order_fn: Optional[Callable] = dataclasses.field(default=None, repr=False)
    nfe_per_step: Optional[Callable] = dataclasses.field(default=None, repr=False)
    validate: Optional[Callable] = dataclasses.field(default=None, repr=False)
    ranges: Mapping[str, OptionRange] = dataclasses.field(default_factory=dict, repr=False)
    builtin: bool = dataclasses.field(default=True, repr=False)
    method: Any = dataclasses.field(default=None, repr=False, compare=False)
    analysis: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name must be a Python identifier (it names sample_<name>), got "
                             f"{self.name!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {self.family!r}")
        unknown = sorted(set(self.ranges) - set(self.defaults))
        if unknown:
            raise ValueError(f"ranges name options {unknown} that are not in defaults")

    # -- options ---------------------------------------------------------------------------
    def options(self, **options) -> Dict[str, Any]:
        """Merge ``options`` with the defaults; unknown names raise ``TypeError``; every option
        with a declared range is checked against it (``ValueError`` naming it and the range)."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise TypeError(f"sampler {self.name!r} got unknown option(s) {unknown}; "
                            f"known options: {known}")
        merged = dict(self.defaults)
        merged.update(options)
        for key, rng in self.ranges.items():
            merged[key] = rng.check(merged[key], key)
        if self.validate is not None:
            merged = self.validate(merged)
        return merged

    def option_schema(self) -> Dict[str, str]:
        """Option name -> ``"default <v>; range <r>"`` (the documented schema)."""
        out = {}
        for key, default in self.defaults.items():
            rng = self.ranges.get(key)
            out[key] = f"default {default!r}" + (f"; range {rng}" if rng is not None else "")
        return out

    def order_for(self, **options) -> Optional[float]:
        """Theoretical global order with these options."""
        opts = self.options(**options)
        return self.order_fn(opts) if self.order_fn is not None else self.order

    # -- cost ------------------------------------------------------------------------------
    def nfe(self, sigmas, **options) -> Optional[int]:
        """Denoiser calls for this grid (None where the cost is not fixed by the grid, e.g. the
        implicit sampler's fixed-point iterations)."""
        sig = check_sigmas(sigmas)
        opts = self.options(**options)
        m, _ = _steps(sig)
        if m < 1 and self.family in (SINGLE, MULTI, PC):
            return 1  # a single step to sigma = 0: the final denoising step only
        return FAMILIES[self.family].nfe(self, sig, opts)

    # -- run -------------------------------------------------------------------------------
    def check_call(self, denoiser, x, sigmas, callback) -> torch.Tensor:
        """Validate the arguments every sampler takes; returns the validated grid tensor."""
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable denoiser(x, sigma), got {type(denoiser).__name__}")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        if x.ndim < 1:
            raise ValueError("x must have a batch dimension, got a 0-d tensor")
        _require_finite(x, "x")
        sig = check_sigmas(sigmas)
        check_same_device_dtype(x, sig)
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable or None")
        return sig

    def __call__(self, denoiser, x, sigmas, *, generator=None, callback=None, progress=False,
                 check_finite=True, check_grid=True, **options):
        sig = self.check_call(denoiser, x, sigmas, callback)
        for flag, what in ((progress, "progress"), (check_finite, "check_finite"),
                           (check_grid, "check_grid")):
            steppers.check_flag(flag, what)
        opts = self.options(**options)
        gen = steppers.make_generator(generator, x)
        return FAMILIES[self.family].run(self, denoiser, x, sig, opts, generator=gen,
                                         callback=callback, progress=progress,
                                         check_finite=check_finite, check_grid=check_grid)


SOLVERS: Dict[str, SolverSpec] = {}


def register_spec(spec: SolverSpec, *, overwrite: bool = False) -> SolverSpec:
    """Add ``spec`` to :data:`SOLVERS` (the one registration step every sampler goes through).

    A name already registered raises ``ValueError`` unless ``overwrite=True``; a built-in can
    only be replaced by a built-in (a user's method cannot shadow the catalogue)."""
    if not isinstance(spec, SolverSpec):
        raise TypeError(f"spec must be a SolverSpec, got {type(spec).__name__}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
    old = SOLVERS.get(spec.name)
    if old is not None:
        if not overwrite:
            raise ValueError(f"sampler {spec.name!r} is already registered; pass overwrite=True "
                             f"to replace it (or unregister({spec.name!r}) first)")
        if old.builtin and not spec.builtin:
            raise ValueError(f"sampler {spec.name!r} is a built-in; choose another name")
    SOLVERS[spec.name] = spec
    return spec


def unregister(name: str) -> SolverSpec:
    """Remove a user-registered sampler (notebooks, tests); returns its spec. Built-ins stay."""
    spec = get_solver(name)
    if spec.builtin:
        raise ValueError(f"sampler {name!r} is a built-in and cannot be unregistered")
    return SOLVERS.pop(name)


def _nfe_hook(nfe_per_step, what="nfe_per_step"):
    if nfe_per_step is None or callable(nfe_per_step):
        return nfe_per_step
    k = check_positive_int(nfe_per_step, what)
    return lambda opts: k


def solver_from_function(fn: Callable, *, name: Optional[str] = None, order=None,
                         stochastic: bool = False, nfe_per_step=None, defaults=None, ranges=None,
                         paper: str = "", summary: str = "") -> SolverSpec:
    """A :class:`SolverSpec` (not registered) running ``fn(denoiser, x, sigmas, *, generator=None,
    callback=None, **options)`` through the registry's argument checks; its output must be a
    finite tensor of x's shape, dtype and device (``TypeError``/``ValueError`` otherwise).

    ``order``: the declared global order (None: undeclared); ``nfe_per_step``: denoiser calls
    per step (int or ``f(opts)``; the final step to sigma = 0, if any, counts 1), audited by the
    NFE ledger in ``samplerlab.experiments.check``; ``defaults``: the options ``fn`` takes.
    ``fn`` gets the validated grid tensor and ``generator`` as a ``torch.Generator`` (an int seed
    is turned into one on x's device) or None; the progress flag is not passed on."""
    if not callable(fn):
        raise TypeError(f"fn must be callable fn(denoiser, x, sigmas, *, generator=None, "
                        f"callback=None, **options), got {type(fn).__name__}")
    if name is None:
        name = getattr(fn, "__name__", "function")
        if not name.isidentifier():
            name = "function"
    if order is not None:
        if isinstance(order, bool) or not isinstance(order, numbers.Real) or not order > 0 \
                or not math.isfinite(order):
            raise ValueError(f"order must be a positive number or None, got {order!r}")
    if not isinstance(stochastic, bool):
        raise TypeError(f"stochastic must be a bool, got {type(stochastic).__name__}")
    return SolverSpec(name=name, family=FUNCTION, order=order, stochastic=stochastic,
                      paper=paper or "user-supplied function", summary=summary or (
                          (fn.__doc__ or "").strip().splitlines() or [name])[0],
                      defaults=dict(defaults or {}), build=fn, nfe_per_step=_nfe_hook(nfe_per_step),
                      ranges=dict(ranges or {}), builtin=False, method=fn)


def register(name: str, fn: Callable, *, order=None, stochastic: bool = False,
             nfe_per_step=None, defaults=None, ranges=None, paper: str = "", summary: str = "",
             overwrite: bool = False) -> SolverSpec:
    """Register any Python function with the sample signature as sampler ``name``
    (:func:`solver_from_function` for the arguments); returns the spec."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    spec = solver_from_function(fn, name=name, order=order, stochastic=stochastic,
                                nfe_per_step=nfe_per_step, defaults=defaults, ranges=ranges,
                                paper=paper, summary=summary)
    return register_spec(spec, overwrite=overwrite)


def get_solver(name: str) -> SolverSpec:
    """``SOLVERS[name]`` with a helpful error listing close matches."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if name not in SOLVERS:
        close = difflib.get_close_matches(name, SOLVERS.keys(), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown sampler {name!r}{hint} (known: {', '.join(sorted(SOLVERS))})")
    return SOLVERS[name]


Sampler = Union[str, SolverSpec, Callable]


def resolve_solver(sampler: Sampler) -> SolverSpec:
    """A registered name, a :class:`SolverSpec` or a plain callable (wrapped by
    :func:`solver_from_function`, order undeclared) as a :class:`SolverSpec`."""
    if isinstance(sampler, SolverSpec):
        return sampler
    if isinstance(sampler, str):
        return get_solver(sampler)
    if callable(sampler):
        return solver_from_function(sampler)
    raise TypeError(f"sampler must be a registered name, a SolverSpec or a callable, got "
                    f"{type(sampler).__name__}")


def sample(name: Sampler, denoiser, x, sigmas, *, generator=None, callback=None, progress=False,
           **options):
    """Run the sampler ``name`` from ``x`` (at ``sigmas[0]``) down the grid ``sigmas``.

    ``name``: a registered name, a :class:`SolverSpec` or a plain callable with this signature.
    ``denoiser(x, sigma) -> x0_hat`` (VE/EDM convention ``x = x0 + sigma * eps``); ``sigmas`` a
    1-D strictly decreasing tensor of M+1 levels (the last may be 0) with ``x``'s dtype and
    device; ``generator`` (torch.Generator or int seed) drives every random draw of stochastic
    samplers; ``callback(info)`` is called after every step with ``info['x']``, ``'i'``,
    ``'sigma'``, ``'sigma_next'``, ``'denoised'`` (the sampler's own tensors, as in k-diffusion:
    they are never modified afterwards, so they may be kept, but must not be modified in place;
    likewise every tensor handed to the denoiser). Options are sampler-specific
    (``SOLVERS[name].defaults``, ranges ``SOLVERS[name].option_schema()``). Two checks every
    sampler takes (README, "Reliability"): ``check_finite=True`` (a non-finite denoiser output or
    update raises ``FloatingPointError``) and ``check_grid=True`` (a grid on which the sampler's
    coefficients amplify model errors beyond :mod:`samplerlab.theory.conditioning`'s bound
    raises ``ValueError``); pass False to skip them (speed; experts' grids).
    """
    return resolve_solver(name)(denoiser, x, sigmas, generator=generator, callback=callback,
                                progress=progress, **options)
