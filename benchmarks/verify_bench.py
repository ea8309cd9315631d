"""Benchmarks of issue 12 (run by hand, never as a timed test):

1. self-reference (DOP853, experiments.verify.self_reference) of 256 trajectories of a d = 2
   model (the ring mixture's denoiser as an opaque callable), target <= 2 s;
2. self-reference of 64 images [3, 32, 32] from a small random diffusers UNet2DModel through
   denoiser_from_diffusers (Richardson extrapolation of res_3s: a discrete-time diffusers model
   is only piecewise smooth in sigma, which makes an adaptive DOP853 solve impractically slow),
   target <= 60 s;
3. training the MLP denoiser of experiments.learned (default MLPConfig) on the 1-D two-mode
   mixture, with its score error per level, target <= 60 s.

    python benchmarks/verify_bench.py [--threads 2] [--out benchmarks/results]

Writes ``verify.csv`` (one row per item: seconds, NFE, the accuracy reached) into ``--out``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from samplerlab.experiments.io import write_csv
from samplerlab.experiments.learned import MLPConfig, score_error_profile, train_mlp_denoiser
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.experiments.verify import self_reference
from samplerlab.solvers import NFECounter


def bench_mixture():
    target = GaussianMixture.ring_2d()
    x = target.sample(256, generator=torch.Generator().manual_seed(0), sigma=80.0)
    den = lambda z, s: target.denoiser(z, s)  # noqa: E731
    self_reference(den, x, 80.0, 0.002)           # warm-up
    start = time.perf_counter()
    ref = self_reference(den, x, 80.0, 0.002)
    return {"item": "self-reference, 256 x d=2 mixture, DOP853 rtol 1e-10 (+1e-8)",
            "seconds": time.perf_counter() - start, "nfe": ref.nfe,
            "accuracy": f"error estimate median {ref.error_median:.2e}, max {ref.error_max:.2e}",
            "target_seconds": 2.0}


def bench_unet(n=64, steps=8):
    from diffusers import DDPMScheduler, UNet2DModel

    from samplerlab.solvers.diffusers_interop import denoiser_from_diffusers
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                       layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    den = denoiser_from_diffusers(unet, DDPMScheduler(num_train_timesteps=1000),
                                  model_dtype=torch.float32)
    x = 10.0 * torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)
    den = NFECounter(den)
    start = time.perf_counter()
    ref = self_reference(den, x, 10.0, 0.05, method="richardson", steps=steps,
                         tolerance=1e6)   # report the estimate, do not require one
    return {"item": f"self-reference, {n} images [3, 32, 32], small UNet (float32 model, float64 "
                    f"state), Richardson res_3s M = {steps}/{2 * steps}/{4 * steps}",
            "seconds": time.perf_counter() - start, "nfe": ref.nfe,
            "model_seconds": den.seconds,
            "accuracy": f"error estimate median {ref.error_median:.2e} (relative "
                        f"{ref.error_median / float(ref.x[0].norm()):.1e}), observed order "
                        f"{ref.observed_order:.2f}", "target_seconds": 60.0}


def bench_mlp():
    target = GaussianMixture.two_mode_1d()
    start = time.perf_counter()
    model, info = train_mlp_denoiser(target, MLPConfig(target="two_mode_1d"))
    seconds = time.perf_counter() - start
    prof = score_error_profile(target, model.denoiser, [0.01, 0.1, 1.0, 10.0], n=4000)
    text = ", ".join(f"sigma {r['sigma']:g}: D error {r['denoiser_error']:.2e}, VP score error "
                     f"{r['score_error_vp']:.2e}" for r in prof)
    return {"item": "MLP training (MLPConfig(): 1500 iterations, batch 512, 3 x 64 SiLU, float64)",
            "seconds": seconds, "nfe": None, "accuracy": text, "target_seconds": 60.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for fn in (bench_mixture, bench_unet, bench_mlp):
        row = fn()
        row["threads"] = args.threads
        row["load_average"] = os.getloadavg()[0]
        print(f"{row['seconds']:8.2f} s (target {row['target_seconds']:g})  {row['item']}\n"
              f"           {row['accuracy']}")
        rows.append(row)
    columns = ["item", "seconds", "model_seconds", "nfe", "accuracy", "target_seconds", "threads",
               "load_average"]
    write_csv(Path(args.out) / "verify.csv", rows, columns)


if __name__ == "__main__":
    main()
