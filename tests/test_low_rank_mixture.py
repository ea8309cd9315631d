"""Low-rank-plus-diagonal mixtures (samplerlab.experiments.low_rank_mixture) against the dense form."""
import math

import pytest
import torch

from samplerlab.experiments.low_rank_mixture import LowRankGaussianMixture, image_like_mixture
from samplerlab.experiments.reference import solve_pf_ode
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import grids, sample

F64 = torch.float64


def _random_low_rank(d, r, k, seed, *, isotropic_diag=False):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(k, generator=g, dtype=F64) + 0.2
    w = w / w.sum()
    mu = 1.5 * torch.randn(k, d, generator=g, dtype=F64)
    u = torch.randn(k, d, r, generator=g, dtype=F64) / math.sqrt(r)
    a = (torch.rand(k, generator=g, dtype=F64) if isotropic_diag
         else torch.rand(k, d, generator=g, dtype=F64)) * 0.5 + 0.05
    return GaussianMixture.low_rank(w, mu, u, a)


@pytest.mark.parametrize("d,r,k", [(1, 1, 2), (7, 3, 3), (512, 16, 3)])
def test_agrees_with_dense_form(d, r, k):
    """denoiser, score and log_prob equal the dense eigenbasis evaluation to 1e-12 (relative),
    for one noise level and for one per sample."""
    lr = _random_low_rank(d, r, k, seed=d)
    dense = lr.to_dense()
    assert isinstance(lr, LowRankGaussianMixture) and lr.cov_kind == "low_rank"
    g = torch.Generator().manual_seed(1)
    x = 3.0 * torch.randn(40, d, generator=g, dtype=F64)
    levels = [1e-3, 0.1, 1.0, 80.0, torch.rand(40, generator=g, dtype=F64) * 5 + 1e-2]
    for s in levels:
        # responsibilities are exp of log-joints of size ~d/sigma^2: their round-off is
        # eps * |log joint|, ~1e-12 at d = 512, sigma = 0.1, in either evaluation
        lj = dense.log_prob(x, s).abs().max().item()
        got, want = lr.responsibilities(x, s), dense.responsibilities(x, s)
        dr = (got - want).abs().max().item()
        assert dr < 1e-14 * max(lj, 1.0), s
        # denoiser and score mix per-component terms with those responsibilities, so their
        # difference is 1e-12 relative plus what the responsibilities' round-off carries: at
        # sigma = 0.1 (mixed responsibilities, |log joint| ~ 1.4e4) 1.8e-12 relative with one
        # thread on an AVX2 CPU, 2.2e-13 with two (measured 2026-12-03)
        for name in ("denoiser", "score", "log_prob"):
            got, want = getattr(lr, name)(x, s), getattr(dense, name)(x, s)
            scale = want.abs().max().item()
            carried = 0.0
            if name != "log_prob":   # |sum_k dr_k t_k| <= K dr max_k |t_k|, t_k ~ |want| + |x|/s^2
                sig = s if isinstance(s, float) else s.min().item()
                spread = scale + x.abs().max().item() / (sig * sig if name == "score" else 1.0)
                carried = k * dr * spread
            assert (got - want).abs().max().item() < 1e-12 * scale + carried, (name, s)
    assert torch.equal(lr.denoiser(x, 0.0), x)
    empty = x[:0]
    for s in (0.5, torch.zeros(0, dtype=F64) + 0.5):
        for name in ("denoiser", "score"):
            assert getattr(lr, name)(empty, s).shape == (0, d), (name, s)
        assert lr.log_prob(empty, s).shape == (0,)


def test_isotropic_diag_and_marginal():
    lr = _random_low_rank(6, 2, 2, seed=3, isotropic_diag=True)
    m = lr.marginal(0.7)
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(m.log_prob(x, 0.0), lr.log_prob(x, 0.7), rtol=1e-13, atol=1e-13)
    assert abs(lr.smallest_variance() - lr.diag.min().item()) == 0.0
    # the lower bound is below every true eigenvalue
    assert lr.smallest_variance() <= lr.eigenvalues.min().item() + 1e-15


def test_samples_have_the_right_moments():
    lr = _random_low_rank(4, 2, 2, seed=5)
    x = lr.sample(200_000, generator=0, sigma=0.5)
    mean, cov = lr.moments(0.5)
    assert (x.mean(0) - mean).abs().max() < 0.02
    assert (torch.cov(x.T) - cov).abs().max() < 0.05
    again = lr.sample(10, generator=0, sigma=0.5)
    assert torch.equal(again, lr.sample(10, generator=0, sigma=0.5))


def test_image_like_shapes_dtype_and_determinism():
    t = GaussianMixture.image_like((3, 8, 8), n_components=4, rank=5, seed=2)
    assert t.dim == 192 and t.event_shape == (3, 8, 8) and t.rank == 5
    x = t.sample(6, generator=1, sigma=2.0)
    assert x.shape == (6, 3, 8, 8)
    assert t.denoiser(x, 2.0).shape == x.shape
    t2 = image_like_mixture((3, 8, 8), 4, 5, 2)
    assert torch.equal(t2.means, t.means) and torch.equal(t2.factors, t.factors)
    t32 = t.to(dtype=torch.float32)
    d32 = t32.denoiser(x.float(), 2.0)
    assert d32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), t.denoiser(x, 2.0), rtol=1e-4, atol=1e-4)
    # the factors' spectrum decays: column j has norm ~ 1/(j+1)
    norms = t.factors[0].norm(dim=0)
    assert (norms[1:] < norms[:-1]).all()


