"""The fixed runs behind tests/data/builtin_outputs.json: every built-in sampler (and a few
option variants) on the 2-D ring mixture, float64, one fixed grid and seed. The JSON holds the
outputs as float.hex strings, recorded before the registry refactor of issue 11, so a test can
check the refactored registry reproduces them bitwise.

Regenerate (only when a numerical change is intended and explained in the commit):
    python tests/_builtin_outputs.py
"""
import json
from pathlib import Path

import torch

from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import SOLVERS, grids

PATH = Path(__file__).with_name("data") / "builtin_outputs.json"

#: (label, sampler name, options); every registered name at defaults plus option variants
VARIANTS = [
    ("dpmpp_2m/single_step", "dpmpp_2m", {"warmup": "single_step"}),
    ("res_3m/single_step", "res_3m", {"warmup": "single_step"}),
    ("deis/order2", "deis", {"order": 2}),
    ("lms/order5", "lms", {"order": 5}),
    ("res_2s/c2=0.3", "res_2s", {"c2": 0.3}),
    ("res_sde/churn", "res_sde", {"mode": "churn", "s_churn": 2.0}),
    ("ddpm/eta=0.5", "ddpm", {"eta": 0.5}),
    ("unipc/order3", "unipc", {"order": 3, "lower_order_final": False}),
    ("lagrange/K3", "lagrange", {"K": 3}),
    ("amed_plugin/ipndm", "amed_plugin", {"base": "ipndm"}),
    ("amed/r=0.4", "amed", {"r": 0.4}),
]


def cases():
    out = [(name, name, {}) for name in sorted(SOLVERS)]
    return out + VARIANTS


def run_case(name, opts, final_zero):
    target = GaussianMixture.ring_2d()
    sig = grids.karras(6, sigma_min=0.05, sigma_max=20.0)
    if final_zero:
        sig = torch.cat([sig, sig.new_zeros(1)])
    x = target.sample(5, generator=torch.Generator().manual_seed(3), sigma=20.0)
    return SOLVERS[name](target.denoiser, x, sig, generator=7, **opts)


def record():
    data = {"__platform__": f"torch {torch.__version__}, cpu "
                            f"{torch.backends.cpu.get_cpu_capability()}"}
    for label, name, opts in cases():
        for final_zero in (False, True):
            out = run_case(name, opts, final_zero)
            data[f"{label}|zero={final_zero}"] = [float(v).hex() for v in out.reshape(-1).tolist()]
    return data


if __name__ == "__main__":
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text(json.dumps(record(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {PATH}")
