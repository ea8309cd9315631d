"""Interop with Hugging Face diffusers: model adapters, grids from schedulers, and a scheduler.

Optional: needs ``pip install 'samplerlab[diffusers]'`` only for :class:`SamplerlabScheduler` and
for reading a diffusers scheduler object; the adapters work with any callable.

diffusers' DDPM-family models are variance-preserving (VP) models on a discrete table
``alphas_cumprod[t]``, ``t = 0..N-1`` (Ho et al. 2020, arXiv 2006.11239): ``x_vp = alpha x0 +
sigma_vp eps`` with ``alpha^2 = alpha_bar_t``. samplerlab works in the VE convention ``x = x0 +
sigma eps``; the exact map (README "Conventions", :mod:`samplerlab.solvers.schedules`) is
``x = x_vp / alpha``, ``sigma = sqrt((1 - alpha_bar) / alpha_bar)``. Nothing here re-derives a
conversion: the adapters are :func:`~samplerlab.solvers.schedules.denoiser_from_eps_model` /
:func:`~samplerlab.solvers.schedules.denoiser_from_v_model` on a
:class:`~samplerlab.solvers.schedules.DiscreteVPSchedule`, and the scheduler runs the
coefficients that ``SOLVERS[name].build`` (theory/) returns.

Continuous sigma -> discrete timestep (``timestep_mode``)
---------------------------------------------------------
A samplerlab grid may put a level between two table entries. ``'interpolate'`` (default) passes
the fractional timestep of :class:`DiscreteVPSchedule` (``log sigma`` linear in ``t`` between
entries, k-diffusion's ``DiscreteSchedule`` with ``quantize=False``); the model's sinusoidal
timestep embedding accepts it. ``'nearest'`` rounds it to the nearest integer (as diffusers does for
its Karras-sigma option, and k-diffusion with ``quantize=True``); the state is still treated as
being at the continuous ``sigma``. On a grid made of table levels (every diffusers grid, and
:func:`grid_from_scheduler`) both give the integer timesteps up to rounding of the last bit, and
``'nearest'`` gives them exactly. Levels outside ``[sigma(0), sigma(N-1)]`` map to timesteps outside
the scheduler's range and raise ValueError.

Supported samplers of :class:`SamplerlabScheduler`
--------------------------------------------------
Every sampler of the multistep family (``SOLVERS[name].family == 'multistep'``: ``dpmpp_2m``,
``dpmpp_3m``, ``res_2m``, ``res_3m``, ``deis``, ``ipndm``, ``lms``, ``li_accel_ode_1nfe``) with the
default ``warmup='lower_order'``: these evaluate the model exactly once per step, at the current
state and timestep, which is the contract of a diffusers pipeline loop
(``model(sample, t)`` then ``scheduler.step``). Single-step methods with several stages,
predictor-corrector methods (their evaluation point is not the returned state) and stochastic
samplers need a different loop; run them with :func:`samplerlab.solvers.sample` and
:func:`denoiser_from_diffusers`.

Same algorithm as diffusers' ``DPMSolverMultistepScheduler`` (measured in
tests/test_diffusers_interop.py): ``algorithm_type='dpmsolver++'``, ``solver_order=2``,
``solver_type='midpoint'``, ``final_sigmas_type='zero'``, ``euler_at_final=False`` (its
``lower_order_final`` then only touches the step to 0, which is the denoising step either way) is
samplerlab's ``dpmpp_2m`` with ``lower_order_final=False`` on :func:`grid_from_scheduler` of that
scheduler (samplerlab's default ``lower_order_final=True`` lowers the last positive step to first
order when M < 10, which diffusers does only with ``euler_at_final=True`` or, for
``final_sigmas_type='sigma_min'``, with ``lower_order_final=True`` and M < 15).
"""
from __future__ import annotations

import copy
import math
import numbers
from collections import deque
from typing import Callable, Optional

import numpy as np
import torch

from . import grids
from ._checks import as_float64_vector, check_positive_int, check_sigmas
from .registry import MULTI, get_solver
from .schedules import (DiscreteVPSchedule, alpha_from_sigma, data_from_eps, data_from_velocity,
                        denoiser_from_eps_model, denoiser_from_v_model, eps_from_data,
                        ve_state_from_vp, velocity_from_data, vp_state_from_ve)
