"""samplerlab.solvers — schedules, grids, the generic steppers and the sampler registry.

Public entry points::

    from samplerlab.solvers import sample, SOLVERS, NFECounter
    x0 = sample("dpmpp_2m", denoiser, x, sigmas)          # or sample_dpmpp_2m(denoiser, x, sigmas)
    SOLVERS["dpmpp_2m"].order, SOLVERS["dpmpp_2m"].stochastic, SOLVERS["dpmpp_2m"].nfe(sigmas)

Your own sampler (README "Add your own sampler"): ``register_exp_rk(name, c, A, b)`` (a tableau
as sympy data; theory/ validates it and derives its order), ``register_multistep(name, weights,
prediction=..., order=...)``, ``register(name, fn, order=...)`` (any function with the sample
signature), ``unregister(name)``. The built-in catalogue goes through the same
``register_spec``. ``sample`` also takes a ``SolverSpec`` or a plain callable.

Conventions (README "Conventions"): ``denoiser(x, sigma) -> x0_hat`` with ``x = x0 + sigma*eps``;
``sigmas`` a 1-D strictly decreasing tensor of M+1 noise levels whose last entry may be 0.
"""
from .ledger import NFECounter
from .registry import (FAMILIES, SOLVERS, Family, OptionRange, SolverSpec, get_solver, register,
                       register_spec, resolve_solver, sample, solver_from_function, unregister)
from . import catalogue as _catalogue  # noqa: F401  (fills SOLVERS)
from .catalogue import register_exp_rk, register_multistep
from . import amed as _amed  # noqa: F401  (AMED-Solver and AMED-Plugin, seed 004)
from . import grids, schedules  # noqa: F401

__all__ = ["sample", "SOLVERS", "SolverSpec", "get_solver", "NFECounter", "grids", "schedules",
           "register_exp_rk", "register_multistep", "register", "register_spec", "unregister",
           "resolve_solver", "solver_from_function", "OptionRange", "Family", "FAMILIES"]


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


def __getattr__(attr):
    """``sample_<name>`` for a sampler registered after import (a user's own)."""
    if attr.startswith("sample_") and attr[len("sample_"):] in SOLVERS:
        return _make_sampler_function(attr[len("sample_"):])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
