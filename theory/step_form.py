"""The linear-step form that every explicit samplerlab method is compiled into.

In VE data variables (``x = x0 + sigma * eps``) one step of any explicit sampler in this project
is linear in the current state ``x_n``, in the denoiser outputs ``D_k`` and in injected Gaussian
noise, with coefficients that depend only on the grid::

    x_n'  = x_n + pre_noise * z_pre                                  (optional churn / lift)
    X_j   = stage_x[j] * x_n' + sum_{k<j} stage_w[j, k] * D_k,   D_k = D(X_k, stage_sigma[k])
    x_n+1 = out_x * x_n' + sum_k out_w[k] * D_k + post_noise * z_post

theory/ derives the coefficients symbolically and evaluates them here as float64 numpy arrays of
leading dimension M (one row per step); solvers/ converts them to torch once per grid and runs a
single generic stepper. See DESIGN.md.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict

import numpy as np

__all__ = ["StepCoefficients", "register_step_method", "step_coefficients", "STEP_METHODS"]


@dataclasses.dataclass(frozen=True)
class StepCoefficients:
    """Per-step coefficients of an explicit linear step (arrays of leading dimension M).

    Attributes
    ----------
    stage_sigma : [M, s] noise level passed to the denoiser at stage j.
    stage_x     : [M, s] coefficient of the state in stage j's input.
    stage_w     : [M, s, s] strictly lower-triangular weights of earlier stages' outputs.
    out_x       : [M] coefficient of the state in the new state.
    out_w       : [M, s] weights of the stage outputs in the new state.
    pre_noise   : [M] standard deviation of noise added to the state before the stages (0: none).
    post_noise  : [M] standard deviation of noise added after the update (0: none).
    """

    stage_sigma: np.ndarray
    stage_x: np.ndarray
    stage_w: np.ndarray
    out_x: np.ndarray
    out_w: np.ndarray
    pre_noise: np.ndarray = None
    post_noise: np.ndarray = None

    def __post_init__(self):
        m, s = np.shape(self.stage_sigma)
        zeros = np.zeros(m)
        if self.pre_noise is None:
            object.__setattr__(self, "pre_noise", zeros)
        if self.post_noise is None:
            object.__setattr__(self, "post_noise", zeros.copy())
        expected = {"stage_sigma": (m, s), "stage_x": (m, s), "stage_w": (m, s, s),
                    "out_x": (m,), "out_w": (m, s), "pre_noise": (m,), "post_noise": (m,)}
        for field, shape in expected.items():
            arr = np.asarray(getattr(self, field), dtype=np.float64)
            if arr.shape != shape:
                raise ValueError(f"StepCoefficients.{field} must have shape {shape}, got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"StepCoefficients.{field} holds NaN or inf")
            object.__setattr__(self, field, arr)
        if np.any(np.triu(self.stage_w) != 0):
            raise ValueError("StepCoefficients.stage_w must be strictly lower triangular (explicit)")

    @property
    def steps(self) -> int:
        return self.stage_sigma.shape[0]

    @property
    def stages(self) -> int:
        """Number of denoiser evaluations per step."""
        return self.stage_sigma.shape[1]


STEP_METHODS: Dict[str, Callable[..., StepCoefficients]] = {}


def register_step_method(name: str):
    """Decorator: register ``fn(sigma_from, sigma_to, **params) -> StepCoefficients``."""

    def deco(fn):
        if name in STEP_METHODS:
            raise ValueError(f"step method {name!r} registered twice")
        STEP_METHODS[name] = fn
        return fn

    return deco


def step_coefficients(method: str, sigma_from, sigma_to, **params) -> StepCoefficients:
    """Coefficients of ``method`` for the steps ``sigma_from[n] -> sigma_to[n]`` (numpy float64).

    ``method``: a registered name (:data:`STEP_METHODS`) or a method value with a
    ``step_coefficients(sigma_from, sigma_to)`` method (an ``ExpRKTableau``).

    ``sigma_from`` and ``sigma_to`` are 1-D arrays of equal length M with entries > 0.
    """
    if not isinstance(method, str):
        if callable(getattr(method, "step_coefficients", None)):  # a method value (ExpRKTableau)
            return method.step_coefficients(sigma_from, sigma_to, **params)
        raise TypeError(f"method must be a registered name or a method value with "
                        f"step_coefficients (e.g. an ExpRKTableau), got {type(method).__name__}")
    if method not in STEP_METHODS:
        raise ValueError(f"unknown step method {method!r}; known: {sorted(STEP_METHODS)}")
    sf = np.atleast_1d(np.asarray(sigma_from, dtype=np.float64))
    st = np.atleast_1d(np.asarray(sigma_to, dtype=np.float64))
    if sf.ndim != 1 or sf.shape != st.shape:
        raise ValueError("sigma_from and sigma_to must be 1-D arrays of equal length, got shapes "
                         f"{sf.shape} and {st.shape}")
    if not (np.isfinite(sf).all() and np.isfinite(st).all()):
        raise ValueError("sigma_from and sigma_to must be finite")
    if (sf <= 0).any() or (st <= 0).any():
        raise ValueError("sigma_from and sigma_to must be > 0 (the step to sigma = 0 is the "
                         "solver's final denoising step)")
    return STEP_METHODS[method](sf, st, **params)