from .schedules import _vp_inputs
from .steppers import _as_prediction, _combine

try:  # optional dependency
    from diffusers import ConfigMixin, SchedulerMixin
    from diffusers.configuration_utils import register_to_config
    from diffusers.schedulers.scheduling_utils import SchedulerOutput
    HAVE_DIFFUSERS = True
except ImportError:  # pragma: no cover - exercised only without the extra
    HAVE_DIFFUSERS = False

__all__ = [
    "PREDICTION_TYPES", "TIMESTEP_MODES", "HAVE_DIFFUSERS", "discrete_schedule",
    "denoiser_from_diffusers", "model_from_denoiser", "sigmas_from_timesteps",
    "grid_from_spacing", "grid_from_scheduler", "scheduler_samplers", "SamplerlabScheduler",
]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_MODES = ("interpolate", "nearest")
_FINALS = ("zero", "sigma_min")


# ----------------------------------------------------------------------------------------------
# tables and timesteps
# ----------------------------------------------------------------------------------------------

def discrete_schedule(source) -> DiscreteVPSchedule:
    """The :class:`DiscreteVPSchedule` of ``source``: a diffusers scheduler (anything with an
    ``alphas_cumprod`` attribute), a ``DiscreteVPSchedule``, or the table itself (tensor, array,
    list). The table is kept in float64 (diffusers stores it in float32; the float32 values are
    taken as exact)."""
    if isinstance(source, DiscreteVPSchedule):
        return source
    table = getattr(source, "alphas_cumprod", source)
    if isinstance(table, torch.Tensor):
        table = table.detach().cpu()
    try:
        return DiscreteVPSchedule(table)
    except TypeError:
        raise TypeError("alphas_cumprod: expected a diffusers scheduler with .alphas_cumprod, a "
                        f"DiscreteVPSchedule or a 1-D table, got {type(source).__name__}") from None


def _check_prediction_type(prediction_type) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return prediction_type


def _check_final(final) -> str:
    if final not in _FINALS:
        raise ValueError(f"final must be one of {_FINALS}, got {final!r}")
    return final


def _timesteps_array(timesteps, num_train: int) -> np.ndarray:
    """Validated float64 array of (possibly fractional) timesteps, strictly decreasing, in range."""
    ts = as_float64_vector(timesteps, "timesteps")
    if ts.min() < 0 or ts.max() > num_train - 1:
        raise ValueError(f"timesteps must lie in the scheduler's range [0, {num_train - 1}], got "
                         f"[{ts.min():g}, {ts.max():g}]")
    if not (np.diff(ts) < 0).all():
        raise ValueError("timesteps must be strictly decreasing")
    return ts


def sigmas_from_timesteps(timesteps, alphas_cumprod, *, final="zero", dtype=torch.float64,
                          device=None) -> torch.Tensor:
    """samplerlab ``sigmas`` for a decreasing list of diffusers timesteps.

    ``sigma_i = sqrt((1 - alpha_bar[t_i]) / alpha_bar[t_i])`` at integer ``t_i`` (fractional ones
    by :class:`DiscreteVPSchedule`'s log-sigma interpolation), followed by the final level:
    ``final='zero'`` appends 0 (the last step is the denoising step, DESIGN.md; diffusers'
    ``final_sigmas_type='zero'`` and DDIM's ``set_alpha_to_one=True``), ``'sigma_min'`` appends
    ``sigma(0)``, the table's smallest level (diffusers' ``final_sigmas_type='sigma_min'``,
    DDIM's ``set_alpha_to_one=False``) — unless the timesteps already end at ``t = 0``: then
    diffusers' last step (``sigma(0) -> sigma(0)``) leaves the state unchanged and the grid ends
    there (one level fewer than ``len(timesteps) + 1``; samplerlab spends no NFE on that no-op).
    Computed in float64 from the table, then cast.
    ValueError naming ``timesteps`` if one leaves ``[0, N-1]`` or they are not strictly decreasing.
    """
    sched = discrete_schedule(alphas_cumprod)
    ts = _timesteps_array(timesteps, sched.num_steps)
    final = _check_final(final)
    t = torch.from_numpy(ts)
    whole = t == torch.round(t)
    levels = torch.where(whole, sched.sigmas[torch.round(t).long()], sched.sigma(t))
    if final == "sigma_min" and ts[-1] == 0:
        # the timesteps already end at sigma(0): diffusers' last step there (t = 0 -> sigma(0),
        # h = 0) leaves x unchanged, so the grid simply ends at that level
        out = levels.to(device=device, dtype=dtype)
    else:
        last = levels.new_zeros(1) if final == "zero" else sched.sigmas[:1].clone()
        out = torch.cat([levels, last]).to(device=device, dtype=dtype)
    return check_sigmas(out, "sigmas (from timesteps)")


