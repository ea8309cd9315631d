"""Learned-score targets: a small trained MLP denoiser, controlled perturbations, score errors.

The TV bounds of seeds 001/002 add a score-error term to the discretisation term. Their score
error is the time-averaged weighted L2 error (seed 001 slides, "Assumptions: score estimates";
notes-accelerated-samplers-and-res.md §1.5 (A2))

    eps_score^2 = (1/T) sum_t E_{X ~ q_t} || s_t(X) - s*_t(X) ||^2,                       (1)

in the VP variable of the alpha-bar chain. This module provides denoisers whose score error is
known, exactly or measured, on an exact :class:`GaussianMixture` target.

Controlled perturbation
-----------------------
``D_eps(x, sigma) = D(x, sigma) + eps * sigma * g(x, sigma)`` (:func:`perturbed_denoiser`) with
the fixed smooth, bounded ``g(x, sigma) = tanh(x / sqrt(1 + sigma^2) + 1/2)`` (elementwise; the
argument is the VP state ``alpha x``, so g varies on the data scale at every level). In the VE
convention ``score = (D - x) / sigma^2`` the score error is exactly

    s_eps - s* = (D_eps - D) / sigma^2 = eps * g(x, sigma) / sigma,                          (2)

the noise prediction ``eps_hat = (x - D)/sigma`` is off by exactly ``-eps * g``, and in the VP
variable ``x_vp = alpha x`` (``alpha = 1/sqrt(1 + sigma^2)``, ``grad_vp = grad_ve / alpha``)

    s_vp,eps - s*_vp = eps * g / (alpha sigma) = eps * g / sigma_vp,   sigma_vp = alpha sigma.   (3)

So (1) is exactly linear in eps: ``eps_score = eps * c(grid)`` with
``c^2 = mean_t E_{q_t} ||g||^2 / sigma_vp,t^2`` (:func:`perturbation_score_error`), and so is the
Jacobian error (``eps * grad g / sigma_vp``).

Trained MLP
-----------
:func:`train_mlp_denoiser` fits ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with EDM
preconditioning (Karras et al. 2022, Table 1: ``c_skip = sd^2/(sigma^2 + sd^2)``,
``c_out = sigma sd / sqrt(sigma^2 + sd^2)``, ``c_in = 1/sqrt(sigma^2 + sd^2)``,
``c_noise = log(sigma)/4``; loss weight ``(sigma^2 + sd^2)/(sigma sd)^2``, ``log sigma ~
N(P_mean, P_std^2)``) on fresh samples of the target every iteration; float64, seeded (data and
noise from one ``torch.Generator``, initialisation under ``torch.random.fork_rng`` with the seed),
one thread during training, so a rerun gives the same weights bit for bit.
:func:`save_mlp` / :func:`load_mlp` store the state dict with its :class:`MLPConfig`; loading
with a different config raises ``ValueError`` naming the differing fields.
:func:`score_error_profile` measures ``sqrt(E_{p_sigma} ||s - s*||^2)`` per noise level (VE and
VP units) by Monte Carlo on seeded exact samples of the noised marginal.
"""
from __future__ import annotations

import dataclasses
import io
import math
import numbers
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

from .io import atomic_write_bytes
from .targets import GaussianMixture

__all__ = ["perturbation_g", "perturbed_denoiser", "perturbation_score_error", "MLPConfig",
           "MLPDenoiser", "train_mlp_denoiser", "save_mlp", "load_mlp", "score_error_profile",
           "vp_sigma"]


def vp_sigma(sigma):
    """``sigma_vp = sigma / sqrt(1 + sigma^2)`` (the VP noise level of a VE level)."""
    return sigma / math.sqrt(1.0 + sigma * sigma) if isinstance(sigma, float) else \
        sigma / torch.sqrt(1.0 + sigma * sigma)


def _sigma_like(sigma, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        return s
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be 0-d or of shape [batch] = [{x.shape[0]}], got "
                         f"{tuple(s.shape)}")
    return s.reshape(-1, *([1] * (x.ndim - 1)))


