"""Tests of samplerlab.experiments.targets.GaussianMixture (float64)."""
import math

import mpmath as mp
import pytest
import torch
from hypothesis import given, settings, strategies as st

from samplerlab.experiments.targets import GaussianMixture

F64 = torch.float64


def _diag_target():
    return GaussianMixture([0.2, 0.5, 0.3], [[0.0, 1.0, -1.0], [2.0, -1.0, 0.5], [-2.0, 0.0, 1.0]],
                           [[0.1, 0.4, 0.05], [0.3, 0.02, 0.2], [1.0, 0.5, 0.1]])


TARGETS = {
    "two_mode_1d": GaussianMixture.two_mode_1d,
    "ring_2d": GaussianMixture.ring_2d,
    "grid_2d": GaussianMixture.grid_2d,
    "diag_3d": _diag_target,
    "aniso_3d": lambda: GaussianMixture.random_anisotropic(3, 4, seed=0),
    "aniso_5d": lambda: GaussianMixture.random_anisotropic(5, 3, seed=1, eig_range=(1e-3, 2.0)),
}
SIGMAS = [0.0, 1e-4, 0.01, 0.3, 1.0, 7.0, 80.0, 1e3]


@pytest.fixture(params=list(TARGETS), scope="module")
def target(request):
    return TARGETS[request.param]()


def _points(t, n=16, seed=0, sigma=1.0):
    return t.sample(n, generator=seed, sigma=sigma)


def _brute_force(t, x, sigma):
    """Independent evaluation with torch.distributions and explicit solves (no eigenbasis)."""
    cov = t.covariance_matrices() + sigma ** 2 * torch.eye(t.dim, dtype=F64)
    comp = torch.distributions.MultivariateNormal(t.means, covariance_matrix=cov)
    lj = comp.log_prob(x[:, None, :]) + torch.log(t.weights)
    r = torch.softmax(lj, dim=1)
    diff = x[:, None, :] - t.means[None]                                      # [n, K, d]
    sol = torch.linalg.solve(cov[None], diff[..., None])[..., 0]              # V^-1 (x - mu)
    post = t.means[None] + torch.einsum("kij,nkj->nki", t.covariance_matrices(), sol)
    return torch.logsumexp(lj, 1), (r[..., None] * post).sum(1), -(r[..., None] * sol).sum(1)


# ---------------------------------------------------------------- exact identities
@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_is_gradient_of_log_prob(target, sigma):
    x = _points(target).requires_grad_(True)
    (grad,) = torch.autograd.grad(target.log_prob(x, sigma).sum(), x)
    score = target.score(x.detach(), sigma)
    assert torch.allclose(score, grad, rtol=1e-10, atol=1e-10 * (1 + grad.abs().max()))


@pytest.mark.parametrize("sigma", SIGMAS[1:])
def test_tweedie(target, sigma):
    x = _points(target, sigma=sigma)
    d = target.denoiser(x, sigma)
    tweedie = x + sigma ** 2 * target.score(x, sigma)
    assert torch.allclose(d, tweedie, rtol=0, atol=1e-12 * (1 + x.abs().max()))


@pytest.mark.parametrize("sigma", [1e-3, 0.3, 1.0, 20.0])
def test_matches_brute_force(target, sigma):
    x = _points(target, sigma=sigma)
    lp, den, sc = _brute_force(target, x, sigma)
    assert torch.allclose(target.log_prob(x, sigma), lp, rtol=1e-12, atol=1e-12)
    assert torch.allclose(target.denoiser(x, sigma), den, rtol=1e-11, atol=1e-11)
    assert torch.allclose(target.score(x, sigma), sc, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.0, 1e-2, 0.5, 3.0])
