"""Input validation shared by every module of samplerlab (theory/ is the lowest layer, so it lives here).

Every public routine validates its arguments with these helpers so that bad input always raises
a ``ValueError`` or ``TypeError`` that names the argument and the expected form, instead of
producing a silent wrong number or a NaN further down.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = [
    "check_finite",
    "check_sigmas",
    "check_positive_int",
    "check_in_range",
    "check_same_device_dtype",
    "as_sigma_tensor",
    "check_noise_level",
    "as_float64_vector",
    "check_tensor_like",
]


def check_finite(value, name: str):
    """Raise ``ValueError`` if ``value`` (tensor, array or number) holds NaN or inf."""
    if isinstance(value, torch.Tensor):
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    elif isinstance(value, np.ndarray):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    elif isinstance(value, numbers.Number):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum``; reject bools, floats and smaller ints."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_in_range(value, name: str, low=None, high=None, *, low_open=False, high_open=False):
    """Return ``float(value)`` after checking ``low <= value <= high`` (open ends on request)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    lo_bad = low is not None and (v <= low if low_open else v < low)
    hi_bad = high is not None and (v >= high if high_open else v > high)
    if lo_bad or hi_bad:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must lie in {lb}{lo}, {hi}{hb}, got {value!r}")
    return v


def check_sigmas(sigmas, name: str = "sigmas", *, min_len: int = 2, allow_final_zero: bool = True):
    """Validate a noise-level grid and return it as a tensor.

    A grid is a 1-D strictly decreasing tensor of M+1 >= ``min_len`` finite noise levels, all
    positive except that the last one may be 0 (when ``allow_final_zero``). Numpy arrays and
    lists are accepted and converted to float64 tensors.
    """
    if isinstance(sigmas, (list, tuple, np.ndarray)):
        sigmas = torch.as_tensor(np.asarray(sigmas, dtype=np.float64))
    if not isinstance(sigmas, torch.Tensor):
        raise TypeError(f"{name} must be a 1-D tensor of noise levels, got {type(sigmas).__name__}")
    if not sigmas.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {sigmas.dtype}")
    if sigmas.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(sigmas.shape)}")
    if sigmas.numel() < min_len:
        raise ValueError(f"{name} must hold at least {min_len} noise levels, got {sigmas.numel()}")
    check_finite(sigmas, name)
    if (sigmas < 0).any():
        raise ValueError(f"{name} must be non-negative (noise levels), got min {sigmas.min().item()}")
    if not (sigmas[1:] < sigmas[:-1]).all():
        raise ValueError(f"{name} must be strictly decreasing")
    if (sigmas[:-1] <= 0).any() or (not allow_final_zero and sigmas[-1] <= 0):
        where = "every level" if not allow_final_zero else "every level but the last"
        raise ValueError(f"{name}: {where} must be > 0")
    return sigmas


def as_sigma_tensor(sigma, like: torch.Tensor, name: str = "sigma") -> torch.Tensor:
    """Return ``sigma`` as a tensor on ``like``'s device and dtype (0-d or [batch]), validated."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if s.ndim > 1 or (s.ndim == 1 and s.shape[0] not in (1, like.shape[0])):
        raise ValueError(
            f"{name} must be a scalar or have shape [batch] = [{like.shape[0]}], got {tuple(s.shape)}")
    check_finite(s, name)
    if (s < 0).any():
        raise ValueError(f"{name} must be >= 0")
    return s


def check_same_device_dtype(x: torch.Tensor, other: torch.Tensor, x_name: str = "x",
                            other_name: str = "sigmas"):
    """Raise ``TypeError`` if the two tensors differ in dtype or device."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{x_name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != other.dtype:
        raise TypeError(f"{x_name} has dtype {x.dtype} but {other_name} has dtype {other.dtype}; "
                        f"convert one of them")
    if x.device != other.device:
        raise TypeError(f"{x_name} is on {x.device} but {other_name} is on {other.device}")


def check_noise_level(value, name: str = "sigma") -> float:
    """A single noise level (a real number or a one-element tensor) as a float >= 0."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single noise level, got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite noise level >= 0, got {value!r}")
    return value


def as_float64_vector(value, name: str, what: str = "numbers") -> np.ndarray:
    """``value`` (tensor, array or sequence) as a non-empty, finite 1-D float64 numpy array;
    ``TypeError``/``ValueError`` naming ``name`` (``what`` says what its entries are)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D sequence of {what}") from None
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def check_tensor_like(value, like: torch.Tensor, what: str, where: str = "", hint: str = ""):
    """``value`` if it is a tensor with ``like``'s shape, dtype and device; otherwise
    ``TypeError`` (not a tensor; other dtype/device) or ``ValueError`` (other shape) naming
    ``what`` returned it, and ``where`` (appended in parentheses) and ``hint`` when given.
    Used for every callable whose output must look like x (a user's sampler function, a model
    under verification)."""
    at = f" ({where})" if where else ""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} returned {type(value).__name__}, expected a torch.Tensor like "
                        f"x{at}")
    if value.shape != like.shape:
        raise ValueError(f"{what} returned shape {tuple(value.shape)}, expected x's shape "
                         f"{tuple(like.shape)}{at}")
    if value.dtype != like.dtype or value.device != like.device:
        raise TypeError(f"{what} returned {value.dtype} on {value.device}; its dtype "
                        f"{value.dtype} and device must be x's: {like.dtype} on "
                        f"{like.device}{at}{hint}")
    return value
