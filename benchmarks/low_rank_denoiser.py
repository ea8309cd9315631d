"""Throughput of the low-rank mixture's exact denoiser at image dimension, against a matmul roofline.

    python benchmarks/low_rank_denoiser.py [--quick] [--threads 2] [--device cpu] [--out DIR]

For d = 3072 (3x32x32) and 12288 (3x64x64), r = 16, 32, 64, K = 10, float32 and float64, it times
``denoiser(x, sigma)`` on a batch of n images at a fresh noise level per call (so the per-level
capacitance matrices are rebuilt every call, as inside an ODE solver) and reports

* ``samples_components_per_s`` = n K / time;
* ``roofline_ratio`` = time of the two dense products that carry the denoiser's flops
  (``[n, d] @ [d, K r]`` and ``[n, K r] @ [K r, d]``, the same shapes, timed the same way)
  divided by the denoiser's time (1 = as fast as its own GEMMs; the target is >= 0.5).

Writes ``low_rank_denoiser.csv`` (and prints it). Timings are medians of repeats after a warm-up;
the load average is recorded beside them (a loaded machine inflates small-kernel times).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from samplerlab.experiments.io import write_csv

from samplerlab.experiments.low_rank_mixture import image_like_mixture


def _median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def run(quick=False, device="cpu", threads=2, out=None):
    torch.set_num_threads(threads)
    shapes = [(3, 32, 32)] if quick else [(3, 32, 32), (3, 64, 64)]
    ranks = [16] if quick else [16, 32, 64]
    dtypes = [torch.float64] if quick else [torch.float64, torch.float32]
    n, k, repeats = (16, 10, 3) if quick else (256, 10, 7)
    rows = []
    for shape in shapes:
        for r in ranks:
            base = image_like_mixture(shape, k, r, seed=0)
            d = base.dim
            for dtype in dtypes:
                t = base.to(device=device, dtype=dtype)
                x = t.sample(n, generator=0, sigma=1.0)
                levels = iter(1.0 + 1e-6 * i for i in range(10**6))
                den = _median_time(lambda: t.denoiser(x, next(levels)), repeats)
                a = torch.randn(n, d, dtype=dtype, device=device)
                w = torch.randn(d, k * r, dtype=dtype, device=device)
                c = torch.randn(n, k * r, dtype=dtype, device=device)

                def gemms():
                    a @ w
                    c @ w.T

                roof = _median_time(gemms, repeats)
                rows.append(dict(event_shape="x".join(map(str, shape)), d=d, rank=r, K=k, n=n,
                                 dtype=str(dtype).replace("torch.", ""), device=device,
                                 denoiser_ms=round(1e3 * den, 3), gemm_ms=round(1e3 * roof, 3),
                                 samples_components_per_s=round(n * k / den),
                                 roofline_ratio=round(roof / den, 3),
                                 load_average=round(os.getloadavg()[0], 2)))
                print(rows[-1], flush=True)
    if out is not None:
        write_csv(Path(out) / "low_rank_denoiser.csv", rows)   # atomic (experiments.io)
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    run(a.quick, a.device, a.threads, a.out)