def test_single_gaussian_denoiser_closed_form(sigma):
    t0 = GaussianMixture.random_anisotropic(4, 1, seed=3)
    mean, cov = t0.means[0], t0.covariance_matrices()[0]
    t = GaussianMixture.single_gaussian(mean, cov)
    x = t.sample(10, generator=1, sigma=1.0)
    v = cov + sigma ** 2 * torch.eye(4, dtype=F64)
    expected = mean + (cov @ torch.linalg.solve(v, (x - mean).T)).T
    assert torch.allclose(t.denoiser(x, sigma), expected, rtol=1e-12, atol=1e-12)
    assert torch.allclose(t.score(x, sigma), -torch.linalg.solve(v, (x - mean).T).T,
                          rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("sigma", [1e-3, 0.2, 1.0, 30.0])
def test_denoiser_jacobian_matches_autograd(target, sigma):
    x = _points(target, n=6, sigma=sigma)
    jac = target.denoiser_jacobian(x, sigma)
    auto = torch.autograd.functional.jacobian(lambda z: target.denoiser(z, sigma).sum(0), x)
    auto = auto.permute(1, 0, 2)                                 # [n, d_out, d_in]
    assert jac.shape == (6, target.dim, target.dim)
    assert torch.allclose(jac, auto, rtol=1e-10, atol=1e-11)
    assert torch.allclose(jac, jac.transpose(1, 2), atol=1e-12)


def test_jacobian_and_denoiser_at_sigma_zero_are_identity(target):
    x = _points(target)
    s = torch.zeros(x.shape[0], dtype=F64)
    s[::2] = 0.5
    d = target.denoiser(x, s)
    assert torch.equal(d[1::2], x[1::2])
    assert torch.allclose(d[::2], target.denoiser(x[::2], 0.5), rtol=0, atol=1e-15)
    jac = target.denoiser_jacobian(x, 0.0)
    assert torch.equal(jac, torch.eye(target.dim, dtype=F64).expand_as(jac))


def test_batched_sigma_equals_rowwise(target):
    x = _points(target, n=5)
    s = torch.tensor([1e-4, 0.1, 1.0, 10.0, 1e3], dtype=F64)
    d = target.denoiser(x, s)
    j = target.denoiser_jacobian(x, s)
    lp = target.log_prob(x, s)
    for i in range(5):
        assert torch.allclose(d[i], target.denoiser(x[i:i + 1], s[i].item())[0], rtol=1e-14)
        assert torch.allclose(j[i], target.denoiser_jacobian(x[i:i + 1], s[i])[0], rtol=1e-13,
                              atol=1e-15)
        assert torch.allclose(lp[i], target.log_prob(x[i:i + 1], s[i:i + 1])[0], rtol=1e-14)


def test_responsibilities_sum_to_one(target):
    r = target.responsibilities(_points(target), 0.5)
    assert r.shape == (16, target.n_components)
    assert torch.allclose(r.sum(1), torch.ones(16, dtype=F64), atol=1e-14)


def test_marginal_is_the_noised_law(target):
    x = _points(target, sigma=2.0)
    m = target.marginal(2.0)
    assert m.cov_kind == target.cov_kind
    assert torch.allclose(m.log_prob(x), target.log_prob(x, 2.0), rtol=1e-13)
    # Tweedie on both laws: D_m(x, s) = x + (s^2 / tau^2) (D(x, tau) - x), tau^2 = 2^2 + s^2
    tau2 = 4.0 + 0.25
    assert torch.allclose(m.denoiser(x, 0.5), x + 0.25 / tau2 * (target.denoiser(x, math.sqrt(tau2)) - x),
                          rtol=1e-12, atol=1e-12)
    assert torch.allclose(m.log_prob(x, 1.5), target.log_prob(x, 2.5), rtol=1e-13)
    mean, cov = target.moments(2.0)
    mean2, cov2 = m.moments()
    assert torch.allclose(mean, mean2) and torch.allclose(cov, cov2, rtol=1e-13)


@settings(max_examples=40, deadline=None)
@given(log_sigma=st.floats(math.log(1e-4), math.log(1e3)),
       seed=st.integers(0, 2 ** 31 - 1), scale=st.floats(0.1, 20.0))
def test_hypothesis_identities(log_sigma, seed, scale):
    t = GaussianMixture.random_anisotropic(3, 3, seed=seed % 7)
    sigma = math.exp(log_sigma)
    g = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(4, 3, generator=g, dtype=F64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(t.log_prob(x, sigma).sum(), x)
    x = x.detach()
    score = t.score(x, sigma)
    assert torch.isfinite(score).all()
    assert torch.allclose(score, grad, rtol=1e-9, atol=1e-9 * (1 + grad.abs().max()))
    d = t.denoiser(x, sigma)
    assert torch.allclose(d, x + sigma ** 2 * score, rtol=0, atol=1e-11 * (1 + x.abs().max()))
    _, den, _ = _brute_force(t, x, sigma)
    assert torch.allclose(d, den, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- accuracy and stability
def _mp_denoiser_1d(t, x, sigma):
    mp.mp.dps = 40
    s2 = mp.mpf(sigma) ** 2
    logs, post = [], []
    for k in range(t.n_components):
        c, mu, w = (mp.mpf(float(v)) for v in (t.eigenvalues[k, 0], t.means[k, 0], t.weights[k]))
        v = c + s2
        logs.append(mp.log(w) - (x - mu) ** 2 / (2 * v) - mp.log(v) / 2)
        post.append(mu + c / v * (x - mu))
    top = max(logs)
    e = [mp.e ** (lg - top) for lg in logs]
    return float(sum(ei * pi for ei, pi in zip(e, post)) / sum(e))


@pytest.mark.parametrize("means,stds", [((-1.0, 1.0), (0.2, 0.35)), ((-10.0, 10.0), (0.2, 0.2))])
def test_denoiser_accuracy_against_mpmath(means, stds):
    t = GaussianMixture.two_mode_1d(means=means, stds=stds)
    x = torch.tensor([-25.0, -10.3, -1.2, -0.01, 0.0, 0.4, 1.0, 3.0, 11.0, 400.0], dtype=F64)
    for sigma in [1e-4, 1e-2, 0.5, 2.0, 80.0, 1e3]:
        d = t.denoiser(x[:, None], sigma)[:, 0]
        ref = torch.tensor([_mp_denoiser_1d(t, mp.mpf(float(v)), sigma) for v in x], dtype=F64)
        assert torch.allclose(d, ref, rtol=1e-13, atol=1e-13), (sigma, (d - ref).abs().max())


def test_stable_for_far_modes_and_extreme_sigmas():
    # modes 50 standard deviations apart, points far outside and between them
    t = GaussianMixture([0.5, 0.5], [[-5.0, 0.0], [5.0, 0.0]], [0.01, 0.01])
    pts = torch.tensor([[0.0, 0.0], [-5.0, 0.0], [5.0, 1.0], [1e4, -1e4], [-3e3, 2.0], [2.5, 0.0]],
                       dtype=F64)
    for sigma in torch.logspace(-4, 3, 15, dtype=F64).tolist() + [0.0]:
        lp = t.log_prob(pts, sigma)
        d = t.denoiser(pts, sigma)
        sc = t.score(pts, sigma)
        jac = t.denoiser_jacobian(pts, sigma)
        r = t.responsibilities(pts, sigma)
        for val in (lp, d, sc, jac, r):
            assert torch.isfinite(val).all(), sigma
        if sigma > 0:
            # the posterior mean lies in the convex hull of the posterior component means
            assert (d[:, 0].abs() <= pts[:, 0].abs().clamp_min(5.0) + 1e-12).all()
    # between the modes at tiny sigma the nearer mode takes all the weight (the other has
    # responsibility e^-100): D = mu + c / (c + sigma^2) (x - mu) with mu = 5
    d = t.denoiser(torch.tensor([[0.1, 0.0]], dtype=F64), 1e-4)
    assert abs(d[0, 0].item() - (5.0 - 4.9 * 0.01 / (0.01 + 1e-8))) < 1e-14


def test_float32_copy_agrees():
    t = GaussianMixture.random_anisotropic(3, 3, seed=2)
    t32 = t.to(dtype=torch.float32)
    assert t32.dtype == torch.float32 and t32.device == t.device
    x = t.sample(20, generator=0, sigma=1.0)
    d32 = t32.denoiser(x.float(), 1.0)
    assert d32.dtype == torch.float32
    assert torch.allclose(d32.double(), t.denoiser(x, 1.0), atol=1e-5)
    assert t.to() is t


# ---------------------------------------------------------------- sampling
@pytest.mark.parametrize("name,sigma", [("aniso_3d", 0.0), ("two_mode_1d", 0.0), ("ring_2d", 0.7),
                                        ("aniso_5d", 1.3)])
def test_sample_moments(name, sigma):
    t = TARGETS[name]()
    n = 200_000
    x = t.sample(n, generator=torch.Generator().manual_seed(11), sigma=sigma)
    assert x.shape == (n, t.dim) and x.dtype == F64
    mean, cov = t.moments(sigma)
    se_mean = torch.sqrt(torch.diagonal(cov) / n)
    assert ((x.mean(0) - mean).abs() <= 5 * se_mean).all()
    xc = x - x.mean(0)
    prods = xc[:, :, None] * xc[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    assert ((prods.mean(0) - cov).abs() <= 5 * se_cov + 1e-12).all()


def test_sample_is_reproducible_and_generator_consumed():
    t = GaussianMixture.random_anisotropic(3, 4, seed=0)
    a = t.sample(50, generator=5)
    b = t.sample(50, generator=torch.Generator().manual_seed(5))
    c = t.sample(50, generator=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_component_frequencies():
    t = GaussianMixture.two_mode_1d(means=(-50.0, 50.0), stds=(1.0, 1.0))
    x = t.sample(100_000, generator=3)
    frac = (x[:, 0] > 0).double().mean().item()
    assert abs(frac - 0.7) < 5 * math.sqrt(0.21 / 100_000)


# ---------------------------------------------------------------- shapes
def test_image_shape_round_trip():
    t = GaussianMixture.random_anisotropic(2 * 3 * 4, 3, seed=4, eig_range=(0.05, 1.0))
    x = t.sample(7, generator=0, sigma=0.5).reshape(7, 2, 3, 4)
    for fn in (t.denoiser, t.score):
        out = fn(x, 0.5)
        assert out.shape == x.shape
        assert torch.equal(out.reshape(7, -1), fn(x.reshape(7, -1), 0.5))
    assert t.log_prob(x, 0.5).shape == (7,)
    assert t.denoiser_jacobian(x, 0.5).shape == (7, 24, 24)
    assert t.responsibilities(x, 0.5).shape == (7, 3)


def test_one_dimensional_accepts_flat_batch():
    t = GaussianMixture.two_mode_1d()
    x = torch.linspace(-2, 2, 9, dtype=F64)
    assert t.denoiser(x, 0.3).shape == (9,)
    assert torch.equal(t.denoiser(x, 0.3), t.denoiser(x[:, None], 0.3)[:, 0])


def test_named_constructors():
    ring = GaussianMixture.ring_2d(n_modes=6, radius=3.0, std=0.1)
    assert ring.n_components == 6 and ring.dim == 2
    assert torch.allclose(ring.means.norm(dim=1), torch.full((6,), 3.0, dtype=F64))
    grid = GaussianMixture.grid_2d(n=4, spacing=1.5)
    assert grid.n_components == 16 and torch.allclose(grid.means.mean(0), torch.zeros(2, dtype=F64),
                                                       atol=1e-15)
    two = GaussianMixture.two_mode_1d()
    assert torch.allclose(two.eigenvalues[:, 0], torch.tensor([0.04, 0.1225], dtype=F64))
    a = GaussianMixture.random_anisotropic(6, 5, seed=9, eig_range=(0.01, 1.0))
    b = GaussianMixture.random_anisotropic(6, 5, seed=9, eig_range=(0.01, 1.0))
    assert a.cov_kind == "full" and torch.equal(a.covs, b.covs) and torch.equal(a.means, b.means)
    assert a.eigenvalues.min() >= 0.01 * (1 - 1e-12) and a.eigenvalues.max() <= 1.0 + 1e-12
    assert a.eigenvalues.max() / a.eigenvalues.min() > 10          # spread, not isotropic
    u = a.eigenvectors
    assert torch.allclose(u.transpose(1, 2) @ u, torch.eye(6, dtype=F64).expand(5, 6, 6), atol=1e-13)
    assert abs(a.weights.sum().item() - 1) < 1e-14
    s = GaussianMixture.single_gaussian(torch.zeros(3, dtype=F64), 2.0)
    assert s.cov_kind == "isotropic" and s.n_components == 1
    assert GaussianMixture.single_gaussian([0.0, 1.0], [1.0, 2.0]).cov_kind == "diagonal"


# ---------------------------------------------------------------- bad input
def test_bad_parameters_raise():
    ok_w, ok_m = [0.5, 0.5], [[0.0], [1.0]]
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([0.5, 0.6], ok_m, [1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([1.5, -0.5], ok_m, [1.0, 1.0])
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(ok_w, [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(ok_w, [[0.0], [float("nan")]], [1.0, 1.0])
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture(ok_w, ok_m, [1.0, -1.0])
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture(ok_w, ok_m, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture(ok_w, ok_m, [1.0, float("inf")])
    m2 = [[0.0, 0.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="covs.*symmetric"):
        GaussianMixture(ok_w, m2, [[[1.0, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="covs.*positive-definite"):
        GaussianMixture(ok_w, m2, [[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="covs.*positive-definite"):
        GaussianMixture(ok_w, m2, [[[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture(ok_w, m2, torch.ones(2, 3, 3))
    with pytest.raises(TypeError, match="dtype"):
        GaussianMixture(ok_w, ok_m, [1.0, 1.0], dtype=torch.int64)
    with pytest.raises(ValueError, match="eig_range"):
        GaussianMixture.random_anisotropic(2, 2, seed=0, eig_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixture.random_anisotropic(2, 0, seed=0)


def test_bad_call_arguments_raise():
    t = GaussianMixture.random_anisotropic(3, 2, seed=0)
    x = t.sample(4, generator=0)
    with pytest.raises(TypeError, match=r"\.to"):
        t.denoiser(x.float(), 1.0)
    with pytest.raises(TypeError, match="x"):
        t.score(x.tolist(), 1.0)
    with pytest.raises(ValueError, match="x"):
        t.denoiser(torch.zeros(4, 2, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="x"):
        t.log_prob(torch.zeros(3, dtype=F64))
    for bad in (-0.1, float("nan"), float("inf"), torch.tensor([1.0, -1.0, 1.0, 1.0])):
        with pytest.raises(ValueError, match="sigma"):
            t.denoiser(x, bad)
    with pytest.raises(ValueError, match="sigma"):
        t.score(x, torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="sigma"):
        t.marginal(-1.0)
    with pytest.raises(ValueError, match="sigma"):
        t.sample(3, sigma=float("nan"))
    with pytest.raises(ValueError, match="n"):
        t.sample(0)
    with pytest.raises(TypeError, match="generator"):
        t.sample(3, generator="seed")