def test_samplers_converge_on_an_image_target():
    """Exact reference through solve_pf_ode on [n, c, h, w]; res_2s is second order there."""
    t = GaussianMixture.image_like((2, 4, 4), n_components=3, rank=3, seed=0, noise_var=0.05)
    x = t.sample(8, generator=0, sigma=20.0)
    ref = solve_pf_ode(t, x, 20.0, 0.05, rtol=1e-11, atol=1e-11)
    errs = []
    for m in (16, 32, 64):
        s = grids.lambda_uniform(m, sigma_min=0.05, sigma_max=20.0)
        out = sample("res_2s", t.denoiser, x, s)
        assert out.shape == x.shape
        errs.append((out - ref).flatten(1).norm(dim=1).max().item())
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert 1.7 < slopes[-1] < 2.5, (errs, slopes)


@pytest.mark.parametrize("kwargs,match", [
    (dict(factors=torch.ones(2, 3, 4)), "rank r <= d"),
    (dict(factors=torch.ones(2, 4, 2)), "factors must have shape"),
    (dict(diag=-torch.ones(2, 3)), "diag must be > 0"),
    (dict(diag=torch.ones(3)), "diag must have shape"),
    (dict(factors=torch.full((2, 3, 1), float("nan"))), "factors must be finite"),
])
def test_bad_input(kwargs, match):
    args = dict(weights=[0.5, 0.5], means=torch.zeros(2, 3), factors=torch.ones(2, 3, 1),
                diag=torch.ones(2, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GaussianMixture.low_rank(**args)


def test_bad_event_shape_and_dense_limit():
    with pytest.raises(ValueError, match="event_shape"):
        GaussianMixture.low_rank([1.0], torch.zeros(1, 6), torch.ones(1, 6, 1), torch.ones(1),
                                 event_shape=(2, 2))
    with pytest.raises(ValueError, match="rank must be <= d"):
        GaussianMixture.image_like((1, 2, 2), n_components=1, rank=5)
    big = GaussianMixture.low_rank([1.0], torch.zeros(1, 5000), torch.zeros(1, 5000, 1),
                                   torch.ones(1))
    with pytest.raises(ValueError, match="dense"):
        big.covariance_matrices()


def _explicit_reference(lr, x, sigma):
    """float64 dense evaluation that forms y_k = x - mu_k (no expanded quadratic form):
    Cholesky of V_k = U_k U_k^T + diag(a_k) + sigma^2 I per component and level."""
    u, a = lr.factors.double(), lr.diag.double()
    mu, logw = lr.means.double(), torch.log(lr.weights.double())
    n, d = x.shape
    s = torch.as_tensor(sigma, dtype=F64).reshape(-1).expand(n)
    lj, g, cg = (torch.empty(n, lr.n_components, *extra, dtype=F64) for extra in ((), (d,), (d,)))
    for k in range(lr.n_components):
        c = u[k] @ u[k].T + torch.diag(a[k])
        for sv in torch.unique(s):
            i = (s == sv).nonzero()[:, 0]
            chol = torch.linalg.cholesky(c + sv ** 2 * torch.eye(d, dtype=F64))
            y = x[i] - mu[k]
            gk = torch.cholesky_solve(y.T, chol).T
            lj[i, k] = (logw[k] - 0.5 * (y * gk).sum(1) - torch.log(torch.diagonal(chol)).sum()
                        - 0.5 * d * math.log(2 * math.pi))
            g[i, k], cg[i, k] = gk, gk @ c
    r = torch.softmax(lj, 1)
    return dict(log_prob=torch.logsumexp(lj, 1), score=-(r[..., None] * g).sum(1),
                denoiser=(r[..., None] * (mu + cg)).sum(1), responsibilities=r)


@pytest.mark.parametrize("isotropic", [False, True])
def test_means_with_a_large_common_offset(isotropic):
    """Means ~1e3 + N(0, 1.5^2), x from the mixture: the centred evaluation keeps every
    quantity at round-off against a reference that forms x - mu_k (expanding the quadratic
    form around 0 loses |x|^2 / |x - mu|^2 ~ 1e5 here: log_prob ~1e-9), for one noise level
    (constant and general diagonals take different paths) and for one per sample."""
    base = _random_low_rank(128, 8, 3, seed=11, isotropic_diag=isotropic)
    lr = GaussianMixture.low_rank(base.weights, base.means + 1e3, base.factors, base.diag)
    g = torch.Generator().manual_seed(2)
    levels = [1e-4, 0.1, 1.0, 30.0, 1e4, torch.rand(24, generator=g, dtype=F64) * 3 + 1e-3]
    for s in levels:
        x = lr.sample(24, generator=3, sigma=s)
        want = _explicit_reference(lr, x, s)
        for name in ("denoiser", "score", "log_prob"):
            got = getattr(lr, name)(x, s)
            err = ((got - want[name]).abs().max() / want[name].abs().max()).item()
            assert err < 1e-12, (name, s, err)
        assert (lr.responsibilities(x, s) - want["responsibilities"]).abs().max() < 1e-11, s


def test_float32_with_offset_means():
    """float32 with means offset by 100 (pixel-like intensities): log-density and score keep
    float32 round-off of the centred terms (expanding around 0: log_prob ~0.15, score ~3e-4
    relative at sigma = 0.002)."""
    t = image_like_mixture((3, 8, 8), n_components=4, rank=6, seed=1)
    t = GaussianMixture.low_rank(t.weights, t.means + 100.0, t.factors, t.diag)
    t32 = t.to(dtype=torch.float32)
    tol = dict(log_prob=3e-4, score=1e-4, denoiser=1e-6)
    for s in (0.002, 0.1, 3.0):
        x = t.sample(32, generator=4, sigma=s)
        for name, limit in tol.items():
            want = getattr(t, name)(x, s)
            got = getattr(t32, name)(x.float(), s).double()
            assert ((got - want).abs().max() / want.abs().max()).item() < limit, (name, s)
