"""2-D density propagation of linear-step chains (metrics.tv_chain_density_2d) against closed forms
(Gaussian data: every step affine, the output law Gaussian), the 1-D method on a product target,
and samples of the real stochastic sampler; plus its bad-input errors."""
import math

import numpy as np
import pytest
import torch

from samplerlab.experiments.metrics import (ChainStep, propagate_chain_density_2d,
                                            tv_chain_density_2d)
from samplerlab.experiments.studies.provable_acceleration import (chain_coefficients,
                                                                  chain_step_map,
                                                                  chain_steps_2d,
                                                                  propagate_chain_density_1d,
                                                                  schedule_grid)
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import SOLVERS

F64 = torch.float64


def _gauss_logpdf(pts, mean, cov):
    diff = pts - mean
    sol = np.linalg.solve(cov, diff.T).T
    return -0.5 * (diff * sol).sum(1) - math.log(2 * math.pi) - 0.5 * math.log(np.linalg.det(cov))


def _tv_two_gaussians(m1, c1, m2, c2, half_width=9.0, n=2400):
    """Reference: brute-force tensor Gauss-Legendre on a large box (independent code path;
    converged to ~5e-7 at n = 2400 nodes per axis: 600 -> 1200 -> 2400 change it by 2e-5, 1e-6,
    5e-7)."""
    sd = np.sqrt(np.maximum(np.diag(c1), np.diag(c2)))
    lo, hi = np.minimum(m1, m2) - half_width * sd, np.maximum(m1, m2) + half_width * sd
    t, w = np.polynomial.legendre.leggauss(8)
    out = []
    for a in range(2):
        edges = np.linspace(lo[a], hi[a], n // 8 + 1)
        half, mid = 0.5 * np.diff(edges), 0.5 * (edges[1:] + edges[:-1])
        out.append(((mid[:, None] + half[:, None] * t).ravel(), (half[:, None] * w).ravel()))
    (x0, w0), (x1, w1) = out
    X0, X1 = np.meshgrid(x0, x1, indexing="ij")
    pts = np.stack([X0.ravel(), X1.ravel()], 1)
    f = np.exp(_gauss_logpdf(pts, m1, c1)) - np.exp(_gauss_logpdf(pts, m2, c2))
    return 0.5 * float((np.outer(w0, w1).ravel() * np.abs(f)).sum())


def _gaussian_chain_law(target, coeffs, sig):
    """Exact law of a linear-step chain on Gaussian data: every step map is affine."""
    s0 = float(sig[0])
    cov = target.covariance_matrices()[0].numpy() + s0 ** 2 * np.eye(2)
    mean = target.means[0].numpy().copy()
    for n in range(coeffs.steps):
        cov = cov + coeffs.pre_noise[n] ** 2 * np.eye(2)
        m0, a = chain_step_map(target, coeffs, n, torch.zeros(1, 2, dtype=F64))
        a = a[0].numpy()
        mean = a @ mean + m0[0].numpy()
        cov = a @ cov @ a.T + coeffs.post_noise[n] ** 2 * np.eye(2)
    return mean, cov


@pytest.mark.parametrize("name", ["li_ddpm", "li_accel_sde"])
def test_gaussian_data_matches_the_closed_form(name):
    target = GaussianMixture([1.0], [[0.4, -0.3]], [[[0.30, 0.12], [0.12, 0.08]]])
    sig = schedule_grid("log-SNR uniform", 12)
    coeffs = chain_coefficients(name, sig)
    s0, s1 = float(sig[0]), float(sig[-1])
    box = ((-8 * s0, 8 * s0), (-8 * s0, 8 * s0))
    mean, cov = _gaussian_chain_law(target, coeffs, sig)
    errors = {}
    for n_points in (96, 160):
        # 11 coarse steps leave a law twice as wide as the marginal: boxes of +-12 sd of it
        g = propagate_chain_density_2d(target.marginal(s0).log_prob,
                                       chain_steps_2d(target, coeffs, sig, width=12.0), box,
                                       n_points=n_points)
        X0, X1 = np.meshgrid(g.x0, g.x1, indexing="ij")
        exact = np.exp(_gauss_logpdf(np.stack([X0.ravel(), X1.ravel()], 1), mean, cov))
        errors[n_points] = np.abs(g.values.ravel() - exact).max() / exact.max()
        assert abs(g.mass - 1.0) < 1e-7
    # the log-density interpolant is exact for a Gaussian: measured 1.4e-8 / 6e-9 (li_ddpm) and
    # 1.2e-9 / 1.6e-13 (li_accel_sde) at 64 / 128 nodes (round-off and the trimmed tails); a
    # spline of the values gave 4.5e-5 / 4.5e-6
    assert max(errors.values()) < 1e-7, errors
    res = tv_chain_density_2d(target.marginal(s0).log_prob,
                              chain_steps_2d(target, coeffs, sig, width=12.0),
                              target.marginal(s1).log_prob, box, n_points=128)
    end_cov = target.covariance_matrices()[0].numpy() + s1 ** 2 * np.eye(2)
    ref = _tv_two_gaussians(mean, cov, target.means[0].numpy(), end_cov)
    assert ref > 1e-3                                     # a real discretisation error
    # measured 2.8e-6 (li_ddpm) / 1.4e-6 (li_accel_sde) apart, error estimates 5.8e-6 / 8.9e-7:
    # the estimate covers the propagation, not the ~1e-6 kink error of the final quadrature
    assert abs(res.value - ref) <= res.error_estimate + 2e-6, (res, ref)


def test_product_target_agrees_with_the_1d_method():
    """two_mode_1d x two_mode_1d: the chain factorises, so the 2-D end density is the outer
    product of the 1-D propagated ones (provable_acceleration.propagate_chain_density_1d)."""
    one = GaussianMixture.two_mode_1d()
    w, mu, var = one.weights, one.means[:, 0], one.eigenvalues[:, 0]
    weights = (w[:, None] * w[None, :]).reshape(-1)
    means = torch.stack(torch.meshgrid(mu, mu, indexing="ij"), -1).reshape(-1, 2)
    covs = torch.diag_embed(torch.stack(torch.meshgrid(var, var, indexing="ij"), -1)
                            .reshape(-1, 2))
    prod = GaussianMixture(weights, means, covs)
    sig = schedule_grid("log-SNR uniform", 20)
    coeffs = chain_coefficients("li_ddpm", sig)
    s0, s1 = float(sig[0]), float(sig[-1])
    box = ((-8 * s0, 8 * s0), (-8 * s0, 8 * s0))
    res = tv_chain_density_2d(prod.marginal(s0).log_prob, chain_steps_2d(prod, coeffs, sig),
                              prod.marginal(s1).log_prob, box, n_points=128)
    # the 1-D reference: its density (spline) times itself against p1 x p1, fine tensor GL
    from scipy.interpolate import CubicSpline
    x, q = propagate_chain_density_1d(one, coeffs, sig, n_points=2048)
    qs = CubicSpline(x, q)
    t, wt = np.polynomial.legendre.leggauss(8)
    edges = np.linspace(x[0], x[-1], 257)
    half, mid = 0.5 * np.diff(edges), 0.5 * (edges[1:] + edges[:-1])
    nodes, wts = (mid[:, None] + half[:, None] * t).ravel(), (half[:, None] * wt).ravel()
    q1 = np.maximum(qs(nodes), 0.0)
    p1 = torch.exp(one.marginal(s1).log_prob(torch.as_tensor(nodes)[:, None])).numpy()
    ref = 0.5 * float((np.outer(wts, wts) * np.abs(np.outer(q1, q1) - np.outer(p1, p1))).sum())
    assert ref > 1e-2
    # measured 4.5e-7 apart (2e-6 relative), error estimate 3.2e-7 (see the Gaussian test)
    assert abs(res.value - ref) <= res.error_estimate + 2e-6, (res, ref)
    assert abs(res.value - ref) < 1e-4 * ref


def test_agrees_with_samples_of_the_real_sampler():
    """E_{y ~ sampler}[(1 - p(y)/q(y))_+] with the propagated q equals TV(q, p) only if q is the
    law of the registry sampler's outputs (seeded samples, 3 standard errors)."""
    from samplerlab.experiments.studies.provable_acceleration import target_2d
    target = target_2d()
    sig = schedule_grid("log-SNR uniform", 20)
    coeffs = chain_coefficients("li_accel_sde", sig)
    s0, s1 = float(sig[0]), float(sig[-1])
    box = ((-8 * s0, 8 * s0), (-8 * s0, 8 * s0))
    g = propagate_chain_density_2d(target.marginal(s0).log_prob,
                                   chain_steps_2d(target, coeffs, sig), box, n_points=160)
    res = tv_chain_density_2d(target.marginal(s0).log_prob, chain_steps_2d(target, coeffs, sig),
                              target.marginal(s1).log_prob, box, n_points=160)
    x = target.sample(4000, generator=torch.Generator().manual_seed(5), sigma=s0)
    y = SOLVERS["li_accel_sde"](target.denoiser, x, sig, generator=11)
    q = np.maximum(g.interpolant()(y[:, 0].numpy(), y[:, 1].numpy()), 1e-300)
    p = torch.exp(target.marginal(s1).log_prob(y)).numpy()
    terms = np.maximum(0.0, 1.0 - p / q)
    est, se = terms.mean(), terms.std(ddof=1) / math.sqrt(terms.size)
    assert abs(est - res.value) <= 3 * se + res.error_estimate, (est, se, res)


def test_bad_input():
    target = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]])
    lp = target.log_prob
    box = ((-5, 5), (-5, 5))
    with pytest.raises(ValueError, match="pre"):
        ChainStep(pre=-1.0)
    with pytest.raises(ValueError, match="post"):
        ChainStep(post=float("nan"))
    with pytest.raises(TypeError, match="step_map"):
        ChainStep(step_map=3)
    with pytest.raises(TypeError, match="steps\\[0\\]"):
        tv_chain_density_2d(lp, [None], lp, box)
    with pytest.raises(ValueError, match="n_points"):
        tv_chain_density_2d(lp, [ChainStep(post=0.1)], lp, box, n_points=20)
    with pytest.raises(ValueError, match="box"):
        propagate_chain_density_2d(lp, [], ((1, 0), (0, 1)))

    def folding(x):      # m(x) = (x0^3 - x0, x1): det Dm < 0 near 0, where the mass is
        m = torch.stack([x[:, 0] ** 3 - x[:, 0], x[:, 1]], 1)
        dm = torch.zeros(x.shape[0], 2, 2, dtype=x.dtype)
        dm[:, 0, 0] = 3 * x[:, 0] ** 2 - 1
        dm[:, 1, 1] = 1.0
        return m, dm
    with pytest.raises(ValueError, match="orientation-preserving"):
        propagate_chain_density_2d(lp, [ChainStep(step_map=folding)], box, n_points=32)

    def wrong_shape(x):
        return x, x
    with pytest.raises(ValueError, match="shapes"):
        propagate_chain_density_2d(lp, [ChainStep(step_map=wrong_shape)], box, n_points=32)
    # a box that misses the mass: the final mass check names it
    with pytest.raises(ValueError, match="mass"):
        tv_chain_density_2d(lp, [ChainStep(post=0.5, box=None)], lp, ((0, 5), (-5, 5)),
                            n_points=32)