def grid_from_spacing(alphas_cumprod, num_inference_steps, spacing="linspace", steps_offset=0, *,
                      final="zero", dtype=torch.float64, device=None) -> torch.Tensor:
    """The grid of ``num_inference_steps`` timesteps chosen by diffusers' ``timestep_spacing``
    (``'linspace'``, ``'leading'``, ``'trailing'``) as :func:`grids.discrete_timesteps` defines
    them (the rules of DDIMScheduler/DDPMScheduler/PNDMScheduler; Lin et al. 2024, arXiv
    2305.08891, Table 2), plus the final level (:func:`sigmas_from_timesteps`).

    ``DPMSolverMultistepScheduler`` and ``UniPCMultistepScheduler`` use other 'linspace' and
    'leading' rules (``count + 1`` points, the last dropped): take their grid from the scheduler
    itself with :func:`grid_from_scheduler`.
    """
    sched = discrete_schedule(alphas_cumprod)
    ts = grids.discrete_timesteps(sched.num_steps, num_inference_steps, spacing, steps_offset)
    return sigmas_from_timesteps(ts, sched, final=final, dtype=dtype, device=device)


def _scheduler_final(scheduler) -> str:
    config = getattr(scheduler, "config", None)
    get = (lambda k: config.get(k) if hasattr(config, "get") else getattr(config, k, None))
    if config is not None and get("final_sigmas_type") is not None:
        return _check_final(get("final_sigmas_type"))
    if config is not None and get("set_alpha_to_one") is not None:
        return "zero" if get("set_alpha_to_one") else "sigma_min"
    return "zero"


def grid_from_scheduler(scheduler, num_inference_steps, *, final=None, source="table",
                        dtype=torch.float64, device=None) -> torch.Tensor:
    """samplerlab ``sigmas`` of the grid a diffusers scheduler steps over.

    Calls ``set_timesteps(num_inference_steps)`` on a copy of ``scheduler`` (the original is left
    untouched), reads its ``timesteps`` and returns

    * ``source='table'`` (default): the float64 table levels at those timesteps
      (:func:`sigmas_from_timesteps`) — exact, and the levels a model trained on that table sees;
    * ``source='scheduler'``: the scheduler's own ``sigmas`` array (VE levels, float32 in diffusers),
      for schedulers whose levels are not table levels (``use_karras_sigmas`` and the like).

    ``final``: ``'zero'`` or ``'sigma_min'``; default from the scheduler's config
    (``final_sigmas_type``, else ``set_alpha_to_one``, else 'zero').
    """
    if not hasattr(scheduler, "set_timesteps") or not hasattr(scheduler, "alphas_cumprod"):
        raise TypeError("scheduler must be a diffusers scheduler (set_timesteps and alphas_cumprod), "
                        f"got {type(scheduler).__name__}")
    num_inference_steps = check_positive_int(num_inference_steps, "num_inference_steps")
    if source not in ("table", "scheduler"):
        raise ValueError(f"source must be 'table' or 'scheduler', got {source!r}")
    final = _scheduler_final(scheduler) if final is None else _check_final(final)
    work = copy.deepcopy(scheduler)
    work.set_timesteps(num_inference_steps)
    if source == "table":
        return sigmas_from_timesteps(work.timesteps, work, final=final, dtype=dtype, device=device)
    levels = getattr(work, "sigmas", None)
    if not isinstance(levels, torch.Tensor) or levels.numel() != len(work.timesteps) + 1:
        raise ValueError(f"source='scheduler' needs a scheduler with a sigmas array of "
                         f"len(timesteps) + 1 levels; {type(scheduler).__name__} has none")
    return check_sigmas(levels.detach().to(device=device, dtype=dtype), "sigmas (from scheduler)")