def perturbation_g(x: torch.Tensor, sigma) -> torch.Tensor:
    """The fixed smooth perturbation direction ``g(x, sigma) = tanh(x/sqrt(1 + sigma^2) + 1/2)``."""
    s = _sigma_like(sigma, x)
    return torch.tanh(x / torch.sqrt(1.0 + s * s) + 0.5)


def perturbed_denoiser(denoiser: Callable, eps: float, g: Callable = perturbation_g) -> Callable:
    """``D_eps(x, sigma) = D(x, sigma) + eps * sigma * g(x, sigma)``; score error exactly
    ``eps * g / sigma`` (VE), ``eps * g / sigma_vp`` (VP), see the module docstring."""
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number, got {eps!r}")
    eps = float(eps)

    def d_eps(x, sigma):
        out = denoiser(x, sigma)
        if eps == 0.0:
            return out
        return out + eps * _sigma_like(sigma, x) * g(x, sigma)

    d_eps.eps = eps
    return d_eps


def perturbation_score_error(target: GaussianMixture, eps: float, sigmas, *, n: int = 4096,
                             seed: int = 0, g: Callable = perturbation_g) -> Dict[str, float]:
    """eps_score of (1) for :func:`perturbed_denoiser` on the levels ``sigmas`` (> 0), from (3):
    ``eps * sqrt(mean_t E_{p_sigma_t} ||g||^2 / sigma_vp,t^2)`` (seeded Monte Carlo over ``n``
    exact samples per level); also the VE average ``eps * sqrt(mean_t E ||g||^2 / sigma_t^2)``."""
    levels = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)]
    if not levels or min(levels) <= 0:
        raise ValueError("sigmas must be noise levels > 0")
    gen = torch.Generator(device=target.device).manual_seed(int(seed))
    vp, ve = [], []
    for s in levels:
        y = target.sample(n, generator=gen, sigma=s)
        m2 = float(torch.mean(torch.sum(g(y, torch.tensor(s, dtype=y.dtype)) ** 2, dim=-1)))
        vp.append(m2 / vp_sigma(s) ** 2)
        ve.append(m2 / s ** 2)
    return {"eps_score_vp": abs(eps) * math.sqrt(sum(vp) / len(vp)),
            "eps_score_ve": abs(eps) * math.sqrt(sum(ve) / len(ve))}


