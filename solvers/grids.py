"""Time grids: strictly decreasing 1-D tensors of VE noise levels ``sigmas``.

Conventions shared by every grid function here:

* ``n`` is the number of steps M; the grid has exactly ``M + 1`` entries, strictly decreasing.
* ``append_zero=False`` (the default): all ``M + 1`` entries are positive, from ``sigma_max`` down
  to ``sigma_min`` (both hit exactly). Order and convergence studies use these grids.
  ``append_zero=True``: the first ``M`` entries are the grid of the same family with ``M`` points
  from ``sigma_max`` to ``sigma_min`` and the last entry is 0, so the final step is the denoising
  step of DESIGN.md. This is k-diffusion's ``get_sigmas_*(n)`` and diffusers' ``n`` inference
  steps + final 0 (``n`` positive levels then 0, ``n`` steps in all).
* ``device=None`` (CPU), ``dtype=torch.float64``: the grid is computed in float64 and then cast;
  a cast that merges neighbouring levels raises ValueError instead of returning a non-strict grid.
* Bad arguments raise ValueError/TypeError naming the argument.

Families: ``karras`` (EDM rho-schedule), ``lambda_uniform`` (uniform in log-SNR), ``sigma_uniform``,
``vp_time_uniform`` and ``time_quadratic`` (uniform / quadratic in a VP schedule's time),
``discrete_grid`` (timesteps of a discrete DDPM table with diffusers' spacings) and ``li_grid``
(the schedule of the theory papers, seeds 001/002). ``GRIDS`` maps names to the functions and
``make_grid(name, n, **kw)`` dispatches.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict

import numpy as np
import torch

from ._checks import check_in_range, check_positive_int
from .schedules import DiscreteVPSchedule, VPSchedule, vp_schedule

__all__ = [
    "karras", "lambda_uniform", "sigma_uniform", "vp_time_uniform", "time_quadratic",
    "ddpm_linear_alphas_cumprod", "ldm_scaled_linear_alphas_cumprod", "discrete_timesteps",
    "discrete_grid", "LiSchedule", "li_schedule", "li_grid", "GRIDS", "make_grid",
]


# ----------------------------------------------------------------------------------------------
# common helpers
# ----------------------------------------------------------------------------------------------

def _check_dtype(dtype):
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def _count(n, append_zero) -> int:
    """Number of positive levels for ``n`` steps."""
    n = check_positive_int(n, "n", 1)
    if not isinstance(append_zero, bool):
        raise TypeError(f"append_zero must be a bool, got {type(append_zero).__name__}")
    return n if append_zero else n + 1


def _ramp(k: int, device) -> torch.Tensor:
    """``[0, 1/(k-1), ..., 1]`` in float64 (``[0]`` when ``k == 1``)."""
    if k == 1:
        return torch.zeros(1, dtype=torch.float64, device=device)
    return torch.arange(k, dtype=torch.float64, device=device) / (k - 1)


def _sigma_range(sigma_min, sigma_max):
    lo = check_in_range(sigma_min, "sigma_min", 0.0, low_open=True)
    hi = check_in_range(sigma_max, "sigma_max", 0.0, low_open=True)
    if not hi > lo:
        raise ValueError(f"sigma_max must be > sigma_min, got sigma_max={hi}, sigma_min={lo}")
    return lo, hi


def _finish(levels: torch.Tensor, append_zero: bool, dtype, first=None, last=None) -> torch.Tensor:
    """Pin the endpoints, append 0 if asked, cast, and check strict decrease after the cast."""
    levels = levels.clone()
    if first is not None:
        levels[0] = first
    if last is not None and levels.numel() > 1:
        levels[-1] = last
    if append_zero:
        levels = torch.cat([levels, levels.new_zeros(1)])
    out = levels.to(dtype)
    if not torch.isfinite(out).all():
        raise ValueError(f"the grid does not fit in {dtype} (overflow)")
    if not (out[1:] < out[:-1]).all():
        raise ValueError(f"the grid is not strictly decreasing in {dtype}: too many steps (n) for "
                         f"this range or precision")
    if (out[:-1] <= 0).any() or (not append_zero and out[-1] <= 0):
        raise ValueError(f"the grid has a non-positive level in {dtype} (underflow)")
    return out


# ----------------------------------------------------------------------------------------------
# continuous grids
# ----------------------------------------------------------------------------------------------

def karras(n, sigma_min=0.002, sigma_max=80.0, rho=7.0, *, append_zero=False, device=None,
           dtype=torch.float64) -> torch.Tensor:
    """Karras et al. 2022 (EDM, arXiv 2206.00364, eq. 5) rho-schedule, uniform in ``sigma^(1/rho)``:

    ``sigma_i = (sigma_max^(1/rho) + i/(K-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``,
    ``i = 0..K-1``, ``K = n + 1`` (or ``n`` and a final 0 with ``append_zero``).
    """
    k = _count(n, append_zero)
    lo, hi = _sigma_range(sigma_min, sigma_max)
    rho = check_in_range(rho, "rho", 0.0, low_open=True)
    _check_dtype(dtype)
    a, b = hi ** (1 / rho), lo ** (1 / rho)
    levels = (a + _ramp(k, device) * (b - a)) ** rho
    return _finish(levels, append_zero, dtype, hi, lo)


def lambda_uniform(n, sigma_min=0.002, sigma_max=80.0, *, append_zero=False, device=None,
                   dtype=torch.float64) -> torch.Tensor:
    """Uniform in ``lambda = -log sigma`` (half log-SNR; DPM-Solver's 'logSNR' skip, Lu et al. 2022):
    ``sigma_i = exp(log sigma_max + i/(K-1) (log sigma_min - log sigma_max))``: every step has the
    same ``h = log(sigma_i / sigma_{i+1})``."""
    k = _count(n, append_zero)
    lo, hi = _sigma_range(sigma_min, sigma_max)
    _check_dtype(dtype)
    a, b = math.log(hi), math.log(lo)
    levels = torch.exp(a + _ramp(k, device) * (b - a))
    return _finish(levels, append_zero, dtype, hi, lo)


def sigma_uniform(n, sigma_min=0.002, sigma_max=80.0, *, append_zero=False, device=None,
                  dtype=torch.float64) -> torch.Tensor:
    """Uniform in sigma: ``sigma_i = sigma_max + i/(K-1) (sigma_min - sigma_max)``."""
    k = _count(n, append_zero)
    lo, hi = _sigma_range(sigma_min, sigma_max)
    _check_dtype(dtype)
    levels = hi + _ramp(k, device) * (lo - hi)
    return _finish(levels, append_zero, dtype, hi, lo)


def _time_range(schedule, t_min, t_max):
    sched = vp_schedule(schedule)
    if t_min is None:
        t_min = 1e-3 if not isinstance(sched, DiscreteVPSchedule) else 0.0
    if t_max is None:
        t_max = sched.t_end
    low_open = not isinstance(sched, DiscreteVPSchedule)  # sigma(0) = 0 for continuous schedules
    t_min = check_in_range(t_min, "t_min", sched.t_min, sched.t_max, low_open=low_open,
                           high_open=sched.t_max_open)
    t_max = check_in_range(t_max, "t_max", sched.t_min, sched.t_max, low_open=low_open,
                           high_open=sched.t_max_open)
    if not t_max > t_min:
        raise ValueError(f"t_max must be > t_min, got t_max={t_max}, t_min={t_min}")
    return sched, t_min, t_max


def vp_time_uniform(n, schedule="linear", t_min=None, t_max=None, *, append_zero=False,
                    device=None, dtype=torch.float64) -> torch.Tensor:
    """Uniform in the time of a VP schedule: ``t_i = t_max + i/(K-1) (t_min - t_max)``,
    ``sigma_i = schedule.sigma(t_i)``.

    ``schedule``: ``'linear'`` (VP-SDE, beta 0.1..20), ``'cosine'`` (s = 0.008) or any
    ``VPSchedule`` (e.g. ``DiscreteVPSchedule``, whose time is the fractional table index).
    Defaults: ``t_min = 1e-3`` (0 for a discrete table), ``t_max = schedule.t_end`` (1 for linear,
    0.9946 for cosine as in DPM-Solver, ``N - 1`` for a table). ``t_min > 0`` is required for the
    continuous schedules (``sigma(0) = 0``). DPM-Solver's 'time_uniform' skip type.
    """
    k = _count(n, append_zero)
    _check_dtype(dtype)
    sched, lo, hi = _time_range(schedule, t_min, t_max)
    t = hi + _ramp(k, device) * (lo - hi)
    levels = sched.sigma(t)
    return _finish(levels, append_zero, dtype, sched.sigma(hi), sched.sigma(lo))


def time_quadratic(n, schedule="linear", t_min=None, t_max=None, *, append_zero=False,
                   device=None, dtype=torch.float64) -> torch.Tensor:
    """Quadratic in the time of a VP schedule (uniform in ``sqrt(t)``):
    ``t_i = (sqrt(t_max) + i/(K-1) (sqrt(t_min) - sqrt(t_max)))^2``, ``sigma_i = schedule.sigma(t_i)``.

    This is DPM-Solver's 'time_quadratic' skip type and, with a ``DiscreteVPSchedule`` and
    ``t_min = 0``, ``t_max = 0.8 (N - 1)``, DDIM's "quad" skip (Song et al. 2021, arXiv 2010.02502;
    DDIM also rounds the timesteps to integers, which this continuous version does not).
    Arguments and defaults as ``vp_time_uniform``.
    """
    k = _count(n, append_zero)
    _check_dtype(dtype)
    sched, lo, hi = _time_range(schedule, t_min, t_max)
    a, b = math.sqrt(hi), math.sqrt(lo)
    t = (a + _ramp(k, device) * (b - a)) ** 2
    levels = sched.sigma(t)
    return _finish(levels, append_zero, dtype, sched.sigma(hi), sched.sigma(lo))


# ----------------------------------------------------------------------------------------------
# discrete DDPM tables
# ----------------------------------------------------------------------------------------------

def _cumprod_from_betas(betas: torch.Tensor, dtype, device) -> torch.Tensor:
    """``alpha_bar_t = prod_{k<=t} (1 - beta_k) = exp(cumsum(log1p(-beta)))`` in float64."""
    out = torch.exp(torch.cumsum(torch.log1p(-betas), 0))
    return out.to(device=device, dtype=_check_dtype(dtype))


def _beta_args(num_steps, beta_start, beta_end):
    num_steps = check_positive_int(num_steps, "num_steps", 2)
    beta_start = check_in_range(beta_start, "beta_start", 0.0, 1.0, low_open=True, high_open=True)
    beta_end = check_in_range(beta_end, "beta_end", 0.0, 1.0, low_open=True, high_open=True)
    return num_steps, beta_start, beta_end


def ddpm_linear_alphas_cumprod(num_steps=1000, beta_start=1e-4, beta_end=0.02, *, device=None,
                               dtype=torch.float64) -> torch.Tensor:
    """DDPM's table (Ho et al. 2020, arXiv 2006.11239): ``beta_t`` linear from ``beta_start`` to
    ``beta_end`` over ``num_steps`` steps, ``alpha_bar_t = prod_{k<=t} (1 - beta_k)`` (index 0 is the
    first step, as in diffusers' ``alphas_cumprod``)."""
    num_steps, b0, b1 = _beta_args(num_steps, beta_start, beta_end)
    betas = torch.linspace(b0, b1, num_steps, dtype=torch.float64)
    return _cumprod_from_betas(betas, dtype, device)


def ldm_scaled_linear_alphas_cumprod(num_steps=1000, beta_start=0.00085, beta_end=0.012, *,
                                     device=None, dtype=torch.float64) -> torch.Tensor:
    """Latent/Stable Diffusion's "scaled_linear" table (Rombach et al. 2022): ``sqrt(beta_t)`` linear
    from ``sqrt(beta_start)`` to ``sqrt(beta_end)`` over ``num_steps`` steps; cumulative product as in
    ``ddpm_linear_alphas_cumprod``."""
    num_steps, b0, b1 = _beta_args(num_steps, beta_start, beta_end)
    betas = torch.linspace(math.sqrt(b0), math.sqrt(b1), num_steps, dtype=torch.float64) ** 2
    return _cumprod_from_betas(betas, dtype, device)


_SPACINGS = ("linspace", "leading", "trailing")


def discrete_timesteps(num_train_steps, count, spacing="linspace", steps_offset=0,
                       *, device=None) -> torch.Tensor:
    """``count`` integer timesteps of a table of ``num_train_steps`` entries, decreasing, chosen as
    diffusers' ``timestep_spacing`` (Lin et al. 2024, "Common diffusion noise schedules and sample
    steps are flawed", arXiv 2305.08891, Table 2), with ``N = num_train_steps``:

    * ``'linspace'``: ``round(linspace(0, N - 1, count))`` reversed (first N-1, last 0);
    * ``'leading'``: ``i * (N // count) + steps_offset`` for ``i = count-1..0``;
    * ``'trailing'``: ``round(N - i * N / count) - 1`` for ``i = 0..count-1`` (first N-1).

    Rounding is half-to-even, as numpy's. ValueError if two timesteps coincide
    (``count`` too large) or one leaves ``[0, N-1]``. Returns an int64 tensor.
    """
    n_train = check_positive_int(num_train_steps, "num_train_steps", 2)
    count = check_positive_int(count, "count", 1)
    steps_offset = check_positive_int(steps_offset, "steps_offset", 0)
    if spacing not in _SPACINGS:
        raise ValueError(f"spacing must be one of {_SPACINGS}, got {spacing!r}")
    if steps_offset and spacing != "leading":
        raise ValueError("steps_offset is only used by spacing='leading'")
    if spacing == "linspace":
        ts = np.round(np.linspace(0, n_train - 1, count))[::-1]
    elif spacing == "leading":
        ratio = n_train // count
        if ratio < 1:
            raise ValueError(f"count={count} exceeds num_train_steps={n_train} for 'leading'")
        ts = (np.arange(count) * ratio)[::-1] + steps_offset
    else:
        ts = np.round(n_train - np.arange(count) * (n_train / count)) - 1
    ts = np.ascontiguousarray(ts).astype(np.int64)
    if ts.min() < 0 or ts.max() > n_train - 1:
        raise ValueError(f"timesteps leave [0, {n_train - 1}] (steps_offset={steps_offset} too large?)")
    if not (np.diff(ts) < 0).all():
        raise ValueError(f"count={count} timesteps with spacing={spacing!r} are not distinct for "
                         f"num_train_steps={n_train}")
    return torch.as_tensor(ts, device=device)


def discrete_grid(alphas_cumprod, n, spacing="linspace", steps_offset=0, *, append_zero=False,
                  device=None, dtype=torch.float64) -> torch.Tensor:
    """Noise levels of a discrete DDPM table at the timesteps of ``discrete_timesteps``:
    ``sigma_i = sqrt((1 - alpha_bar[t_i]) / alpha_bar[t_i])``.

    With ``append_zero=True`` this is diffusers' ``n`` inference steps (``n`` timesteps + final 0);
    with ``append_zero=False`` ``n + 1`` timesteps are taken by the same spacing rule.
    ``alphas_cumprod``: 1-D strictly decreasing table in (0, 1) (tensor, array or list).
    """
    k = _count(n, append_zero)
    _check_dtype(dtype)
    sched = alphas_cumprod if isinstance(alphas_cumprod, DiscreteVPSchedule) \
        else DiscreteVPSchedule(alphas_cumprod)
    ts = discrete_timesteps(sched.num_steps, k, spacing, steps_offset)
    levels = sched.sigmas[ts].to(device=device)
    return _finish(levels, append_zero, dtype)


# ----------------------------------------------------------------------------------------------
# the schedule of the theory papers (seeds 001/002)
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LiSchedule:
    """The learning-rate schedule of Li, Wei, Chen & Chi (2023) used by seeds 001/002.

    Attributes (float64 tensors indexed ``t = 1..T`` at positions ``0..T-1``):
    ``alphas`` (``alpha_t``), ``betas`` (``1 - alpha_t``, computed without cancellation),
    ``alphas_cumprod`` (``alpha_bar_t``), ``sigmas`` (VE levels ``sqrt(1/alpha_bar_t - 1)`` in
    *decreasing* order, i.e. ``t = T, ..., 1``: the grid of the sampler ``Y_T -> ... -> Y_1``, T-1
    steps ending at ``alpha_bar_1 = 1 - T^(-c0)``, the early-stopping output compared with
    ``X_1``), ``alpha_T_plus_1`` (the same formula at ``t = T + 1``, needed by the accelerated ODE
    sampler's first look-back step) and ``T``, ``c0``, ``c1``.
    """

    T: int
    c0: float
    c1: float
    alphas: torch.Tensor
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    sigmas: torch.Tensor
    alpha_T_plus_1: float


def li_schedule(T, c0, c1, *, device=None, dtype=torch.float64) -> LiSchedule:
    """The schedule of Li et al. (seeds 001/002; notes-accelerated-samplers-and-res.md §1.1,
    notes-fdpmsolver-and-lagrange-sampler.md §2.2; reconstructed there, formula as on the talk
    slides of seed 001), with ``r = c1 log T / T`` (natural log)::

        1 - alpha_1     = T^(-c0)
        1 - alpha_{t+1} = r * min{ (1 - alpha_1) (1 + r)^t, 1 },   t = 1, ..., T   (alpha_{T+1} too)
        alpha_bar_t     = prod_{k <= t} alpha_k

    Properties (tested): ``1 - alpha_t`` is non-decreasing for ``t >= 2`` with
    ``1 <= (1-alpha_{t+1})/(1-alpha_t) <= 1 + r`` and capped at ``r``; ``alpha_bar_T`` is about
    ``T^-(c1 - c0)``. Requires ``T >= 2``, ``c0 > 0``, ``c1 > 0`` and ``r < 1`` (otherwise some
    ``alpha_t <= 0``). The cumulative product is formed as ``exp(cumsum(log1p(-beta)))``, and
    the sigmas as ``sqrt(expm1(-log alpha_bar))``, so ``alpha_bar_1`` near 1 loses nothing.
    """
    T = check_positive_int(T, "T", 2)
    c0 = check_in_range(c0, "c0", 0.0, low_open=True)
    c1 = check_in_range(c1, "c1", 0.0, low_open=True)
    _check_dtype(dtype)
    r = c1 * math.log(T) / T
    if not r < 1:
        raise ValueError(f"c1 * log(T) / T must be < 1 (else some alpha_t <= 0), got {r:.4g} "
                         f"for T={T}, c1={c1}")
    beta1 = T ** (-c0)
    t = torch.arange(1, T + 1, dtype=torch.float64)            # t = 1..T gives beta_{t+1}
    growth = beta1 * torch.exp(t * math.log1p(r))
    beta_next = r * torch.clamp(growth, max=1.0)               # beta_2 .. beta_{T+1}
    betas_all = torch.cat([torch.tensor([beta1], dtype=torch.float64), beta_next])
    betas = betas_all[:T]
    log_ab = torch.cumsum(torch.log1p(-betas), 0)
    sigmas = torch.sqrt(torch.expm1(-log_ab)).flip(0)
    kw = dict(device=device, dtype=dtype)
    out_sigmas = sigmas.to(**kw)
    if not (out_sigmas[1:] < out_sigmas[:-1]).all():
        raise ValueError(f"the schedule's sigmas are not strictly decreasing in {dtype}")
    return LiSchedule(T=T, c0=c0, c1=c1, alphas=(1 - betas).to(**kw), betas=betas.to(**kw),
                      alphas_cumprod=torch.exp(log_ab).to(**kw), sigmas=out_sigmas,
                      alpha_T_plus_1=float(1 - betas_all[T]))


def li_grid(n, c0=1.0, c1=3.0, *, append_zero=False, device=None, dtype=torch.float64):
    """The grid of ``li_schedule`` with ``n`` steps: ``T = n + 1`` levels ``t = T..1``
    (``append_zero=False``), or ``T = n`` levels then 0 (``append_zero=True``, a final denoising
    step from ``alpha_bar_1``). Note that ``T`` (and hence the schedule) depends on ``n``.
    Defaults ``c0 = 1, c1 = 3`` as in notes-fdpmsolver-and-lagrange-sampler.md §2.3 (needs
    ``3 log T / T < 1``, i.e. ``T >= 5``)."""
    k = _count(n, append_zero)
    if k < 2:
        raise ValueError("n must be >= 2 with append_zero=True (T = n >= 2)")
    sched = li_schedule(k, c0, c1, device=device, dtype=torch.float64)
    return _finish(sched.sigmas, append_zero, dtype)


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------

GRIDS: Dict[str, Callable[..., torch.Tensor]] = {
    "karras": karras,
    "lambda_uniform": lambda_uniform,
    "sigma_uniform": sigma_uniform,
    "vp_time_uniform": vp_time_uniform,
    "time_quadratic": time_quadratic,
    "discrete": discrete_grid,
    "li": li_grid,
}


def make_grid(name, n, **kw) -> torch.Tensor:
    """``GRIDS[name](n, **kw)``; for ``'discrete'`` pass ``alphas_cumprod=`` (default: the DDPM
    linear table of ``ddpm_linear_alphas_cumprod()``). Unknown names raise ValueError listing the
    known ones."""
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; known grids: {sorted(GRIDS)}")
    if name == "discrete":
        table = kw.pop("alphas_cumprod", None)
        if table is None:
            table = ddpm_linear_alphas_cumprod()
        return discrete_grid(table, n, **kw)
    return GRIDS[name](n, **kw)
