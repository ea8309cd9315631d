"""Measured global convergence orders of every deterministic sampler against the exact solution.

Target: the 1-D two-mode mixture; grid: uniform in lambda on [0.05, 20] (the order of a method
does not depend on the grid family as long as the steps shrink uniformly); defect: median over 32
exact starting samples of |x_M - x_ref| with x_ref from DOP853 at rtol 1e-13. The slope is the
least-squares fit of experiments.order.estimate_order (pre-asymptotic points and the round-off
floor dropped) and must lie within 0.2 of the order the registry declares for the options used.
"""
import pytest
import torch

from samplerlab.experiments.convergence import defect_sweep, fit_order, starting_points
from samplerlab.experiments.order import estimate_order
from samplerlab.experiments.reference import solve_pf_ode
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import SOLVERS, grids, sample

SIGMA_MIN, SIGMA_MAX = 0.05, 2.0
STEPS = [32, 64, 128, 256, 512]


def grid(m):
    return grids.lambda_uniform(m, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)


@pytest.fixture(scope="module")
def problem():
    target = GaussianMixture.two_mode_1d()
    x = starting_points(target, 32, SIGMA_MAX, seed=0)
    return target, x, solve_pf_ode(target, x, SIGMA_MAX, SIGMA_MIN)


# (label, sampler, options). Multistep samplers of nominal order k >= 3 are measured both with
# their default lower-order warm-up (declared 2) and with the order-preserving one (declared k).
CASES = [
    ("euler", "euler", {}), ("heun", "heun", {}), ("dpm_solver_2", "dpm_solver_2", {}),
    ("dpm_solver_3", "dpm_solver_3", {}), ("dpmpp_2s", "dpmpp_2s", {}),
    ("res_2s", "res_2s", {}), ("res_2s c2=1", "res_2s", {"c2": 1.0}), ("res_3s", "res_3s", {}),
    ("dpmpp_2m", "dpmpp_2m", {}), ("dpmpp_3m", "dpmpp_3m", {}), ("res_2m", "res_2m", {}),
    ("res_3m", "res_3m", {"warmup": "single_step"}), ("res_3m default", "res_3m", {}),
    ("deis k=2", "deis", {"order": 2}), ("deis", "deis", {"warmup": "single_step"}),
    ("deis default", "deis", {}), ("lms default", "lms", {}),
    ("ipndm", "ipndm", {}),
    ("ipndm variable", "ipndm", {"variable_step": True, "warmup": "single_step"}),
    ("lms", "lms", {"warmup": "single_step"}), ("lms k=2", "lms", {"order": 2}),
    ("unipc", "unipc", {}), ("unipc p=2 full", "unipc", {"lower_order_final": False}),
    ("unipc p=3 full", "unipc", {"order": 3, "lower_order_final": False}),
    ("unipc p=3", "unipc", {"order": 3}),
    ("unipc bh2", "unipc", {"variant": "bh2", "lower_order_final": False}),
    ("f_ddim", "f_ddim", {}), ("f_dpmsolver", "f_dpmsolver", {}), ("fv_ideal", "fv_ideal", {}),
    ("li_ddim", "li_ddim", {}), ("li_accel_ode", "li_accel_ode", {}),
    ("li_accel_ode_1nfe", "li_accel_ode_1nfe", {}),
    ("lagrange K=1", "lagrange", {"K": 1}), ("lagrange K=2", "lagrange", {"K": 2}),
    ("lagrange K=3", "lagrange", {"K": 3}), ("lagrange K=4", "lagrange", {"K": 4}),
    # seed 004 with the fixed predictor (r = 1/2, c = 1): the base methods' orders
    ("amed", "amed", {}), ("amed_plugin", "amed_plugin", {}),
    ("amed_plugin euler", "amed_plugin", {"base": "euler"}),
    ("amed_plugin ipndm", "amed_plugin", {"base": "ipndm"}),
    ("amed_plugin dpmpp_2m", "amed_plugin", {"base": "dpmpp_2m"}),
]


def test_every_deterministic_sampler_has_a_case():
    covered = {name for _, name, _ in CASES}
    assert covered == {n for n, s in SOLVERS.items() if not s.stochastic}


@pytest.mark.parametrize("label, name, options", CASES, ids=[c[0] for c in CASES])
def test_measured_order_matches_declared(problem, label, name, options):
    target, x, ref = problem
    declared = SOLVERS[name].order_for(**options)
    rows = defect_sweep(target, [(label, name, options)], STEPS, grid, n=len(x), x_start=x,
                        x_ref=ref)
    est = fit_order(rows, label)
    assert abs(est.order - declared) <= 0.2, f"{label}: measured {est}, declared {declared}"


@pytest.mark.parametrize("name, options", [("res_3m", {}), ("deis", {}), ("lms", {}),
                                           ("unipc", {})])
def test_default_warmup_and_final_step_errors_are_second_order(problem, name, options):
    """The registry declares order 2 for these defaults: the gap to the order-preserving variant
    is a fixed number of low-order steps whose error must shrink like M^-2."""
    target, x, ref = problem
    full = {"unipc": {"lower_order_final": False}}.get(name, {"warmup": "single_step"})
    assert SOLVERS[name].order_for(**options) == 2
    gaps = []
    for m in STEPS:
        sig = grid(m)
        a = sample(name, target.denoiser, x, sig, **options)
        b = sample(name, target.denoiser, x, sig, **full)
        gaps.append(float((a - b).abs().median()))
    est = estimate_order(STEPS, gaps)
    assert abs(est.order - 2) <= 0.2, f"{name}: gap slope {est}"


def test_forward_value_sign_cancellation(problem):
    """Seed 000: e_DDIM and e_FV have opposite signs and their sum is O(M^-2); F-DDIM stays
    within O(M^-2) of the ideal forward value."""
    target, x, ref = problem
    sums, gaps = [], []
    for m in STEPS[:4]:
        sig = grid(m)
        e_b = sample("euler", target.denoiser, x, sig) - ref
        e_f = sample("fv_ideal", target.denoiser, x, sig) - ref
        f = sample("f_ddim", target.denoiser, x, sig)
        opposite = ((e_b * e_f) < 0).double().mean()
        assert opposite > 0.99, f"M={m}: only {float(opposite):.3f} of samples have opposite signs"
        sums.append(float((e_b + e_f).abs().median()))
        gaps.append(float((f - ref - e_f).abs().median()))
    assert abs(estimate_order(STEPS[:4], sums).order - 2) <= 0.25
    assert abs(estimate_order(STEPS[:4], gaps).order - 2) <= 0.25


def test_accelerated_ode_beats_ddim_type_on_a_log_snr_grid(problem):
    """Seed 002 at the level of one sampler: li_accel_ode ~ 2 vs li_ddim ~ 1 (log-SNR grid)."""
    target, x, ref = problem
    rows = defect_sweep(target, ["li_ddim", "li_accel_ode"], STEPS, grid, n=len(x), x_start=x,
                        x_ref=ref)
    slow, fast = fit_order(rows, "li_ddim"), fit_order(rows, "li_accel_ode")
    assert abs(slow.order - 1) <= 0.2 and abs(fast.order - 2) <= 0.2, (slow, fast)
