"""Tests of samplerlab.experiments.reference: exact PF-ODE solutions (float64)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from samplerlab.experiments.reference import (gaussian_flow_closed_form, noised_marginal,
                                              solve_pf_ode, solve_pf_ode_path)
from samplerlab.experiments.targets import GaussianMixture

F64 = torch.float64


def _gaussians():
    aniso = GaussianMixture.random_anisotropic(3, 1, seed=5, eig_range=(0.01, 4.0))
    return {
        "1d": (torch.tensor([0.5], dtype=F64), torch.tensor([[0.09]], dtype=F64)),
        "3d_aniso": (aniso.means[0], aniso.covariance_matrices()[0]),
    }


GAUSSIANS = _gaussians()
SAMPLING_PAIRS = [(80.0, 0.002), (80.0, 0.0), (1.0, 0.0), (5.0, 0.3), (1e3, 1e-4), (0.05, 0.0)]
ENCODING_PAIRS = [(0.0, 80.0), (0.002, 80.0), (0.0, 1.0), (0.3, 5.0)]


def _bound(x_to):
    """1e-10 absolute, relative to |x| where the solution itself is large (large sigma_to)."""
    return 1e-10 * x_to.abs().clamp_min(1.0)


# ---------------------------------------------------------------- Gaussian: closed form
@pytest.mark.parametrize("name", list(GAUSSIANS))
@pytest.mark.parametrize("s0,s1", SAMPLING_PAIRS + ENCODING_PAIRS)
def test_reference_equals_gaussian_closed_form(name, s0, s1):
    mean, cov = GAUSSIANS[name]
    t = GaussianMixture.single_gaussian(mean, cov)
    x = t.sample(40, generator=1, sigma=s0)
    ref = solve_pf_ode(t, x, s0, s1)
    exact = gaussian_flow_closed_form(mean, cov, x, s0, s1)
    assert ref.shape == x.shape and ref.dtype == F64
    assert ((ref - exact).abs() <= _bound(exact)).all(), (ref - exact).abs().max().item()


def test_closed_form_is_the_flow():
    """Independent of the ODE solver: the closed form is a flow (composition), transports the
    noised law N(mu, C + s^2 I) onto N(mu, C + s'^2 I), and solves dx/dsigma = -sigma score."""
    mean, cov = GAUSSIANS["3d_aniso"]
    t = GaussianMixture.single_gaussian(mean, cov)
    x = t.sample(5, generator=2, sigma=2.0)
    a = gaussian_flow_closed_form(mean, cov, gaussian_flow_closed_form(mean, cov, x, 2.0, 0.7),
                                  0.7, 0.0)
    assert torch.allclose(a, gaussian_flow_closed_form(mean, cov, x, 2.0, 0.0), atol=1e-13)
    eye = torch.eye(3, dtype=F64)
    lin = gaussian_flow_closed_form(mean, cov, mean + eye, 2.0, 0.7) - mean   # rows: A e_i
    A = lin.T
    assert torch.allclose(A @ (cov + 4.0 * eye) @ A.T, cov + 0.49 * eye, atol=1e-13)
    h, s = 1e-5, 0.9
    fd = (gaussian_flow_closed_form(mean, cov, x, 2.0, s + h)
          - gaussian_flow_closed_form(mean, cov, x, 2.0, s - h)) / (2 * h)
    xs = gaussian_flow_closed_form(mean, cov, x, 2.0, s)
    assert torch.allclose(fd, -s * t.score(xs, s), rtol=1e-7, atol=1e-8)


@settings(max_examples=12, deadline=None)
@given(l0=st.floats(math.log(1e-3), math.log(1e2)), l1=st.floats(math.log(1e-3), math.log(1e2)),
       to_zero=st.booleans(), seed=st.integers(0, 1000))
def test_hypothesis_closed_form(l0, l1, to_zero, seed):
    mean, cov = GAUSSIANS["3d_aniso"]
    t = GaussianMixture.single_gaussian(mean, cov)
    s0, s1 = math.exp(l0), 0.0 if to_zero else math.exp(l1)
    x = t.sample(8, generator=seed, sigma=s0)
    ref = solve_pf_ode(t, x, s0, s1)
    exact = gaussian_flow_closed_form(mean, cov, x, s0, s1)
    assert ((ref - exact).abs() <= _bound(exact)).all()


# ---------------------------------------------------------------- mixtures
def _cdf_1d(t, x, sigma, upper):
    """Mixture CDF (or survival function where ``upper``) of p_sigma at x [n, 1]."""
    sd = torch.sqrt(t.eigenvalues[:, 0] + sigma ** 2)
    z = (x - t.means[:, 0]) / sd
    return (t.weights * torch.special.ndtr(torch.where(upper[:, None], -z, z))).sum(-1)


@pytest.mark.parametrize("means,stds", [((-1.0, 1.0), (0.2, 0.35)), ((-3.0, 3.0), (0.1, 0.5))])
@pytest.mark.parametrize("s0,s1", SAMPLING_PAIRS + [(0.0, 80.0), (0.3, 5.0)])
def test_mixture_1d_monotone_transport(means, stds, s0, s1):
    """In 1-D the PF-ODE flow is increasing and pushes p_s0 onto p_s1, so it is the monotone
    transport map: F_s1(x(s1)) = F_s0(x(s0)) with the exact mixture CDFs. The CDF mismatch
    divided by the density is the error in x (to first order)."""
    t = GaussianMixture.two_mode_1d(means=means, stds=stds)
    x = t.sample(200, generator=2, sigma=s0)
    x1 = solve_pf_ode(t, x, s0, s1)
    upper = _cdf_1d(t, x1, s1, torch.zeros(200, dtype=torch.bool)) > 0.5
    mismatch = _cdf_1d(t, x1, s1, upper) - _cdf_1d(t, x, s0, upper)
    err = mismatch.abs() / torch.exp(t.log_prob(x1, s1))
    assert (err <= _bound(x1[:, 0])).all(), err.max().item()


@pytest.mark.parametrize("s0,s1", [(80.0, 0.002), (1.0, 0.0), (10.0, 0.0)])
def test_mixture_reversible(s0, s1):
    t = GaussianMixture.random_anisotropic(2, 3, seed=4)
    x = t.sample(60, generator=3, sigma=s0)
    back = solve_pf_ode(t, solve_pf_ode(t, x, s0, s1), s1, s0)
    assert ((back - x).abs() <= 1e-9 * x.abs().clamp_min(1.0)).all(), (back - x).abs().max().item()


def test_generic_denoiser_matches_target():
    t = GaussianMixture.ring_2d()
    x = t.sample(30, generator=5, sigma=80.0)
    calls = []

    def denoiser(z, sigma):
        calls.append(sigma.shape)
        return t.denoiser(z, sigma)

    for s1 in (0.002, 0.0):
        a = solve_pf_ode(t, x, 80.0, s1)
        b = solve_pf_ode(denoiser, x, 80.0, s1)
        assert torch.allclose(a, b, rtol=0, atol=1e-10)
    assert calls and all(c == () for c in calls)


def test_path_matches_closed_form_on_grid():
    mean, cov = GAUSSIANS["3d_aniso"]
    t = GaussianMixture.single_gaussian(mean, cov)
    x = t.sample(10, generator=4, sigma=80.0)
    grid = torch.tensor([80.0, 20.0, 3.0, 0.5, 0.02, 0.0], dtype=F64)
    path = solve_pf_ode_path(t, x, grid)
    assert path.shape == (6, 10, 3) and torch.equal(path[0], x)
    for m, s in enumerate(grid.tolist()):
        exact = gaussian_flow_closed_form(mean, cov, x, 80.0, s)
        assert ((path[m] - exact).abs() <= _bound(exact)).all()
    up = solve_pf_ode_path(t, path[-1], np.flip(grid.numpy()).copy())
    assert torch.allclose(up[-1], x, rtol=1e-11, atol=1e-10)


def test_dtype_device_and_image_shapes():
    t = GaussianMixture.random_anisotropic(12, 2, seed=6, eig_range=(0.05, 1.0))
    x = t.sample(4, generator=0, sigma=5.0)
    ref = solve_pf_ode(t, x, 5.0, 0.0)
    img = solve_pf_ode(t, x.reshape(4, 3, 2, 2), 5.0, 0.0)
    assert img.shape == (4, 3, 2, 2)
    assert torch.allclose(img.reshape(4, 12), ref, atol=1e-12)
    r32 = solve_pf_ode(t, x.float(), 5.0, 0.0)           # target evaluated in float64 inside
    assert r32.dtype == torch.float32 and r32.device == x.device
    assert torch.allclose(r32.double(), ref, atol=1e-5)
    assert torch.equal(solve_pf_ode(t, x, 1.0, 1.0), x)


def test_noised_marginal():
    t = GaussianMixture.random_anisotropic(3, 4, seed=0)
    m = noised_marginal(t, 0.8)
    x = t.sample(10, generator=1, sigma=0.8)
    assert torch.allclose(m.log_prob(x), t.log_prob(x, 0.8), rtol=1e-13)
    assert torch.allclose(m.covariance_matrices(),
                          t.covariance_matrices() + 0.64 * torch.eye(3, dtype=F64), atol=1e-15)
    assert torch.equal(noised_marginal(t, 0.0).log_prob(x), t.log_prob(x))
    with pytest.raises(TypeError, match="target"):
        noised_marginal(t.denoiser, 0.8)


# ---------------------------------------------------------------- bad input
def test_bad_input_raises():
    t = GaussianMixture.two_mode_1d()
    x = t.sample(3, generator=0, sigma=1.0)
    with pytest.raises(ValueError, match="sigma_from"):
        solve_pf_ode(t, x, -1.0, 0.0)
    with pytest.raises(ValueError, match="sigma_to"):
        solve_pf_ode(t, x, 1.0, float("nan"))
    with pytest.raises(ValueError, match="sigma_to"):
        solve_pf_ode(t, x, 1.0, float("inf"))
    with pytest.raises(TypeError, match="target_or_denoiser"):
        solve_pf_ode("gmm", x, 1.0, 0.0)
    with pytest.raises(TypeError, match="x"):
        solve_pf_ode(t, [[0.0]], 1.0, 0.0)
    with pytest.raises(ValueError, match="x"):
        solve_pf_ode(t, torch.full((2, 1), float("nan"), dtype=F64), 1.0, 0.0)
    with pytest.raises(ValueError, match="rtol"):
        solve_pf_ode(t, x, 1.0, 0.0, rtol=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        solve_pf_ode(t, x, 1.0, 0.0, chunk_size=0)
    with pytest.raises(ValueError, match="sigma_switch"):
        solve_pf_ode(t, x, 1.0, 0.0, sigma_switch=-1.0)
    with pytest.raises(ValueError, match="monotone"):
        solve_pf_ode_path(t, x, [1.0, 0.5, 0.7])
    with pytest.raises(ValueError, match="monotone"):
        solve_pf_ode_path(t, x, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="sigmas"):
        solve_pf_ode_path(t, x, [1.0, -0.5])
    with pytest.raises(FloatingPointError, match="NaN"):
        solve_pf_ode(lambda z, s: z * float("nan"), x, 1.0, 0.5)
    with pytest.raises(ValueError, match="shape"):
        solve_pf_ode(lambda z, s: z[:1], x, 1.0, 0.5)
    with pytest.raises(ValueError, match="mean"):
        gaussian_flow_closed_form(torch.zeros(2, 2), torch.eye(2), x, 1.0, 0.0)
    with pytest.raises(ValueError, match="cov"):
        gaussian_flow_closed_form(torch.zeros(1), -torch.eye(1), x, 1.0, 0.0)


def test_sigmas_and_timesteps_share_one_vector_check():
    # theory.validation.as_float64_vector: every 1-D list of levels or timesteps, named
    from samplerlab.theory.validation import as_float64_vector
    assert as_float64_vector(torch.tensor([3.0, 1.0]), "sigmas").dtype == np.float64
    with pytest.raises(TypeError, match="sigmas must be a 1-D sequence of noise levels"):
        as_float64_vector(["a", 1.0], "sigmas", "noise levels")
    with pytest.raises(ValueError, match="timesteps must be a non-empty 1-D sequence"):
        as_float64_vector([[1.0, 2.0]], "timesteps")
    with pytest.raises(ValueError, match="timesteps must be finite"):
        as_float64_vector([5.0, float("nan")], "timesteps")
