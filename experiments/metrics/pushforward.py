"""Push-forward Monte Carlo: the exact change-of-variables density of a deterministic sampler map and the importance-sampling TV estimator.

Part of :mod:`samplerlab.experiments.metrics` (see its docstring for the interfaces).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable
import torch
from samplerlab.theory.validation import check_finite, check_positive_int

__all__ = ['MCEstimate', 'log_density_pushforward', 'tv_pushforward']


@dataclasses.dataclass(frozen=True)
class MCEstimate:
    """Monte-Carlo estimate ``value`` with its standard error ``stderr`` from ``n_samples``."""

    value: float
    stderr: float
    n_samples: int

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:.4e} +- {self.stderr:.1e} (n={self.n_samples})"


def _call_log_prob(log_prob, y, name):
    if not callable(log_prob):
        raise TypeError(f"{name} must be a callable y[n, d] -> log density [n]")
    out = log_prob(y)
    if not isinstance(out, torch.Tensor) or out.shape != (y.shape[0],):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must return a tensor of shape [{y.shape[0]}], got {shape}")
    if torch.isnan(out).any() or (out == math.inf).any():
        raise ValueError(f"{name} returned NaN or +inf")
    return out


def _map_with_log_abs_det(sampler_map, x):
    """``y = T(x)`` and ``log |det dT/dx|`` per sample (row-wise map, autograd, d backward passes).

    Row i of every sample's Jacobian is the gradient of ``sum_n y[n, i]`` with respect to x
    (valid because the map is row-wise). Returns ``(y, log_abs_det, sign)``.
    """
    if not callable(sampler_map):
        raise TypeError("sampler_map must be a callable x[n, d] -> y[n, d]")
    d = x.shape[1]
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        y = sampler_map(xg)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"sampler_map must return a tensor of shape {tuple(x.shape)}, "
                             f"got {shape}")
        if not y.requires_grad:
            raise ValueError("sampler_map output does not depend differentiably on its input "
                             "(no autograd graph: does the sampler run under torch.no_grad or "
                             "detach its state?)")
        rows = []
        for i in range(d):
            (g,) = torch.autograd.grad(y[:, i].sum(), xg, retain_graph=i < d - 1,
                                       allow_unused=True)
            rows.append(torch.zeros_like(xg) if g is None else g)
    jac = torch.stack(rows, dim=1)  # jac[n, i, j] = d y_i / d x_j
    if d == 1:
        j = jac[:, 0, 0]
        sign, logabs = torch.sign(j), torch.log(torch.abs(j))
    else:
        sign, logabs = torch.linalg.slogdet(jac)
    y = y.detach()
    check_finite(y, "sampler_map(x)")
    if (sign == 0).any() or not torch.isfinite(logabs).all():
        raise ValueError("sampler_map has a singular or non-finite Jacobian at some points; "
                         "the change of variables needs an invertible map")
    return y, logabs.detach(), sign.detach()


def _check_points(x, name, d=None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [n, d], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape [n, d], got {tuple(x.shape)}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} must have {d} column(s), got shape {tuple(x.shape)}")
    check_finite(x, name)


def log_density_pushforward(sampler_map: Callable, x: torch.Tensor, base_log_prob: Callable):
    """Output points and output log density of a deterministic map at ``y = T(x)``.

    Change of variables: ``log q(T(x)) = log p_base(x) - log |det dT/dx (x)|``, with the Jacobian
    from autograd (d backward passes over the batch). Returns ``(y [n, d], log_q [n])``.
    """
    _check_points(x, "x")
    y, logabs, _ = _map_with_log_abs_det(sampler_map, x)
    return y, _call_log_prob(base_log_prob, x, "base_log_prob") - logabs


def tv_pushforward(sampler_map: Callable, base_sample: torch.Tensor, base_log_prob: Callable,
                   target_log_prob: Callable, *, batch_size: int = 8192) -> MCEstimate:
    """TV between the law q of ``T(X)``, ``X ~ base``, and a target p, by importance sampling.

    ``TV = int (q - p)_+ = E_{y~q}[(1 - p(y)/q(y))_+]``; with ``y_i = T(x_i)`` for the given base
    samples ``x_i`` and ``q(y_i)`` from :func:`log_density_pushforward`, the estimate is the sample
    mean of ``t_i = (1 - exp(log p(y_i) - log q(y_i)))_+ in [0, 1]``, its standard error
    ``std(t) / sqrt(n)``. Unbiased; the terms are bounded, so the error is ~``stderr``.

    ``base_sample``: [n, d] tensor of draws from the base law (draw them with a seeded
    generator); ``base_log_prob``/``target_log_prob``: log-density callables (module docstring).
    Processed in batches of ``batch_size`` rows.
    """
    _check_points(base_sample, "base_sample")
    batch_size = check_positive_int(batch_size, "batch_size")
    n = base_sample.shape[0]
    if n < 2:
        raise ValueError("base_sample must hold at least 2 samples for a standard error")
    terms = []
    for start in range(0, n, batch_size):
        x = base_sample[start:start + batch_size]
        y, log_q = log_density_pushforward(sampler_map, x, base_log_prob)
        if not torch.isfinite(log_q).all():
            raise ValueError("base_log_prob is -inf at some of base_sample's points")
        log_p = _call_log_prob(target_log_prob, y, "target_log_prob")
        terms.append(torch.clamp(-torch.expm1(log_p - log_q), min=0.0))
    t = torch.cat(terms)
    return MCEstimate(value=float(t.mean()), stderr=float(t.std(unbiased=True) / math.sqrt(n)),
                      n_samples=n)
