"""The NFE ledger: a denoiser wrapper that counts function evaluations.

``NFECounter(denoiser)`` behaves like the denoiser it wraps and records every call, so that the
cost a sampler declares in the registry (``SOLVERS[name].nfe(sigmas)``) can be audited::

    counted = NFECounter(target.denoiser)
    sample("dpmpp_2m", counted, x, sigmas)
    assert counted.count == SOLVERS["dpmpp_2m"].nfe(sigmas)
"""
from __future__ import annotations

import time
from typing import Callable, List

import torch

__all__ = ["NFECounter"]


class NFECounter:
    """Wrap ``denoiser(x, sigma)``; count calls, log the noise levels and the time spent inside.

    Attributes
    ----------
    count : number of calls so far.
    sigmas : list of the noise levels (Python floats; the first entry of a per-sample sigma) of
        each call, in order.
    seconds : wall time spent inside the wrapped denoiser (``time.perf_counter``; synchronises
        CUDA before reading the clock when the input lives on a CUDA device).
    """

    def __init__(self, denoiser: Callable):
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.count = 0
        self.sigmas: List[float] = []
        self.seconds = 0.0

    def reset(self) -> None:
        self.count = 0
        self.sigmas = []
        self.seconds = 0.0

    def __call__(self, x: torch.Tensor, sigma):
        cuda = isinstance(x, torch.Tensor) and x.is_cuda
        if cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        out = self.denoiser(x, sigma)
        if cuda:
            torch.cuda.synchronize(x.device)
        self.seconds += time.perf_counter() - start
        self.count += 1
        s = torch.as_tensor(sigma)
        self.sigmas.append(float(s.reshape(-1)[0]) if s.numel() else float("nan"))
        return out
