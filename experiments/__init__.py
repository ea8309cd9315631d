"""samplerlab.experiments — exact targets, reference solutions, metrics, studies and the CLI.

* :mod:`.targets` — :class:`GaussianMixture` with exact denoiser, score, log-density and samples.
* :mod:`.reference` — exact probability-flow ODE solutions (DOP853, error < 1e-10 in float64).
* :mod:`.metrics` — numerical defect, signed errors, TV estimators (closed form, push-forward,
  density propagation, histogram/KDE).
* :mod:`.order` — empirical convergence order with confidence intervals.
* :mod:`.convergence` — defect sweeps of samplers against the reference.
* :mod:`.verify` — :func:`verify_model`: the same on any denoiser, against its self-reference;
  :mod:`.learned` — trained MLP denoisers, controlled score perturbations, score errors.
* :mod:`.studies`, :mod:`.reproduce`, :mod:`.report` — ``samplerlab reproduce``.
* :func:`check` (:mod:`samplerlab.experiments.check`) — the order card of any sampler
  (``samplerlab check``).
"""
from .targets import GaussianMixture
from .reference import gaussian_flow_closed_form, noised_marginal, solve_pf_ode, solve_pf_ode_path
from .check import CheckReport, check
from .verify import verify_model

__all__ = ["GaussianMixture", "solve_pf_ode", "solve_pf_ode_path", "gaussian_flow_closed_form",
           "noised_marginal", "check", "CheckReport", "verify_model"]
