"""experiments.learned: controlled perturbations (exact score error), the trained MLP, save/load."""
import dataclasses
import math

import pytest
import torch

from samplerlab.experiments.learned import (MLPConfig, load_mlp, perturbation_g,
                                            perturbation_score_error, perturbed_denoiser,
                                            save_mlp, score_error_profile, train_mlp_denoiser)
from samplerlab.experiments.targets import GaussianMixture


@pytest.fixture(scope="module")
def target():
    return GaussianMixture.two_mode_1d()


def test_perturbation_score_error_is_exact(target):
    eps = 0.03
    d_eps = perturbed_denoiser(target.denoiser, eps)
    x = target.sample(200, generator=torch.Generator().manual_seed(0), sigma=0.7)
    sigma = torch.tensor(0.7, dtype=torch.float64)
    score_eps = (d_eps(x, sigma) - x) / sigma ** 2          # VE score = (D - x)/sigma^2
    err = score_eps - target.score(x, sigma)
    assert torch.allclose(err, eps * perturbation_g(x, sigma) / sigma, rtol=1e-9, atol=1e-12)
    # score_error_profile measures the same quantity by Monte Carlo; eps_score is linear in eps
    prof = score_error_profile(target, d_eps, [0.7], n=4000, seed=1)[0]
    g2 = float(torch.mean(perturbation_g(target.sample(
        4000, generator=torch.Generator().manual_seed(1), sigma=0.7), sigma) ** 2))
    assert prof["score_error_ve"] == pytest.approx(eps * math.sqrt(g2) / 0.7, rel=1e-9)
    a = perturbation_score_error(target, 0.01, [0.1, 1.0, 10.0], n=1000)
    b = perturbation_score_error(target, 0.02, [0.1, 1.0, 10.0], n=1000)
    assert b["eps_score_vp"] == pytest.approx(2 * a["eps_score_vp"], rel=1e-12)
    # per-sample sigma works as well
    s = torch.full((x.shape[0],), 0.7, dtype=torch.float64)
    assert torch.allclose(d_eps(x, s), d_eps(x, sigma))


def test_training_is_deterministic_and_reduces_the_error(target, tmp_path):
    cfg = MLPConfig(dim=1, hidden=32, depth=2, iterations=150, batch=256, target="two_mode_1d")
    m1, info = train_mlp_denoiser(target, cfg)
    m2, _ = train_mlp_denoiser(target, cfg)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    prof = score_error_profile(target, m1.denoiser, [0.5, 2.0], n=2000)
    zero = score_error_profile(target, lambda x, s: torch.zeros_like(x), [0.5, 2.0], n=2000)
    assert all(p["denoiser_error"] < 0.5 * z["denoiser_error"] for p, z in zip(prof, zero))
    path = save_mlp(m1, tmp_path / "mlp.pt")
    back = load_mlp(path, cfg)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    assert torch.equal(back.denoiser(x, torch.tensor(0.3, dtype=torch.float64)),
                       m1.denoiser(x, torch.tensor(0.3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="hidden: stored 32, wanted 16"):
        load_mlp(path, dataclasses.replace(cfg, hidden=16))
    with pytest.raises(ValueError, match="target"):
        load_mlp(path, dataclasses.replace(cfg, target="ring_2d"))


def test_bad_input(target):
    with pytest.raises(ValueError, match="eps"):
        perturbed_denoiser(target.denoiser, float("nan"))
    with pytest.raises(TypeError, match="denoiser"):
        perturbed_denoiser(3, 0.1)
    with pytest.raises(ValueError, match="config.dim"):
        train_mlp_denoiser(target, MLPConfig(dim=2, iterations=1))
    with pytest.raises(ValueError, match="config.iterations"):
        train_mlp_denoiser(target, MLPConfig(iterations=0))
    with pytest.raises(FloatingPointError, match="sigma = 0.5"):
        score_error_profile(target, lambda x, s: x * float("nan"), [0.5], n=10)