# ------------------------------------------------------------------------------------------------
# trained MLP
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Architecture and training of :class:`MLPDenoiser` (all of it is checked on load)."""

    dim: int = 1
    hidden: int = 64
    depth: int = 3
    sigma_data: float = 1.0
    iterations: int = 1500
    batch: int = 512
    lr: float = 3e-3
    p_mean: float = -1.2
    p_std: float = 1.2
    seed: int = 0
    target: str = ""          # a description of the training target (checked on load)


class MLPDenoiser(nn.Module):
    """EDM-preconditioned MLP denoiser ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)``."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        layers: List[nn.Module] = []
        width = config.dim + 1
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(nn.Linear(width, config.dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"x must have shape [n, {self.config.dim}], got {tuple(x.shape)}")
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.expand(x.shape[0]) if s.ndim == 0 else s.reshape(-1)
        if s.shape[0] != x.shape[0]:
            raise ValueError(f"sigma must be 0-d or [batch] = [{x.shape[0]}], got "
                             f"{tuple(s.shape)}")
        s = s[:, None]
        sd2 = self.config.sigma_data ** 2
        c_skip = sd2 / (s * s + sd2)
        c_out = s * self.config.sigma_data / torch.sqrt(s * s + sd2)
        c_in = 1.0 / torch.sqrt(s * s + sd2)
        f = self.net(torch.cat([c_in * x, torch.log(s) / 4.0], dim=1))
        return c_skip * x + c_out * f

    def denoiser(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The samplerlab denoiser ``D(x, sigma)`` (differentiable; no grad-mode change)."""
        return self.forward(x, sigma)


def _check_config(config: MLPConfig):
    if not isinstance(config, MLPConfig):
        raise TypeError(f"config must be an MLPConfig, got {type(config).__name__}")
    for name in ("dim", "hidden", "depth", "iterations", "batch"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"config.{name} must be an integer >= 1, got {v!r}")
    for name in ("sigma_data", "lr", "p_std"):
        v = getattr(config, name)
        if not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0):
            raise ValueError(f"config.{name} must be a finite number > 0, got {v!r}")


def train_mlp_denoiser(target: GaussianMixture, config: MLPConfig = MLPConfig()):
    """Train an :class:`MLPDenoiser` on fresh exact samples of ``target`` (EDM loss, Adam).

    Returns ``(model, info)`` with ``info = {"loss": final EMA of the weighted loss, "seconds"}``;
    the model is in float64 and eval mode with gradients of its parameters switched off.
    """
    _check_config(config)
    if not isinstance(target, GaussianMixture):
        raise TypeError(f"target must be a GaussianMixture, got {type(target).__name__}")
    if target.dim != config.dim:
        raise ValueError(f"config.dim = {config.dim} but the target has d = {target.dim}")
    tgt = target.to(dtype=torch.float64, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = MLPDenoiser(config).double()
        gen = torch.Generator().manual_seed(config.seed + 1)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.iterations)
        sd = config.sigma_data
        ema = None
        for _ in range(config.iterations):
            x0 = tgt.sample(config.batch, generator=gen)
            log_s = config.p_mean + config.p_std * torch.randn(config.batch, generator=gen,
                                                               dtype=torch.float64)
            s = torch.exp(log_s)
            noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
            d = model(x0 + s[:, None] * noise, s)
            weight = (s * s + sd * sd) / (s * sd) ** 2
            loss = torch.mean(weight[:, None] * (d - x0) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            value = float(loss.detach())
            ema = value if ema is None else 0.98 * ema + 0.02 * value
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {"loss": ema, "seconds": time.perf_counter() - start}


def save_mlp(model: MLPDenoiser, path) -> Path:
    """Save the state dict and config atomically (``torch.save`` of a plain dict)."""
    if not isinstance(model, MLPDenoiser):
        raise TypeError(f"model must be an MLPDenoiser, got {type(model).__name__}")
    buf = io.BytesIO()
    torch.save({"config": dataclasses.asdict(model.config),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_mlp(path, config: MLPConfig) -> MLPDenoiser:
    """Load a model saved by :func:`save_mlp`; ``ValueError`` if it was saved for another config."""
    _check_config(config)
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or set(blob) != {"config", "state_dict"}:
        raise ValueError(f"{path} is not a file written by save_mlp")
    stored, wanted = blob["config"], dataclasses.asdict(config)
    diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    if diff:
        raise ValueError(f"{path} was saved for another config: "
                         + ", ".join(f"{k}: stored {stored.get(k)!r}, wanted {wanted.get(k)!r}"
                                     for k in diff))
    model = MLPDenoiser(config).double()
    model.load_state_dict(blob["state_dict"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def score_error_profile(target: GaussianMixture, denoiser: Callable, sigmas: Sequence[float], *,
                        n: int = 4096, seed: int = 0) -> List[Dict[str, float]]:
    """Per level: ``score_error_ve = sqrt(E_{p_sigma} ||s - s*||^2)`` with ``s = (D - x)/sigma^2``,
    ``score_error_vp = score_error_ve * sqrt(1 + sigma^2)`` (3), and the RMS denoiser error
    ``sqrt(E ||D - D*||^2) = sigma^2 * score_error_ve``; seeded exact samples of the marginal."""
    gen = torch.Generator(device=target.device).manual_seed(int(seed))
    rows = []
    for s in sigmas:
        s = float(s)
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"sigmas must be finite and > 0, got {s!r}")
        y = target.sample(n, generator=gen, sigma=s)
        sig = torch.tensor(s, dtype=y.dtype, device=y.device)
        with torch.no_grad():
            err = denoiser(y, sig) - target.denoiser(y, sig)
        if not bool(torch.isfinite(err).all()):
            raise FloatingPointError(f"the denoiser returned NaN or inf at sigma = {s:g}")
        d_rms = float(torch.sqrt(torch.mean(torch.sum(err * err, dim=-1))))
        ve = d_rms / (s * s)
        rows.append({"sigma": s, "denoiser_error": d_rms, "score_error_ve": ve,
                     "score_error_vp": ve * math.sqrt(1.0 + s * s)})
    return rows
