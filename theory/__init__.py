"""samplerlab.theory — symbolic derivations of sampler coefficients and their stable evaluation.

* :func:`phi` — the phi-functions phi_k(z) (numpy, torch, float), stable for small |z|.
* :mod:`.rk_conditions` — rooted trees and :func:`rk_order` for classical Runge-Kutta tableaux.
* :mod:`.exp_rk` — stiff order conditions (Hochbruck & Ostermann) and named exponential RK
  tableaux (RES, DPM-Solver, DPM-Solver++), derived by solving the conditions.
* :mod:`.multistep`, :mod:`.predictor_corrector` — exact Lagrange/Adams weights.
* :mod:`.alpha_bar_chain`, :mod:`.lagrange_sampler` — seeds 002 and 001 on the alpha-bar chain.
* :mod:`.local_error` — leading local truncation errors.
* :mod:`.step_form` — the linear-step form every explicit method compiles into (DESIGN.md).

Importing this package registers every single-step method in ``step_form.STEP_METHODS``.
"""
from .phi_functions import phi, phi_mpmath, phi_sym
from .step_form import STEP_METHODS, StepCoefficients, step_coefficients

from . import rk_conditions, exp_rk, single_step, alpha_bar_chain, lagrange_sampler  # noqa: F401
from . import local_error  # noqa: F401
from .multistep import MultistepCoefficients, multistep_coefficients
from .predictor_corrector import PCCoefficients, pc_coefficients
from .rk_conditions import rk_order

__all__ = ["phi", "phi_sym", "phi_mpmath", "rk_order", "StepCoefficients", "step_coefficients",
           "STEP_METHODS", "MultistepCoefficients", "multistep_coefficients", "PCCoefficients",
           "pc_coefficients"]
