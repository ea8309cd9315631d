"""Equivalences between samplers, checked against formulas written independently here."""
import math

import pytest
import torch

from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import grids, sample
from samplerlab.theory.phi_functions import phi

TOL = 1e-12


@pytest.fixture(scope="module")
def setup():
    target = GaussianMixture.ring_2d()
    sigmas = grids.karras(12, sigma_min=0.01, sigma_max=20.0)
    x = target.sample(64, generator=torch.Generator().manual_seed(0), sigma=20.0)
    return target, sigmas, x


def _rel(a, b):
    return float((a - b).abs().max() / (1.0 + b.abs().max()))


def test_euler_is_ddim_and_dpm_solver_1(setup):
    target, sigmas, x = setup
    out = sample("euler", target.denoiser, x, sigmas)
    # DDIM (Song et al. 2021, eta = 0) in VP variables: x_vp = alpha x_ve,
    # x_{t-1} = sqrt(abar_{t-1}) x0 + sqrt(1 - abar_{t-1}) eps_hat.
    y = x / torch.sqrt(1 + sigmas[0] ** 2)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        abar, abar_next = 1 / (1 + s ** 2), 1 / (1 + s_next ** 2)
        x0 = target.denoiser(y / torch.sqrt(abar), s)
        eps = (y - torch.sqrt(abar) * x0) / torch.sqrt(1 - abar)
        y = torch.sqrt(abar_next) * x0 + torch.sqrt(1 - abar_next) * eps
    ddim = y * torch.sqrt(1 + sigmas[-1] ** 2)
    # DPM-Solver-1 (Lu et al. 2022), noise form in VE: x' = x - sigma' (e^h - 1) eps.
    z = x
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        h = torch.log(s / s_next)
        z = z - s_next * torch.expm1(h) * (z - target.denoiser(z, s)) / s
    assert _rel(out, ddim) < TOL
    assert _rel(out, z) < TOL


def test_ddpm_with_eta_zero_is_the_deterministic_sampler(setup):
    target, sigmas, x = setup
    a = sample("ddpm", target.denoiser, x, sigmas, eta=0.0, generator=0)
    b = sample("euler", target.denoiser, x, sigmas)
    assert _rel(a, b) < TOL


def _linear_in_lambda(a, b):
    def denoiser(x, sigma):
        lam = -torch.log(torch.as_tensor(sigma, dtype=x.dtype))
        return torch.zeros_like(x) + a + b * lam
    return denoiser


def _exact_linear(x0, a, b, s0, s1):
    # dx/dlambda = a + b lambda - x  =>  x = a + b(lambda - 1) + C e^-lambda
    l0, l1 = -math.log(s0), -math.log(s1)
    return a + b * (l1 - 1) + (x0 - a - b * (l0 - 1)) * math.exp(-(l1 - l0))


@pytest.mark.parametrize("c2", [0.2, 0.5, 1.0])
def test_res_2s_is_exact_for_a_denoiser_linear_in_lambda(c2):
    a, b = 0.7, -1.3
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    sigmas = grids.karras(5, sigma_min=0.02, sigma_max=30.0)
    out = sample("res_2s", _linear_in_lambda(a, b), x, sigmas, c2=c2)
    exact = _exact_linear(x, a, b, float(sigmas[0]), float(sigmas[-1]))
    assert _rel(out, exact) < 1e-13


@pytest.mark.parametrize("h", [0.05, 0.5, 2.0])
def test_dpmpp_2s_errs_by_the_predicted_residual(h):
    # one step: error = b h^2 (phi_1(-h)/2 - phi_2(-h)), the violated condition sum b_i c_i = phi_2
    a, b = 0.3, 0.9
    x = torch.tensor([[0.5], [-1.0]], dtype=torch.float64)
    sigmas = torch.tensor([2.0, 2.0 * math.exp(-h)], dtype=torch.float64)
    out = sample("dpmpp_2s", _linear_in_lambda(a, b), x, sigmas)
    exact = _exact_linear(x, a, b, 2.0, 2.0 * math.exp(-h))
    predicted = b * h ** 2 * (phi(1, -h) / 2 - phi(2, -h))
    assert abs(predicted) > 1e-6
    assert torch.allclose(out - exact, torch.full_like(x, predicted), rtol=1e-10, atol=1e-14)
    res = sample("res_2s", _linear_in_lambda(a, b), x, sigmas)
    assert _rel(res, exact) < 1e-14


def test_res_2m_is_exact_for_a_denoiser_linear_in_lambda():
    a, b = -0.4, 0.8
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
    sigmas = grids.karras(7, sigma_min=0.02, sigma_max=30.0)
    den = _linear_in_lambda(a, b)
    exact = _exact_linear(x, a, b, float(sigmas[0]), float(sigmas[-1]))
    # the first step is exponential Euler (warm-up), exact only from the second step on:
    first = sample("euler", den, x, sigmas[:2])
    rest_exact = _exact_linear(first, a, b, float(sigmas[1]), float(sigmas[-1]))
    out = sample("res_2m", den, x, sigmas)
    assert _rel(out, rest_exact) < 1e-13
    assert _rel(out, exact) > 1e-6  # the warm-up step is not exact


def test_lagrange_with_k1_is_its_closed_form(setup):
    target, sigmas, x = setup
    out = sample("lagrange", target.denoiser, x, sigmas, K=1)
    # seed 001, K = 1: Y_{t-1} = (1/sqrt(alpha_t)) [Y_t + (1 - alpha_t)/(2 alpha_t) s_t(Y_t)] in VP
    # variables, alpha_t = abar_{t-1}/abar_t, s_t(Y) = (sqrt(abar_t) D - Y)/(1 - abar_t).
    y = x / torch.sqrt(1 + sigmas[0] ** 2)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        abar, abar_next = 1 / (1 + s ** 2), 1 / (1 + s_next ** 2)
        alpha = abar / abar_next
        score = (torch.sqrt(abar) * target.denoiser(y / torch.sqrt(abar), s) - y) / (1 - abar)
        y = (y + (1 - alpha) / (2 * alpha) * score) / torch.sqrt(alpha)
    closed = y * torch.sqrt(1 + sigmas[-1] ** 2)
    assert _rel(out, closed) < TOL
