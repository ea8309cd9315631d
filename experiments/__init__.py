"""samplerlab.experiments — exact targets, reference solutions, metrics, studies and the CLI.

* :mod:`.targets` — :class:`GaussianMixture` with exact denoiser, score, log-density and samples.
* :mod:`.reference` — exact probability-flow ODE solutions (DOP853, error < 1e-10 in float64).
* :mod:`.metrics` — numerical defect, signed errors, TV estimators (closed form, push-forward,
  density propagation, histogram/KDE).
* :mod:`.order` — empirical convergence order with confidence intervals.
* :mod:`.convergence` — defect sweeps of samplers against the reference.
* :mod:`.studies`, :mod:`.reproduce`, :mod:`.report` — ``samplerlab reproduce``.
* :func:`check` (:mod:`samplerlab.experiments.check`) — the order card of any sampler
  (``samplerlab check``).
"""
from .targets import GaussianMixture
from .reference import gaussian_flow_closed_form, noised_marginal, solve_pf_ode, solve_pf_ode_path
from .check import CheckReport, check

__all__ = ["GaussianMixture", "solve_pf_ode", "solve_pf_ode_path", "gaussian_flow_closed_form",
           "noised_marginal", "check", "CheckReport"]