# ----------------------------------------------------------------------------------------------
# model <-> denoiser adapters
# ----------------------------------------------------------------------------------------------

def _unwrap_output(out):
    """A model's output as a tensor: diffusers' ``UNet2DOutput`` (``.sample``), a tuple (first
    entry, ``return_dict=False``) or a tensor."""
    if isinstance(out, torch.Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"model output must be a tensor, a tuple whose first entry is one, or an "
                    f"object with a tensor .sample, got {type(out).__name__}")


class _TimestepMap:
    """``sigma -> (t, alpha)`` for :func:`denoiser_from_eps_model` and friends (module docstring)."""

    def __init__(self, schedule: DiscreteVPSchedule, mode: str):
        if mode not in TIMESTEP_MODES:
            raise ValueError(f"timestep_mode must be one of {TIMESTEP_MODES}, got {mode!r}")
        self.schedule, self.mode = schedule, mode

    def __call__(self, sigma: torch.Tensor):
        try:
            t = self.schedule.t_from_sigma(sigma)
        except ValueError:
            lo, hi = self.schedule.sigmas[0].item(), self.schedule.sigmas[-1].item()
            raise ValueError(
                f"sigma in [{sigma.min().item():.6g}, {sigma.max().item():.6g}] maps to timesteps "
                f"outside the scheduler's range [0, {self.schedule.num_steps - 1}] (sigma must lie "
                f"in [{lo:.6g}, {hi:.6g}])") from None
        if self.mode == "nearest":
            t = torch.round(t).to(torch.int64)
        return t, alpha_from_sigma(sigma)


def _model_call(model, model_dtype, name="model"):
    """``model(x_vp, t)`` as a tensor of ``x_vp``'s shape and dtype (ValueError otherwise)."""
    if not callable(model):
        raise TypeError(f"{name} must be callable as {name}(x, t), got {type(model).__name__}")
    if model_dtype is not None and (not isinstance(model_dtype, torch.dtype)
                                    or not model_dtype.is_floating_point):
        raise TypeError(f"model_dtype must be a floating torch.dtype or None, got {model_dtype!r}")

    def call(x_vp, t):
        x_in = x_vp if model_dtype is None else x_vp.to(model_dtype)
        out = _unwrap_output(model(x_in, t))
        if out.shape != x_vp.shape:
            raise ValueError(f"model output has shape {tuple(out.shape)}; expected x's shape "
                             f"{tuple(x_vp.shape)} (a model with learned variance returns extra "
                             f"channels: slice them off in the model)")
        return out.to(x_vp.dtype)

    return call


def denoiser_from_diffusers(model: Callable, scheduler, prediction_type: Optional[str] = None, *,
                            timestep_mode: str = "interpolate",
                            model_dtype: Optional[torch.dtype] = None) -> Callable:
    """A samplerlab denoiser ``D(x, sigma) -> x0_hat`` (VE) from a diffusers-style VP model.

    Parameters
    ----------
    model : ``model(x_vp, t)`` returning the prediction as a tensor, a tuple or an object with
        ``.sample`` (e.g. ``UNet2DModel``); ``t`` is 0-d or ``[batch]`` like ``sigma`` (float
        timesteps, int64 with ``timestep_mode='nearest'``).
    scheduler : a diffusers scheduler (its ``alphas_cumprod``, and its ``config.prediction_type``
        when ``prediction_type`` is None), a :class:`DiscreteVPSchedule` or a table.
    prediction_type : ``'epsilon'`` (``D = x - sigma eps``), ``'v_prediction'``
        (``D = alpha x_vp - sigma_vp v``, Salimans & Ho 2022) or ``'sample'`` (``D = model``).
        Default: the scheduler's, else ``'epsilon'``.
    timestep_mode : ``'interpolate'`` or ``'nearest'`` (module docstring).
    model_dtype : cast the model's input to this dtype and its output back (e.g. a float32
        UNet driven by float64 samplers); None: pass ``x``'s dtype through.

    The model sees ``x_vp = alpha x`` (``alpha = 1/sqrt(1 + sigma^2)``) at ``t = t(sigma)``. Bad input:
    a model output of another shape than ``x``, an unknown ``prediction_type``, a ``sigma``
    outside the table's range (timesteps outside ``[0, N-1]``) raise ValueError.
    """
    schedule = discrete_schedule(scheduler)
    if prediction_type is None:
        config = getattr(scheduler, "config", None)
        prediction_type = getattr(config, "prediction_type", None) or (
            config.get("prediction_type") if hasattr(config, "get") else None) or "epsilon"
    prediction_type = _check_prediction_type(prediction_type)
    tmap = _TimestepMap(schedule, timestep_mode)
    call = _model_call(model, model_dtype)
    if prediction_type == "epsilon":
        return denoiser_from_eps_model(call, tmap)
    if prediction_type == "v_prediction":
        return denoiser_from_v_model(call, tmap)

    def denoiser(x, sigma):
        _, t, alpha = _vp_inputs(tmap, x, sigma)
        return call(alpha * x, t)

    return denoiser


