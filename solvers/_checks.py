"""Re-export of :mod:`samplerlab.theory.validation` (the shared input checks) for solvers/, and
the grid-conditioning check every sampler runs once its coefficients are built."""
import torch

from samplerlab.theory.validation import *  # noqa: F401,F403
from samplerlab.theory.validation import __all__ as _validation_all
from samplerlab.theory.conditioning import amplification_bound, check_amplification

__all__ = list(_validation_all) + ["check_grid_conditioning"]


def check_grid_conditioning(coeffs, grid, dtype: torch.dtype, method: str):
    """``ValueError`` naming the grid, the step and the amplification if the coefficients built
    on ``grid`` (float64 ``[M+1]``, all > 0) amplify model errors beyond the bound
    :func:`samplerlab.theory.conditioning.amplification_bound` states for them in ``dtype``.

    ``coeffs``: what a registry builder returns — ``StepCoefficients``, ``PCCoefficients`` or a
    multistep ``(MultistepCoefficients, starter or None)`` pair (the starter covers the first
    ``starter.steps`` steps)."""
    eps = torch.finfo(dtype).eps
    if isinstance(coeffs, tuple):
        weights, starter = coeffs
        check_amplification(weights, grid, method=method, bound=amplification_bound(weights, eps))
        if starter is not None:
            check_amplification(starter, grid[:starter.steps + 1], method=method,
                                bound=amplification_bound(starter, eps))
        return coeffs
    return check_amplification(coeffs, grid, method=method, bound=amplification_bound(coeffs, eps))
