"""The sampler registry: every named sampler is a thin entry of data for a generic stepper.

``SOLVERS[name]`` is a :class:`SolverSpec` with the family (which stepper runs it), the
theoretical global ``order`` at default options, whether it is ``stochastic``, the ``paper`` it
comes from, its default options, and ``nfe(sigmas, **options)`` — the number of denoiser calls a
grid costs (audited by the NFE ledger in the tests). ``sample(name, denoiser, x, sigmas, **options)``
runs it. Coefficients are computed once per grid by theory/ (``build``), never per step or sample.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch

from ._checks import check_in_range, check_positive_int, check_same_device_dtype, check_sigmas
from ._checks import check_finite as _require_finite, check_grid_conditioning
from .noise import ancestral_split, churn_levels
from . import steppers

__all__ = ["SolverSpec", "SOLVERS", "sample", "get_solver"]

SINGLE = "single_step"
MULTI = "multistep"
PC = "predictor_corrector"
IMPLICIT = "implicit"

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


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """A registered sampler.

    Attributes
    ----------
    name, family : the sampler's name and the generic stepper that runs it.
    order : theoretical global order at the default options (weak order for stochastic ones).
    stochastic : whether it injects noise (needs a generator for reproducibility).
    paper : where the method comes from.
    summary : one line: the update and what is special.
    defaults : the options it accepts and their default values.
    """

    name: str
    family: str
    order: float
    stochastic: bool
    paper: str
    summary: str
    defaults: Mapping[str, Any]
    build: Callable = dataclasses.field(repr=False)
    order_fn: Optional[Callable] = dataclasses.field(default=None, repr=False)
    nfe_per_step: Optional[Callable] = dataclasses.field(default=None, repr=False)
    validate: Optional[Callable] = dataclasses.field(default=None, repr=False)

    # -- options ---------------------------------------------------------------------------
    def options(self, **options) -> Dict[str, Any]:
        """Merge ``options`` with the defaults; unknown names raise ``TypeError``."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise TypeError(f"sampler {self.name!r} got unknown option(s) {unknown}; "
                            f"known options: {known}")
        merged = dict(self.defaults)
        merged.update(options)
        if self.validate is not None:
            merged = self.validate(merged)
        return merged

    def order_for(self, **options) -> float:
        """Theoretical global order with these options."""
        opts = self.options(**options)
        return self.order_fn(opts) if self.order_fn is not None else self.order

    # -- cost ------------------------------------------------------------------------------
    def nfe(self, sigmas, **options) -> Optional[int]:
        """Denoiser calls for this grid (None for the implicit, iteration-dependent sampler)."""
        sig = check_sigmas(sigmas)
        opts = self.options(**options)
        ends_zero = bool(sig[-1] == 0)
        m = sig.numel() - 1 - int(ends_zero)
        if self.family == IMPLICIT:
            return None
        if m < 1:  # a single step to sigma = 0: the final denoising step only
            return 1
        if self.family == SINGLE:
            per_step = self.nfe_per_step(opts)
            return per_step * m + int(ends_zero)
        if self.family == MULTI:
            _, starter = self.build(sig.detach().cpu().double().numpy()[: m + 1], opts)
            extra = 0 if starter is None else min(starter.steps, m) * (starter.stages - 1)
            return m + int(ends_zero) + extra
        coeffs = self.build(sig.detach().cpu().double().numpy()[: m + 1], opts)
        initial = 1 if getattr(coeffs, "initial", "evaluate") == "evaluate" else 0
        evaluated = sum(1 for n in range(m) if coeffs.corr_new[n] != 0.0 or n < m - 1)
        return initial + evaluated + int(ends_zero)

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
        steppers.check_flag(check_finite, "check_finite"), steppers.check_flag(check_grid, "check_grid")
        opts = self.options(**options)
        ends_zero = bool(sig[-1] == 0)
        m = sig.numel() - 1 - int(ends_zero)
        if m < 1:
            # the grid is a single step to sigma = 0: just denoise
            return steppers._final_denoise(denoiser, x, sig[0], callback, 0, check_finite)
        grid = sig.detach().cpu().double().numpy()[: m + 1]
        coeffs = self.build(grid, opts)
        if check_grid:  # theory.conditioning: no step amplifies model errors beyond its bound
            check_grid_conditioning(coeffs, grid, x.dtype, self.name)
        gen = steppers.make_generator(generator, x)
        run = dict(callback=callback, progress=progress, check_finite=check_finite)
        if self.family == SINGLE:
            return steppers.run_single_step(denoiser, x, sig, coeffs, generator=gen, **run)
        if self.family == MULTI:
            weights, starter = coeffs
            return steppers.run_multistep(denoiser, x, sig, weights, starter=starter, **run)
        if self.family == PC:
            return steppers.run_predictor_corrector(denoiser, x, sig, coeffs, **run)
        return steppers.run_implicit_forward_value(denoiser, x, sig, coeffs, tol=opts["tol"],
                                                   max_iter=opts["max_iter"], **run)


SOLVERS: Dict[str, SolverSpec] = {}


def _register(spec: SolverSpec) -> SolverSpec:
    if spec.name in SOLVERS:
        raise ValueError(f"sampler {spec.name!r} registered twice")
    SOLVERS[spec.name] = spec
    return spec


def get_solver(name: str) -> SolverSpec:
    """``SOLVERS[name]`` with a helpful error listing close matches."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if name not in SOLVERS:
        close = difflib.get_close_matches(name, SOLVERS.keys(), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown sampler {name!r}{hint} (known: {', '.join(sorted(SOLVERS))})")
    return SOLVERS[name]


def sample(name: str, denoiser, x, sigmas, *, generator=None, callback=None, progress=False,
           **options):
    """Run the sampler ``name`` from ``x`` (at ``sigmas[0]``) down the grid ``sigmas``.

    ``denoiser(x, sigma) -> x0_hat`` (VE/EDM convention ``x = x0 + sigma * eps``); ``sigmas`` a
    1-D strictly decreasing tensor of M+1 levels (the last may be 0) with ``x``'s dtype and
    device; ``generator`` (torch.Generator or int seed) drives every random draw of stochastic
    samplers; ``callback(info)`` is called after every step with ``info['x']``, ``'i'``,
    ``'sigma'``, ``'sigma_next'``, ``'denoised'`` (the sampler's own tensors, as in k-diffusion:
    they are never modified afterwards, so they may be kept, but must not be modified in place;
    likewise every tensor handed to the denoiser). Options are sampler-specific
    (``SOLVERS[name].defaults``). Two checks every sampler takes (README, "Reliability"):
    ``check_finite=True`` (a non-finite denoiser output or update raises ``FloatingPointError``)
    and ``check_grid=True`` (a grid on which the sampler's coefficients amplify model errors
    beyond :mod:`samplerlab.theory.conditioning`'s bound raises ``ValueError``); pass False to
    skip them (speed; experts' grids).
    """
    return get_solver(name)(denoiser, x, sigmas, generator=generator, callback=callback,
                            progress=progress, **options)
