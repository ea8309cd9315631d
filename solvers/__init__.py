"""samplerlab.solvers — schedules, grids, the generic steppers and the sampler registry.

Public entry points::

    from samplerlab.solvers import sample, SOLVERS, NFECounter
    x0 = sample("dpmpp_2m", denoiser, x, sigmas)          # or sample_dpmpp_2m(denoiser, x, sigmas)
    SOLVERS["dpmpp_2m"].order, SOLVERS["dpmpp_2m"].stochastic, SOLVERS["dpmpp_2m"].nfe(sigmas)

Conventions (README "Conventions"): ``denoiser(x, sigma) -> x0_hat`` with ``x = x0 + sigma*eps``;
``sigmas`` a 1-D strictly decreasing tensor of M+1 noise levels whose last entry may be 0.
"""
from .ledger import NFECounter
from .registry import SOLVERS, SolverSpec, get_solver, sample
from . import catalogue as _catalogue  # noqa: F401  (fills SOLVERS)
from . import amed as _amed  # noqa: F401  (AMED-Solver and AMED-Plugin, seed 004)
from . import grids, schedules  # noqa: F401

__all__ = ["sample", "SOLVERS", "SolverSpec", "get_solver", "NFECounter", "grids", "schedules"]


def _make_sampler_function(name):
    spec = SOLVERS[name]

    def sampler(denoiser, x, sigmas, *, generator=None, callback=None, progress=False, **options):
        return spec(denoiser, x, sigmas, generator=generator, callback=callback,
                    progress=progress, **options)

    sampler.__name__ = sampler.__qualname__ = f"sample_{name}"
    defaults = ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items()) or "none"
    sampler.__doc__ = (f"{spec.summary}\n\nPaper: {spec.paper}\nFamily: {spec.family}; "
                       f"order {spec.order}; stochastic: {spec.stochastic}\nOptions: {defaults}\n"
                       f"Same signature as samplerlab.solvers.sample.")
    return sampler


for _name in SOLVERS:
    globals()[f"sample_{_name}"] = _make_sampler_function(_name)
    __all__.append(f"sample_{_name}")
del _name