def model_from_denoiser(denoiser: Callable, alphas_cumprod, prediction_type: str = "epsilon"
                        ) -> Callable:
    """The inverse adapter: a samplerlab denoiser as a diffusers-style VP model ``model(x_vp, t)``.

    ``t`` (int or float timesteps, a number, 0-d or ``[batch]``) maps to ``sigma = sigma(t)`` of the
    table (:class:`DiscreteVPSchedule`, float64, cast to ``x_vp``'s dtype); the model returns, for
    ``x = x_vp / alpha``, ``eps = (x - D)/sigma`` (``'epsilon'``), ``v = alpha eps - sigma_vp D``
    (``'v_prediction'``) or ``D`` (``'sample'``), ``D = denoiser(x, sigma)``. Used to let diffusers'
    schedulers drive a :class:`~samplerlab.experiments.targets.GaussianMixture`. Timesteps outside
    ``[0, N-1]`` raise ValueError naming ``t``.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable denoiser(x, sigma), got {type(denoiser).__name__}")
    schedule = discrete_schedule(alphas_cumprod)
    prediction_type = _check_prediction_type(prediction_type)
    to_output = {"epsilon": eps_from_data, "v_prediction": velocity_from_data,
                 "sample": lambda x, d, s: d}[prediction_type]

    def model(x_vp, t):
        if not isinstance(x_vp, torch.Tensor) or not x_vp.is_floating_point():
            raise TypeError("x must be a floating-point tensor")
        tt = torch.as_tensor(t, device=x_vp.device).to(torch.float64)
        sigma = schedule.sigma(tt).to(x_vp.dtype)
        x = ve_state_from_vp(x_vp, sigma)
        return to_output(x, denoiser(x, sigma), sigma)

    return model


# ----------------------------------------------------------------------------------------------
# a diffusers scheduler running samplerlab's multistep samplers
# ----------------------------------------------------------------------------------------------

def scheduler_samplers():
    """Names of the samplers :class:`SamplerlabScheduler` runs (the multistep family)."""
    from .registry import SOLVERS
    from . import catalogue  # noqa: F401  (fills SOLVERS)
    return sorted(name for name, spec in SOLVERS.items() if spec.family == MULTI)


def _alphas_cumprod_from_config(num_train_timesteps, beta_start, beta_end, beta_schedule,
                                trained_betas) -> torch.Tensor:
    if trained_betas is not None:
        betas = torch.as_tensor(np.asarray(trained_betas, dtype=np.float64))
        if betas.ndim != 1 or betas.numel() != num_train_timesteps:
            raise ValueError(f"trained_betas must be 1-D with num_train_timesteps="
                             f"{num_train_timesteps} entries, got shape {tuple(betas.shape)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError("trained_betas must lie in (0, 1)")
        return grids._cumprod_from_betas(betas, torch.float64, None)
    tables = {"linear": grids.ddpm_linear_alphas_cumprod,
              "scaled_linear": grids.ldm_scaled_linear_alphas_cumprod}
    if beta_schedule not in tables:
        raise ValueError(f"beta_schedule must be one of {sorted(tables)} (or pass trained_betas), "
                         f"got {beta_schedule!r}")
    return tables[beta_schedule](num_train_timesteps, beta_start, beta_end)


if HAVE_DIFFUSERS:
    _Base = (SchedulerMixin, ConfigMixin)
else:  # pragma: no cover
    _Base = (object,)

    def register_to_config(fn):
        return fn


def _check_same_shape_floats(first, second) -> None:
    """Two ``(name, value)`` pairs: both floating-point tensors (TypeError naming the argument),
    the first of the second's shape (ValueError naming both)."""
    for name, value in (first, second):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
    if first[1].shape != second[1].shape:
        raise ValueError(f"{first[0]} has shape {tuple(first[1].shape)}; expected the shape of "
                         f"{second[0]} {tuple(second[1].shape)}")


