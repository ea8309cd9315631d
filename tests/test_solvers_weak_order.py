"""Weak order of the stochastic samplers, measured exactly on a Gaussian target.

For a single Gaussian N(mu, v) the denoiser is affine, so every step of a single-step stochastic
sampler (built by the registry from theory/'s coefficients: pre-noise, affine stages, post-noise)
maps a Gaussian law to a Gaussian law. Its affine map is read off the sampler's own step
(``steppers._linear_step`` applied to two states), so the output mean and variance follow exactly
— no Monte-Carlo noise — and the weak error |Var_M - (v + sigma_end^2)| is measured against the
exact marginal. A Monte-Carlo run through ``sample()`` checks that the loop realises that law.
"""
import math

import numpy as np
import pytest
import torch

from samplerlab.experiments.order import estimate_order
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import SOLVERS, grids, sample
from samplerlab.solvers import steppers

MU, VAR = 0.7, 0.3
SIGMA_MIN, SIGMA_MAX = 0.05, 2.0
STEPS = [32, 64, 128, 256, 512]


@pytest.fixture(scope="module")
def target():
    return GaussianMixture.single_gaussian(torch.tensor([MU]), torch.tensor([[VAR]]))


def grid(m):
    return grids.lambda_uniform(m, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)


def exact_output_law(name, options, target, m):
    """Mean and variance of the sampler's output law started from the exact marginal."""
    sig = grid(m)
    coeffs = SOLVERS[name].build(sig.numpy(), SOLVERS[name].options(**options))
    lists = steppers._step_lists(coeffs)
    stage_sigma = torch.as_tensor(coeffs.stage_sigma, dtype=torch.float64)
    mean, var = MU, VAR + SIGMA_MAX ** 2
    probe = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    for n in range(m):
        out, _ = steppers._linear_step(target.denoiser, probe, lists, n, stage_sigma)
        c, a = float(out[0]), float(out[1] - out[0])
        pre, post = coeffs.pre_noise[n], coeffs.post_noise[n]
        mean = a * mean + c
        var = a * a * (var + pre ** 2) + post ** 2
    return mean, var


STOCHASTIC = [("ddpm", {}), ("res_sde", {"mode": "ancestral"}),
              ("res_sde", {"mode": "churn", "s_churn": 2.0}), ("li_ddpm", {}), ("li_accel_sde", {})]


def test_every_stochastic_sampler_is_measured():
    assert {n for n, _ in STOCHASTIC} == {n for n, s in SOLVERS.items() if s.stochastic}


@pytest.mark.parametrize("name, options", STOCHASTIC, ids=[f"{n}{o}" for n, o in STOCHASTIC])
def test_weak_order_of_the_variance(name, options, target):
    errors = []
    for m in STEPS:
        mean, var = exact_output_law(name, options, target, m)
        errors.append(abs(var - (VAR + SIGMA_MIN ** 2)) + abs(mean - MU))
    est = estimate_order(STEPS, errors)
    declared = SOLVERS[name].order_for(**options)
    if name == "res_sde":
        # RES-2S inside an ancestral or churn split: the registry declares weak order 1 (the
        # splitting's general guarantee); on this Gaussian (linear) problem the second-order
        # deterministic part shows through and the measured order is 2 (1.99-2.00). Whether
        # that holds beyond linear problems is not established here, so only the guarantee is
        # asserted.
        assert est.order >= declared - 0.2, f"{name} {options}: weak order {est}"
    else:
        assert abs(est.order - declared) <= 0.2, f"{name} {options}: weak order {est}"


@pytest.mark.parametrize("name, options", STOCHASTIC, ids=[f"{n}{o}" for n, o in STOCHASTIC])
def test_sampling_loop_realises_the_predicted_law(name, options, target):
    m, n = 16, 40000
    mean, var = exact_output_law(name, options, target, m)
    x = target.sample(n, generator=torch.Generator().manual_seed(5), sigma=SIGMA_MAX)
    out = sample(name, target.denoiser, x, grid(m), generator=7, **options)
    se_mean = math.sqrt(var / n)
    se_var = var * math.sqrt(2.0 / (n - 1))
    assert abs(float(out.mean()) - mean) < 5 * se_mean
    assert abs(float(out.var()) - var) < 5 * se_var
