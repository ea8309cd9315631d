"""Numerical defect: per-sample distances to a reference endpoint, and signed errors along a direction.

Part of :mod:`samplerlab.experiments.metrics` (see its docstring for the interfaces).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence
import torch
from samplerlab.theory.validation import check_finite, check_in_range

__all__ = ['DefectSummary', 'defect', 'signed_error']


@dataclasses.dataclass(frozen=True, eq=False)
class DefectSummary:
    """Per-sample distances ``||x_i - x_ref_i||_2`` and their summary statistics (floats).

    ``quantiles`` maps each requested level to its value (linear interpolation between order
    statistics, as ``torch.quantile``); ``rms`` is ``sqrt(mean d_i^2)``.
    """

    per_sample: torch.Tensor
    mean: float
    median: float
    quantiles: dict
    max: float
    rms: float
    relative: bool = False

    def __str__(self) -> str:
        qs = ", ".join(f"q{100 * k:g}={v:.3e}" for k, v in sorted(self.quantiles.items()))
        kind = "relative defect" if self.relative else "defect"
        return (f"{kind} over {self.per_sample.numel()} samples: mean={self.mean:.3e} "
                f"median={self.median:.3e} {qs} max={self.max:.3e}")


def _check_pair(x, x_ref, name_x="x", name_ref="x_ref"):
    for v, nm in ((x, name_x), (x_ref, name_ref)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{nm} must be a torch.Tensor, got {type(v).__name__}")
        if not v.is_floating_point():
            raise TypeError(f"{nm} must be a floating-point tensor, got dtype {v.dtype}")
    if x.shape != x_ref.shape:
        raise ValueError(f"{name_x} and {name_ref} must have the same shape, got "
                         f"{tuple(x.shape)} and {tuple(x_ref.shape)}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{name_x} must have a batch dimension with >= 1 sample, got shape "
                         f"{tuple(x.shape)}")
    if x.dtype != x_ref.dtype or x.device != x_ref.device:
        raise TypeError(f"{name_x} ({x.dtype}, {x.device}) and {name_ref} ({x_ref.dtype}, "
                        f"{x_ref.device}) must share dtype and device")
    check_finite(x, name_x)
    check_finite(x_ref, name_ref)


def _quantile_sorted(s: torch.Tensor, q: float) -> float:
    pos = q * (s.numel() - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, s.numel() - 1)
    frac = pos - lo
    return float(s[lo] + frac * (s[hi] - s[lo]))


def defect(x: torch.Tensor, x_ref: torch.Tensor, *,
           quantiles: Sequence[float] = (0.1, 0.25, 0.75, 0.9),
           relative: bool = False) -> DefectSummary:
    """Numerical defect ``d_i = ||x_i - x_ref_i||_2`` over all non-batch dimensions.

    ``x`` and ``x_ref``: tensors of the same shape ``[n, ...]`` (dim 0 is the batch), same
    dtype/device, finite. With ``relative=True`` the distances are divided by ``||x_ref_i||_2``
    (which must then be > 0). Returns a :class:`DefectSummary` (``per_sample`` stays on the
    input's device).
    """
    _check_pair(x, x_ref)
    qs = tuple(check_in_range(q, "quantiles", 0.0, 1.0) for q in quantiles)
    diff = (x - x_ref).reshape(x.shape[0], -1)
    d = torch.linalg.vector_norm(diff, dim=1)
    if relative:
        scale = torch.linalg.vector_norm(x_ref.reshape(x.shape[0], -1), dim=1)
        if (scale == 0).any():
            raise ValueError("x_ref has a sample of norm 0; relative defect is undefined there")
        d = d / scale
    s = torch.sort(d).values
    return DefectSummary(per_sample=d, mean=float(d.mean()), median=_quantile_sorted(s, 0.5),
                         quantiles={q: _quantile_sorted(s, q) for q in qs}, max=float(s[-1]),
                         rms=float(torch.sqrt(torch.mean(d * d))), relative=bool(relative))


def signed_error(x: torch.Tensor, x_ref: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Signed error along a unit direction: ``e_i = <x_i - x_ref_i, u_i>``, ``u_i = v_i/||v_i||``.

    ``direction`` has the shape of ``x`` (one direction per sample) or of one sample
    ``x.shape[1:]`` (a common direction). Projecting two samplers' errors (e.g. DDIM and a
    forward-value corrector) on the same direction shows whether they cancel. Returns ``[n]``.
    """
    _check_pair(x, x_ref)
    if not isinstance(direction, torch.Tensor):
        raise TypeError(f"direction must be a torch.Tensor, got {type(direction).__name__}")
    if direction.dtype != x.dtype or direction.device != x.device:
        raise TypeError("direction must share dtype and device with x")
    if direction.shape == x.shape[1:] and direction.shape != x.shape:
        direction = direction.unsqueeze(0).expand_as(x)
    if direction.shape != x.shape:
        raise ValueError(f"direction must have shape {tuple(x.shape)} or {tuple(x.shape[1:])}, "
                         f"got {tuple(direction.shape)}")
    check_finite(direction, "direction")
    v = direction.reshape(x.shape[0], -1)
    norm = torch.linalg.vector_norm(v, dim=1)
    if (norm == 0).any():
        raise ValueError("direction has a sample of norm 0; a unit direction is undefined there")
    return ((x - x_ref).reshape(x.shape[0], -1) * v).sum(dim=1) / norm