class SamplerlabScheduler(*_Base):
    """A diffusers scheduler that runs a samplerlab multistep sampler (module docstring).

    Drop-in for a pipeline loop (``DDPMPipeline(unet, SamplerlabScheduler(...))``, or by hand)::

        scheduler.set_timesteps(10)
        for t in scheduler.timesteps:
            out = unet(x, t).sample
            x = scheduler.step(out, t, x).prev_sample

    ``x`` is diffusers' VP state (``init_noise_sigma = 1``, ``scale_model_input`` is the identity;
    ``add_noise`` is the VP forward noising, for img2img/inpainting pipelines). A loop that starts
    at ``timesteps[k]`` (img2img with ``strength < 1``; ``set_begin_index(k)`` or simply the first
    ``step`` there) runs the sampler on ``sigmas[k:]`` with its own warm-up, as diffusers'
    multistep schedulers do.
    Each ``step`` converts the model output to ``D`` (:mod:`~samplerlab.solvers.schedules`), moves
    to the VE state ``x / alpha`` and applies row n of the coefficients that
    ``SOLVERS[sampler].build`` derives once per grid in ``set_timesteps`` (theory/):
    ``x_{n+1} = out_x[n] x_n + sum_j weights[n, j] F_{n-j}``; with ``final_sigmas_type='zero'`` the
    last step is the denoising step ``x <- D`` (DESIGN.md). The result equals
    ``sample(sampler, denoiser_from_diffusers(model, scheduler), x / alpha_0, scheduler.sigmas)``
    up to rounding (tested to 1e-12 in float64).

    Config: the table (``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule`` in
    {'linear', 'scaled_linear'} or ``trained_betas``; built in float64), ``prediction_type``,
    ``sampler`` (a name of :func:`scheduler_samplers`), ``sampler_options`` (options of
    ``SOLVERS[sampler]``; ``warmup`` must stay 'lower_order'), ``timestep_spacing`` and
    ``steps_offset`` (rules of :func:`grids.discrete_timesteps`; as in diffusers the offset only
    shifts the 'leading' grid), ``final_sigmas_type`` ('zero' or 'sigma_min'; with timesteps that
    end at t = 0, 'sigma_min' adds no level and the step at t = 0 returns x unchanged, diffusers'
    h = 0 step). Arithmetic runs in the sample's dtype (float16/bfloat16 upcast to
    float32).
    """

    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001,
                 beta_end: float = 0.02, beta_schedule: str = "linear", trained_betas=None,
                 prediction_type: str = "epsilon", sampler: str = "dpmpp_2m",
                 sampler_options: Optional[dict] = None, timestep_spacing: str = "linspace",
                 steps_offset: int = 0, final_sigmas_type: str = "zero"):
        if not HAVE_DIFFUSERS:  # pragma: no cover
            raise ImportError("SamplerlabScheduler needs diffusers: pip install 'samplerlab[diffusers]'")
        num_train_timesteps = check_positive_int(num_train_timesteps, "num_train_timesteps", 2)
        self.alphas_cumprod = _alphas_cumprod_from_config(num_train_timesteps, beta_start,
                                                          beta_end, beta_schedule, trained_betas)
        self.schedule = DiscreteVPSchedule(self.alphas_cumprod)
        self._prediction = _check_prediction_type(prediction_type)
        _check_final(final_sigmas_type)
        if timestep_spacing not in grids._SPACINGS:   # refused here, not at set_timesteps
            raise ValueError(f"timestep_spacing must be one of {grids._SPACINGS}, got "
                             f"{timestep_spacing!r}")
        check_positive_int(steps_offset, "steps_offset", 0)
        if not isinstance(sampler, str) or sampler not in scheduler_samplers():
            raise ValueError(f"sampler must be one of the one-evaluation-per-step samplers "
                             f"{scheduler_samplers()}, got {sampler!r}")
        self.spec = get_solver(sampler)
        options = dict(sampler_options or {})
        self.options = self.spec.options(**options)
        if self.options.get("warmup", "lower_order") != "lower_order":
            raise ValueError("sampler_options: warmup must be 'lower_order' in a pipeline "
                             "(single-step starters need extra model evaluations per step)")
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(num_train_timesteps)[::-1].copy())
        self.sigmas = None
        self._step_index = None

    # -- diffusers' scheduler protocol ---------------------------------------------------------
    def __len__(self):
        return self.config.num_train_timesteps

    @property
    def step_index(self):
        """Index of the step ``step`` performs next (None before the first step)."""
        return self._step_index

    def scale_model_input(self, sample: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """Identity: the model takes diffusers' VP state directly."""
        return sample

    def set_timesteps(self, num_inference_steps: Optional[int] = None, device=None,
                      timesteps=None):
        """Choose the timesteps (``num_inference_steps`` by ``timestep_spacing``, or the given
        integer ``timesteps``), build the grid ``sigmas`` (float64, VE) and the coefficients."""
        n_train = self.config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("pass exactly one of num_inference_steps or timesteps")
        if timesteps is None:
            spacing = self.config.timestep_spacing
            # as diffusers: steps_offset shifts the 'leading' grid only (SD configs carry
            # steps_offset=1 with any spacing)
            offset = self.config.steps_offset if spacing == "leading" else 0
            ts = grids.discrete_timesteps(n_train, num_inference_steps, spacing, offset)
        else:
            ts_arr = _timesteps_array(timesteps, n_train)
            if not np.array_equal(ts_arr, np.round(ts_arr)):
                raise ValueError("timesteps must be integers")
            ts = torch.as_tensor(ts_arr.astype(np.int64))
        sigmas = sigmas_from_timesteps(ts, self.schedule, final=self.config.final_sigmas_type)
        ends_zero = bool(sigmas[-1] == 0)
        self._m = sigmas.numel() - 1 - int(ends_zero)
        self.sigmas = sigmas
        self.timesteps = ts.to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(ts)
        self._sig = sigmas.tolist()
        self._step_index = None
        self._begin_index = None
        self._build_from(0)

    def _build_from(self, begin: int) -> None:
        """Coefficients for the grid from level ``begin`` on (a loop that starts there — img2img
        with ``strength < 1`` — is the sampler run on ``sigmas[begin:]``: its own lower-order
        warm-up, not rows of the full grid whose history it never saw)."""
        self._row0 = begin
        if self._m - begin >= 1:
            grid = self.sigmas[begin: self._m + 1].numpy()
            coeffs, starter = self.spec.build(grid, self.options)
            if starter is not None:  # pragma: no cover - excluded by the warmup check
                raise ValueError("sampler_options: single-step starters are not supported")
            self._prediction_kind = coeffs.prediction
            self._out_x = coeffs.out_x.tolist()
            self._weights = coeffs.weights.tolist()
            self._history = deque(maxlen=coeffs.weights.shape[1])
        else:
            self._history = deque(maxlen=1)

    @property
    def begin_index(self):
        """The index of the first timestep the loop runs (None: found from the first ``step``)."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the loop at ``timesteps[begin_index]`` (diffusers' img2img pipelines call this
        after ``set_timesteps``); the coefficients are rebuilt for the remaining grid."""
        if self.sigmas is None:
            raise ValueError("call set_timesteps before set_begin_index")
        begin_index = check_positive_int(begin_index, "begin_index", 0)
        if begin_index >= len(self.timesteps):
            raise ValueError(f"begin_index must be below the number of timesteps "
                             f"{len(self.timesteps)}, got {begin_index}")
        self._begin_index = begin_index
        self._step_index = None
        self._build_from(begin_index)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps) -> torch.Tensor:
        """diffusers' forward noising at integer ``timesteps`` (one, or one per sample):
        ``sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise`` (VP), in ``original_samples``'
        dtype and device (coefficients from the float64 table)."""
        _check_same_shape_floats(("noise", noise), ("original_samples", original_samples))
        ts = torch.as_tensor(timesteps).reshape(-1).cpu()
        n_train = self.config.num_train_timesteps
        if ts.is_floating_point() and not torch.equal(ts, ts.round()):
            raise ValueError(f"timesteps must be integers, got {ts.tolist()}")
        ts = ts.long()
        if ts.numel() not in (1, original_samples.shape[0]) or ts.min() < 0 or ts.max() >= n_train:
            raise ValueError(f"timesteps must be one integer or one per sample in [0, {n_train - 1}], "
                             f"got {ts.tolist()}")
        ab = self.alphas_cumprod[ts]
        shape = (-1,) + (1,) * (original_samples.ndim - 1)
        a = ab.sqrt().reshape(shape).to(device=original_samples.device, dtype=original_samples.dtype)
        b = (1 - ab).sqrt().reshape(shape).to(device=original_samples.device,
                                             dtype=original_samples.dtype)
        return a * original_samples + b * noise.to(original_samples.dtype)

    def _index_for(self, timestep) -> int:
        if isinstance(timestep, torch.Tensor) and timestep.numel() != 1:
            raise ValueError(f"timestep must be one timestep (the loop's t), got a tensor of shape "
                             f"{tuple(timestep.shape)}")
        t = int(timestep.item()) if isinstance(timestep, torch.Tensor) else int(timestep)
        hits = (self.timesteps.cpu() == t).nonzero()
        if len(hits) == 0:
            raise ValueError(f"timestep {t} is not one of the scheduler's timesteps "
                             f"{self.timesteps.tolist()}")
        return int(hits[0])

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True, **kwargs):
        """One step from ``timesteps[i]`` to the next level, given the model output there.

        ``generator`` is accepted for pipeline compatibility and unused (the samplers are
        deterministic); other keyword arguments (DDIM's ``eta`` etc.) raise TypeError.
        """
        if kwargs:
            raise TypeError(f"step got unsupported argument(s) {sorted(kwargs)}")
        if self.sigmas is None:
            raise ValueError("call set_timesteps before step")
        _check_same_shape_floats(("model_output", model_output), ("sample", sample))
        if self._step_index is None:
            self._step_index = self._index_for(timestep)
            begin = self._step_index if self._begin_index is None else self._begin_index
            if begin != self._step_index:
                raise ValueError(f"the first step is at timestep {timestep} (index "
                                 f"{self._step_index}) but set_begin_index({begin}) was called")
            if begin != self._row0:
                self._build_from(begin)
        n = self._step_index
        if n >= len(self.timesteps):
            raise ValueError("step called after the last timestep; call set_timesteps again")
        if n == len(self._sig) - 1:
            # 'sigma_min' with timesteps ending at t = 0: diffusers' h = 0 step, x unchanged
            self._step_index = n + 1
            return (sample,) if not return_dict else SchedulerOutput(prev_sample=sample)
        work = torch.promote_types(sample.dtype, torch.float32)
        x_vp, out = sample.to(work), model_output.to(work)
        s, s_next = self._sig[n], self._sig[n + 1]
        x = ve_state_from_vp(x_vp, s)
        if self._prediction == "epsilon":
            d = data_from_eps(x, out, s)
        elif self._prediction == "v_prediction":
            d = data_from_velocity(x, out, s)
        else:
            d = out
        if n >= self._m:  # the final step to sigma = 0: the denoising step
            prev = d
        else:
            row = n - self._row0
            self._history.appendleft(_as_prediction(self._prediction_kind, x, d, s))
            x_next = _combine(self._out_x[row], x, self._weights[row][:len(self._history)],
                              self._history)
            prev = vp_state_from_ve(x_next, s_next)
        self._step_index = n + 1
        prev = prev.to(sample.dtype)
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)
