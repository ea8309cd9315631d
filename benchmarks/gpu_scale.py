"""Large-batch runs on one device: 1e6 samples at d = 64 and 1e4 images at 3x64x64, float32/64.

    python benchmarks/gpu_scale.py --device cuda [--out DIR] [--quick]

For each case it builds the seeded target on the device, draws the batch at sigma_max = 80 and
runs ``res_2s`` and ``dpmpp_2m`` on a 10-step Karras grid, in chunks that fit in memory, timing
each (synchronised) and checking that every output is finite and keeps x's dtype. It writes
``gpu_scale.csv`` (case, dtype, sampler, samples, seconds, samples_per_s, peak memory). On the
CPU, ``--quick`` runs the same code at 1/1000 of the sizes (what CI can afford).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from samplerlab.experiments.io import write_csv

from samplerlab.experiments.low_rank_mixture import image_like_mixture
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import grids, sample


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device="cuda", out=None, quick=False):
    device = torch.device(device)
    scale = 1000 if quick else 1
    cases = [("mixture_d64", lambda dt: GaussianMixture.random_anisotropic(64, 8, seed=0, dtype=dt,
                                                                          device=device),
              1_000_000 // scale, 100_000 // scale),
             ("images_3x64x64", lambda dt: image_like_mixture((3, 64, 64), 10, 16, 0, dtype=dt,
                                                              device=device),
              10_000 // scale, 500 // max(scale // 100, 1))]
    rows = []
    for case, make, total, chunk in cases:
        for dtype in (torch.float32, torch.float64):
            target = make(dtype)
            sig = grids.karras(10, 0.002, 80.0, dtype=dtype, device=device)
            for name in ("res_2s", "dpmpp_2m"):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                _sync(device)
                tic = time.perf_counter()
                done = 0
                while done < total:
                    n = min(chunk, total - done)
                    x = target.sample(n, generator=torch.Generator(device=device).manual_seed(done),
                                      sigma=80.0)
                    y = sample(name, target.denoiser, x, sig)
                    if y.dtype != dtype or not torch.isfinite(y).all():
                        raise FloatingPointError(f"{case}/{name}/{dtype}: non-finite or wrong dtype")
                    done += n
                _sync(device)
                sec = time.perf_counter() - tic
                peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
                rows.append({"case": case, "dtype": str(dtype).replace("torch.", ""),
                             "sampler": name, "samples": total, "chunk": chunk,
                             "seconds": round(sec, 3), "samples_per_s": round(total / sec),
                             "peak_gib": None if peak is None else round(peak, 2),
                             "device": str(device)})
                print(rows[-1], flush=True)
    if out is not None:
        write_csv(Path(out) / "gpu_scale.csv", rows)   # atomic (experiments.io)
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    run(a.device, a.out, a.quick)
