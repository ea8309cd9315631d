"""Conditioning of a method's coefficients on a grid: how much a step amplifies model errors.

Every update of samplerlab is linear in the model outputs (DESIGN.md, "The linear-step
representation")::

    x_{n+1} = a_n x_n + sum_j w_{n,j} F_j            (F = D or eps, stage or history values)

For a consistent method the weights of a row add up to the first-order (Euler/DDIM) weight of the
same step — ``sum_j w_{n,j} = 1 - sigma_{n+1}/sigma_n`` in data form, ``sigma_{n+1} - sigma_n``
for VE noise prediction — because a constant model output must be integrated exactly. A model
error ``delta`` in each ``F_j`` (round-off, a network's error, the prediction error of a cached
value) therefore reaches the new state multiplied by at most

    A_n = sum_j |w_{n,j}| / |w_euler_n|              (amplification; 1 for Euler)

relative to what Euler makes of it. ``A_n`` is the Lebesgue constant of the interpolation (or
extrapolation) behind the weights: for Lagrange/Adams weights on nodes ``lambda_{n-j}`` it grows
like ``prod_j (h_n / |lambda_n - lambda_{n-j}|)``, i.e. like the inverse node separations relative
to the step — two levels a few ulps apart give ``A ~ 1e12`` and an output of that size.

Here ``w_euler`` is the Euler weight of the same step computed from the grid (``1 -
sigma_to/sigma_from`` on data predictions, ``sigma_to - sigma_from`` on VE noise; for a stage row,
the Euler step to the stage's level), so a method whose weights do not add up to it (the
alpha-bar-chain Lagrange sampler of seed 001 on very coarse grids) is measured too.

The bounds (:func:`amplification_bound`), one per kind of value the weights multiply:

* stage values and predictor-corrector caches (single-step, predictor-corrector): the values are
  model outputs at *different points* (stages, predicted points), each carrying its own model or
  prediction error; a row may amplify it at most :data:`MAX_AMPLIFICATION` ``= 1e4``-fold over
  Euler. With a trained network's relative error of ``1e-3`` .. ``1e-4`` that is where the
  amplified model error reaches the size of the data: nothing is left of the order the method
  was chosen for.
* multistep history (values on the computed trajectory): their errors are smooth along it, so a
  finite difference of nearby history values is a derivative estimate and only the rounding of
  the model outputs (relative ``eps`` of x's dtype) is amplified unboundedly. The bound is
  ``max(1e4, ROUNDING_BUDGET / eps)`` with ``ROUNDING_BUDGET = 1e-4`` (at most 1e-4 relative
  error from amplified rounding): ``4.5e11`` in float64, ``1e4`` in float32 and below.

Measured (tests/test_reliability.py, with the exact mixture reference): on the grid
constructors karras, lambda_uniform, sigma_uniform, vp_time_uniform and time_quadratic with
5 .. 300 steps every registered sampler but seed 001's Lagrange sampler stays below the bound
(worst: EDM's Heun 8e3 on a 5-step sigma-uniform grid, whose last step 16 -> 0.002 divides the
second stage's error by sigma_to; dpm_solver_3 876; res_3m 444; the rest below 260). Heun is
refused on some one- to three-step grids (one step 80 -> 0.002: ``A = 4e4``). The Lagrange sampler
stays below 2.3 on its own schedule (Li et al., ``grids.li_grid``) but reaches ``4.5e4`` on a
100-step sigma-uniform grid (its last, huge step) and ``8e4`` in one step 80 -> 0.1, where its
error is ``3e3``. Two levels ``1e-12`` (relative) apart give ``A ~ 1e12`` for every multistep
and predictor-corrector sampler whose weights depend on the node separations: UniPC and
F-DPMSolver then return errors of ``1e7`` .. ``1e9`` (their caches hold predicted points) while
the multistep samplers stay accurate in float64 — both are refused (``1e12`` is above both
bounds); at ``1e-6`` apart only the predictor-corrector samplers are refused in float64, every
one in float32.
"""
from __future__ import annotations

import numpy as np

__all__ = ["MAX_AMPLIFICATION", "ROUNDING_BUDGET", "row_amplification",
           "coefficient_amplification", "amplification_bound", "check_amplification"]

#: The largest error amplification over Euler a coefficient row may have (module docstring).
MAX_AMPLIFICATION = 1e4
#: Multistep history: the largest relative error amplified rounding may contribute.
ROUNDING_BUDGET = 1e-4


def amplification_bound(coeffs, eps: float) -> float:
    """The amplification a coefficient set may have with model outputs of relative precision
    ``eps`` (module docstring): :data:`MAX_AMPLIFICATION` for stage values and
    predictor-corrector caches, ``max(MAX_AMPLIFICATION, ROUNDING_BUDGET / eps)`` for multistep
    history weights."""
    eps = float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if hasattr(coeffs, "weights") and not hasattr(coeffs, "stage_w"):
        return max(MAX_AMPLIFICATION, ROUNDING_BUDGET / eps)
    return MAX_AMPLIFICATION


