"""2-D exact-density TV (experiments.metrics.density_2d) against closed forms, the 1-D method on a product
map, and the push-forward Monte-Carlo estimator."""
import pytest
import torch

from samplerlab.experiments.metrics import tv_density_2d_deterministic
from samplerlab.experiments.metrics import (tv_density_1d_deterministic, tv_gaussian_same_cov,
                                            tv_pushforward)
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import grids, sample

F64 = torch.float64


def test_shift_of_a_gaussian_matches_the_closed_form():
    std = GaussianMixture.single_gaussian(torch.zeros(2), torch.ones(2))
    c = torch.tensor([0.3, -0.2], dtype=F64)
    r = tv_density_2d_deterministic(lambda z: z + c, std.log_prob, std.log_prob,
                                    ((-9, 9), (-9, 9)), panels=64)
    exact = tv_gaussian_same_cov(c, torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    assert abs(r.value - exact) <= r.error_estimate < 1e-5
    assert r.mass_error < 1e-12


def test_product_map_equals_the_1d_method():
    """T(x) = (euler sampler on a 1-D mixture, identity): the 2-D TV is the 1-D TV."""
    t1 = GaussianMixture.two_mode_1d()
    s0, s1 = 1.0, 0.3
    sig = grids.karras(6, sigma_min=s1, sigma_max=s0)
    base1, tgt1 = t1.marginal(s0), t1.marginal(s1)
    unit = GaussianMixture.single_gaussian(torch.zeros(1), torch.ones(1))

    def map2(z):
        return torch.cat([sample("euler", t1.denoiser, z[:, :1], sig), z[:, 1:]], dim=1)

    def lp(first):
        return lambda y: first.log_prob(y[:, :1]) + unit.log_prob(y[:, 1:])

    r2 = tv_density_2d_deterministic(map2, lp(base1), lp(tgt1), ((-8, 8), (-7, 7)), panels=96)
    r1 = tv_density_1d_deterministic(lambda z: sample("euler", t1.denoiser, z, sig),
                                     base1.log_prob, tgt1.log_prob,
                                     torch.linspace(-8, 8, 2001, dtype=F64))
    assert abs(r2.value - r1.value) <= max(r2.error_estimate, 1e-6), (r2, r1)
    assert r2.error_estimate < 1e-3


def test_agrees_with_pushforward_on_the_ring():
    ring = GaussianMixture.ring_2d()
    sig = grids.karras(8, sigma_min=0.05, sigma_max=3.0)
    base, tgt = ring.marginal(3.0), ring.marginal(0.05)

    def f(z):
        return sample("euler", ring.denoiser, z, sig)

    r = tv_density_2d_deterministic(f, base.log_prob, tgt.log_prob, ((-16, 16), (-16, 16)),
                                    panels=64, mass_tol=1e-3)
    mc = tv_pushforward(f, base.sample(4000, generator=0), base.log_prob, tgt.log_prob)
    assert abs(r.value - mc.value) <= 3 * mc.stderr + r.error_estimate, (r, mc)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(box=((1, 0), (0, 1))), ValueError, "box"),
    (dict(box=3), TypeError, "box"),
    (dict(panels=3), ValueError, "panels must be even"),
    (dict(mass_tol=-1.0), ValueError, "mass_tol"),
])
def test_bad_input(kwargs, err, match):
    std = GaussianMixture.single_gaussian(torch.zeros(2), torch.ones(2))
    args = dict(box=((-8, 8), (-8, 8)), panels=8)
    args.update(kwargs)
    box = args.pop("box")
    with pytest.raises(err, match=match):
        tv_density_2d_deterministic(lambda z: z, std.log_prob, std.log_prob, box, **args)


def test_uncovered_mass_raises():
    std = GaussianMixture.single_gaussian(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="widen the box"):
        tv_density_2d_deterministic(lambda z: z, std.log_prob, std.log_prob, ((-2, 2), (-2, 2)),
                                    panels=8)