def row_amplification(weights, euler_weight) -> np.ndarray:
    """``sum_j |w_j| / |w_euler|`` of each row of ``weights`` (``[M, k]``) against the Euler
    weight ``w_euler`` (``[M]``) of the same step (module docstring). A row whose weights are all
    0 has amplification 0; a nonzero row over a zero Euler weight has amplification inf."""
    w = np.asarray(weights, dtype=np.float64)
    size = np.abs(w).sum(axis=-1)
    ref = np.abs(np.asarray(euler_weight, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        amp = np.where(size == 0, 0.0, size / ref)
    return np.where(np.isnan(amp), np.inf, amp)


def _euler_weight(prediction: str, sigma_from, sigma_to) -> np.ndarray:
    """The weight of the model output in an Euler (DDIM) step ``sigma_from -> sigma_to``:
    ``1 - sigma_to/sigma_from`` on data predictions, ``sigma_to - sigma_from`` on VE noise."""
    sf = np.asarray(sigma_from, dtype=np.float64)
    st = np.asarray(sigma_to, dtype=np.float64)
    return 1.0 - st / sf if prediction == "data" else st - sf


def coefficient_amplification(coeffs, sigmas) -> np.ndarray:
    """``[M]`` the largest row amplification of each step of a coefficient set built on the grid
    ``sigmas`` (``[M+1]``, all > 0).

    ``coeffs``: :class:`~samplerlab.theory.step_form.StepCoefficients` (every stage row, against
    the Euler step to the stage's level, and the output row; data form),
    :class:`~samplerlab.theory.multistep.MultistepCoefficients` (the history weights) or
    :class:`~samplerlab.theory.predictor_corrector.PCCoefficients` (the predictor row and the
    corrector row with the new evaluation)."""
    sig = np.asarray(sigmas, dtype=np.float64)
    sf, st = sig[:-1], sig[1:]
    if hasattr(coeffs, "stage_w"):  # single step (data form); noise plans move the levels
        amps = [row_amplification(coeffs.out_w, _euler_weight("data", sf, st))]
        for j in range(1, coeffs.stage_w.shape[1]):
            amps.append(row_amplification(coeffs.stage_w[:, j, :j], _euler_weight(
                "data", coeffs.stage_sigma[:, 0], coeffs.stage_sigma[:, j])))
        return np.max(np.stack(amps), axis=0)
    if hasattr(coeffs, "pred_w"):  # predictor-corrector
        corr = np.concatenate([coeffs.corr_w, coeffs.corr_new[:, None]], axis=1)
        return np.maximum(
            row_amplification(coeffs.pred_w, _euler_weight(coeffs.pred_prediction, sf, st)),
            row_amplification(corr, _euler_weight(coeffs.corr_prediction, sf, st)))
    if hasattr(coeffs, "weights"):  # multistep
        return row_amplification(coeffs.weights, _euler_weight(coeffs.prediction, sf, st))
    raise TypeError(f"coeffs must be StepCoefficients, MultistepCoefficients or PCCoefficients, "
                    f"got {type(coeffs).__name__}")


def check_amplification(coeffs, sigmas, *, method: str = "the sampler",
                        bound: float = MAX_AMPLIFICATION, name: str = "sigmas"):
    """Raise ``ValueError`` naming the grid, the step index and the amplification if a step of
    ``coeffs`` (built on the grid ``sigmas``) amplifies model errors more than ``bound``-fold
    over Euler (module docstring); the message gives the lambda-step ratio at that step and the
    expert override. Returns ``coeffs``."""
    amp = coefficient_amplification(coeffs, sigmas)
    bad = np.flatnonzero(~(amp <= bound))
    if bad.size:
        n = int(bad[np.argmax(amp[bad])]) if np.isfinite(amp[bad]).all() else int(bad[0])
        sig = np.asarray(sigmas, dtype=np.float64)
        pos = sig[sig > 0]
        h = np.log(pos[:-1] / pos[1:])
        ratio = ""
        if 0 < n < h.size:
            ratio = (f", lambda-step ratio h_{n}/h_{n - 1} = {h[n] / h[n - 1]:.3g}"
                     f" (sigma_{n - 1}, sigma_{n}, sigma_{n + 1} = {float(sig[n - 1])!r}, "
                     f"{float(sig[n])!r}, {float(sig[n + 1])!r})")
        elif n < h.size:
            ratio = (f", h_{n} = {h[n]:.3g} (sigma_{n} = {float(sig[n])!r}, sigma_{n + 1} = "
                     f"{float(sig[n + 1])!r})")
        raise ValueError(
            f"{name} is ill-conditioned for {method} at step {n}: its coefficients amplify model "
            f"errors {amp[n]:.3g}x over Euler (bound {bound:g}){ratio}; use a grid without "
            f"near-duplicate levels or abrupt step changes, or pass check_grid=False to run anyway")
    return coeffs
