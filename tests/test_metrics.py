"""Tests of the experiments/metrics package: defect, closed forms, and TV estimators that cross-check.

Tolerances (all measured; see the report in the module docstrings):
* closed forms vs independent formulas / scipy quadrature: 1e-12;
* density propagation on a grid vs the exact Gaussian TV: 1e-12 (measured ~1e-16);
* push-forward importance sampling vs exact: within 4 standard errors;
* histogram / KDE vs exact: 0.02 absolute (they are biased by binning, smoothing and noise).
"""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import integrate, stats

from samplerlab.experiments import metrics as M

DT = torch.float64
LOG_2PI = math.log(2 * math.pi)


def normal_lp(m, s):
    """log N(y; m, s^2) for y of shape [n, 1]."""
    return lambda y: -0.5 * ((y[:, 0] - m) / s) ** 2 - math.log(s) - 0.5 * LOG_2PI


def mvn_lp(m, cov):
    m = torch.as_tensor(m, dtype=DT)
    chol = torch.linalg.cholesky(torch.as_tensor(cov, dtype=DT))

    def f(y):
        z = torch.linalg.solve_triangular(chol, (y - m).T, upper=False)
        return (-0.5 * (z * z).sum(0) - torch.log(torch.diagonal(chol)).sum()
                - 0.5 * y.shape[1] * LOG_2PI)
    return f


def mixture_lp(y):
    """A 1-D two-mode mixture 0.3 N(-1.5, 0.5^2) + 0.7 N(1, 0.8^2) (local to the tests)."""
    y = y[:, 0]
    l1 = math.log(0.3) - 0.5 * ((y + 1.5) / 0.5) ** 2 - math.log(0.5)
    l2 = math.log(0.7) - 0.5 * ((y - 1.0) / 0.8) ** 2 - math.log(0.8)
    return torch.logaddexp(l1, l2) - 0.5 * LOG_2PI


def monotone_map(x):
    return x + 0.3 * torch.tanh(2 * x) + 0.05 * x ** 3


# ------------------------------------------------------------------------------------------------
# defect and signed error
# ------------------------------------------------------------------------------------------------

def test_defect_statistics():
    g = torch.Generator().manual_seed(0)
    x_ref = torch.randn(101, 3, 2, generator=g, dtype=DT)
    x = x_ref + 0.1 * torch.randn(101, 3, 2, generator=g, dtype=DT)
    s = M.defect(x, x_ref)
    d = torch.sqrt(((x - x_ref) ** 2).sum(dim=(1, 2)))
    torch.testing.assert_close(s.per_sample, d, rtol=1e-14, atol=0)
    assert s.mean == pytest.approx(float(d.mean()), rel=1e-14)
    assert s.median == pytest.approx(float(torch.quantile(d, 0.5)), rel=1e-14)
    for q in (0.1, 0.25, 0.75, 0.9):
        assert s.quantiles[q] == pytest.approx(float(torch.quantile(d, q)), rel=1e-14)
    assert s.max == float(d.max())
    assert s.rms == pytest.approx(float(torch.sqrt((d ** 2).mean())), rel=1e-14)
    assert "median" in str(s)
    rel = M.defect(x, x_ref, relative=True)
    norms = torch.sqrt((x_ref ** 2).sum(dim=(1, 2)))
    torch.testing.assert_close(rel.per_sample, d / norms, rtol=1e-14, atol=0)


def test_defect_1d_batch_and_float32():
    x = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float32)
    s = M.defect(x, torch.zeros(3, dtype=torch.float32))
    assert s.per_sample.dtype == torch.float32
    assert (s.median, s.max, s.mean) == (2.0, 4.0, pytest.approx(7 / 3))


def test_signed_error():
    x_ref = torch.zeros(4, 2, dtype=DT)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]], dtype=DT)
    common = torch.tensor([2.0, 0.0], dtype=DT)  # normalised inside
    torch.testing.assert_close(M.signed_error(x, x_ref, common),
                               torch.tensor([1.0, 0.0, -3.0, 1.0], dtype=DT))
    per = torch.tensor([[1.0, 0.0], [0.0, -1.0], [1.0, 0.0], [1.0, 1.0]], dtype=DT)
    torch.testing.assert_close(M.signed_error(x, x_ref, per),
                               torch.tensor([1.0, -2.0, -3.0, math.sqrt(2)], dtype=DT))
    # two errors of opposite sign along a common direction cancel in their sum
    e1 = M.signed_error(x_ref + 0.5 * common, x_ref, common)
    e2 = M.signed_error(x_ref - 0.5 * common, x_ref, common)
    torch.testing.assert_close(e1 + e2, torch.zeros(4, dtype=DT))


@pytest.mark.parametrize("call, err, match", [
    (lambda: M.defect(torch.zeros(3, 2), torch.zeros(3, 3)), ValueError, "same shape"),
    (lambda: M.defect(torch.zeros(3, dtype=DT), torch.zeros(3)), TypeError, "dtype"),
    (lambda: M.defect(torch.tensor([0.0, float("nan")]), torch.zeros(2)), ValueError, "finite"),
    (lambda: M.defect([0.0, 1.0], torch.zeros(2)), TypeError, "x must be a torch.Tensor"),
    (lambda: M.defect(torch.ones(2), torch.zeros(2), relative=True), ValueError, "norm 0"),
    (lambda: M.defect(torch.ones(2), torch.zeros(2), quantiles=(1.5,)), ValueError, "quantiles"),
    (lambda: M.signed_error(torch.ones(2, 2), torch.zeros(2, 2), torch.zeros(2)), ValueError,
     "norm 0"),
    (lambda: M.signed_error(torch.ones(2, 2), torch.zeros(2, 2), torch.ones(3)), ValueError,
     "direction must have shape"),
])
def test_defect_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ------------------------------------------------------------------------------------------------
# (a) closed forms
# ------------------------------------------------------------------------------------------------

GAUSS_1D_CASES = [(0, 1, 0.5, 1), (0, 1, 0, 1.3), (0.2, 0.7, -0.1, 1.1), (0, 1, 5, 0.1),
                  (0, 1, 1e-6, 1 + 1e-6), (3.0, 2.0, -1.0, 0.5)]


@pytest.mark.parametrize("m1, s1, m2, s2", GAUSS_1D_CASES)
def test_tv_gaussian_1d_against_quadrature(m1, s1, m2, s2):
    exact = M.tv_gaussian_1d(m1, s1, m2, s2)
    integrand = lambda x: abs(stats.norm.pdf(x, m1, s1) - stats.norm.pdf(x, m2, s2))  # noqa: E731
    quad = 0.5 * integrate.quad(integrand, -60, 60, points=[m1, m2], limit=500, epsabs=1e-15,
                                epsrel=1e-13)[0]
    assert exact == pytest.approx(quad, abs=1e-12)
    assert M.tv_gaussian_1d(m2, s2, m1, s1) == pytest.approx(exact, abs=1e-15)


def test_tv_gaussian_1d_small_differences():
    # first-order expansion: TV ~ |dm| / (s sqrt(2 pi)) for equal widths
    assert M.tv_gaussian_1d(0, 2.0, 1e-9, 2.0) == pytest.approx(1e-9 / (2 * math.sqrt(2 * math.pi)),
                                                                rel=1e-9)
    assert M.tv_gaussian_1d(1.0, 1.0, 1.0, 1.0) == 0.0
    # TV of N(0,1) vs N(0, (1+e)^2) ~ e * 2 * sqrt(2/(pi e_)) ... : compare with quadrature value
    assert M.tv_gaussian_1d(0, 1, 0, 1 + 1e-7) == pytest.approx(
        1e-7 * 2 * stats.norm.pdf(1.0), rel=1e-5)


def test_tv_gaussian_same_cov():
    assert M.tv_gaussian_same_cov([0.3], [1.1], [[2.0]]) == pytest.approx(
        M.tv_gaussian_1d(0.3, math.sqrt(2.0), 1.1, math.sqrt(2.0)), abs=1e-15)
    # rotation invariance in d = 3
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=DT))
    cov = torch.diag(torch.tensor([0.5, 1.0, 2.0], dtype=DT))
    m1, m2 = torch.tensor([0.1, 0.2, 0.3], dtype=DT), torch.tensor([0.4, -0.1, 0.0], dtype=DT)
    assert M.tv_gaussian_same_cov(q @ m1, q @ m2, q @ cov @ q.T) == pytest.approx(
        M.tv_gaussian_same_cov(m1, m2, cov), abs=1e-14)


def _random_spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=DT)
    return a @ a.T + 0.5 * torch.eye(d, dtype=DT)


def test_kl_gaussian():
    # 1-D closed form
    m1, s1, m2, s2 = 0.3, 0.8, -0.2, 1.4
    ref = math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5
    assert M.kl_gaussian(m1, s1 ** 2, m2, s2 ** 2) == pytest.approx(ref, rel=1e-13)
    # d = 4 against the textbook trace formula in numpy
    c1, c2 = _random_spd(4, 0).numpy(), _random_spd(4, 1).numpy()
    a, b = np.array([0.1, -0.3, 0.2, 0.0]), np.array([0.0, 0.5, -0.1, 0.3])
    inv = np.linalg.inv(c2)
    ref = 0.5 * (np.trace(inv @ c1) - 4 + (b - a) @ inv @ (b - a)
                 + np.linalg.slogdet(c2)[1] - np.linalg.slogdet(c1)[1])
    assert M.kl_gaussian(a, c1, b, c2) == pytest.approx(ref, rel=1e-12)
    assert M.kl_gaussian(a, c1, a, c1) == pytest.approx(0.0, abs=1e-15)
    # nearby Gaussians: KL ~ 1/2 dm^T C^-1 dm without cancellation
    dm = 1e-6 * np.ones(4)
    assert M.kl_gaussian(a, c1, a + dm, c1) == pytest.approx(0.5 * dm @ np.linalg.solve(c1, dm),
                                                             rel=1e-9)


def test_covariance_formats_agree():
    full = M.kl_gaussian([0.0, 1.0], np.diag([2.0, 3.0]), [1.0, 0.0], np.eye(2) * 1.5)
    assert M.kl_gaussian([0.0, 1.0], [2.0, 3.0], [1.0, 0.0], 1.5) == pytest.approx(full, rel=1e-15)
    t = M.kl_gaussian(torch.tensor([0.0, 1.0], dtype=DT), torch.tensor([2.0, 3.0], dtype=DT),
                      torch.tensor([1.0, 0.0], dtype=DT), torch.tensor(1.5, dtype=DT))
    assert t == pytest.approx(full, rel=1e-15)


def test_w2_gaussian():
    assert M.w2_gaussian(0.3, 0.8 ** 2, -0.2, 1.4 ** 2) == pytest.approx(
        math.hypot(0.5, 0.6), rel=1e-13)
    # commuting (diagonal) covariances
    assert M.w2_gaussian([0, 0], [1.0, 4.0], [1, 0], [4.0, 9.0]) == pytest.approx(
        math.sqrt(1 + 1 + 1), rel=1e-13)
    # general case against scipy.linalg.sqrtm
    c1, c2 = _random_spd(3, 2).numpy(), _random_spd(3, 3).numpy()
    a, b = np.array([0.1, 0.2, 0.3]), np.array([0.0, -0.2, 0.1])
    r1 = scipy.linalg.sqrtm(c1).real
    ref = math.sqrt(np.sum((a - b) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(r1 @ c2 @ r1).real))
    assert M.w2_gaussian(a, c1, b, c2) == pytest.approx(ref, rel=1e-10)
    assert M.w2_gaussian(a, c1, a, c1) == pytest.approx(0.0, abs=1e-7)


def test_hellinger_and_bounds():
    m1, s1, m2, s2 = 0.3, 0.8, -0.2, 1.4
    bc = math.sqrt(2 * s1 * s2 / (s1 ** 2 + s2 ** 2)) * math.exp(-(m1 - m2) ** 2 /
                                                                  (4 * (s1 ** 2 + s2 ** 2)))
    assert M.hellinger_gaussian(m1, s1 ** 2, m2, s2 ** 2) == pytest.approx(math.sqrt(1 - bc),
                                                                           rel=1e-13)
    for case in GAUSS_1D_CASES:
        m1, s1, m2, s2 = case
        lo, hi = M.tv_bounds_gaussian(m1, s1 ** 2, m2, s2 ** 2)
        tv = M.tv_gaussian_1d(m1, s1, m2, s2)
        assert lo - 1e-15 <= tv <= hi + 1e-15, case
    cov = _random_spd(2, 4)
    lo, hi = M.tv_bounds_gaussian([0.0, 0.0], cov, [0.5, 0.2], cov)
    assert lo <= M.tv_gaussian_same_cov([0.0, 0.0], [0.5, 0.2], cov) <= hi


@pytest.mark.parametrize("call, err, match", [
    (lambda: M.tv_gaussian_1d(0, 0.0, 0, 1), ValueError, "s1 must be > 0"),
    (lambda: M.tv_gaussian_1d(float("nan"), 1, 0, 1), ValueError, "m1 must be finite"),
    (lambda: M.tv_gaussian_1d("a", 1, 0, 1), TypeError, "m1"),
    (lambda: M.kl_gaussian([0, 0], [[1, 2], [2, 1]], [0, 0], np.eye(2)), ValueError,
     "C1 must be positive definite"),
    (lambda: M.kl_gaussian([0, 0], [[1, 0.5], [0, 1]], [0, 0], np.eye(2)), ValueError,
     "C1 must be symmetric"),
    (lambda: M.w2_gaussian([0, 0], np.eye(2), [0, 0, 0], np.eye(3)), ValueError, "same dimension"),
    (lambda: M.w2_gaussian([0, 0], np.eye(3), [0, 0], np.eye(2)), ValueError, "C1 must be"),
    (lambda: M.hellinger_gaussian([0, 0], np.eye(2), [0, 0], [1.0, -1.0]), ValueError,
     "C2 must be positive definite"),
])
def test_closed_form_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ------------------------------------------------------------------------------------------------
# (b) push-forward importance sampling
# ------------------------------------------------------------------------------------------------

def test_log_density_pushforward_affine_2d():
    a = torch.tensor([[1.2, 0.3], [-0.2, 0.8]], dtype=DT)
    b = torch.tensor([0.1, -0.2], dtype=DT)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    y, log_q = M.log_density_pushforward(lambda z: z @ a.T + b, x, mvn_lp([0.0, 0.0], torch.eye(2)))
    torch.testing.assert_close(y, x @ a.T + b)
    torch.testing.assert_close(log_q, mvn_lp(b, a @ a.T)(y), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("a, b, c, s", [(1.3, 0.2, 0.25, 1.25), (-0.7, 0.0, 0.3, 0.9)])
def test_tv_pushforward_affine_1d(a, b, c, s):
    x = torch.randn(100_000, 1, generator=torch.Generator().manual_seed(11), dtype=DT)
    est = M.tv_pushforward(lambda z: a * z + b, x, normal_lp(0, 1), normal_lp(c, s))
    exact = M.tv_gaussian_1d(b, abs(a), c, s)
    assert abs(est.value - exact) < 4 * est.stderr, (est, exact)
    assert est.stderr < 0.01 * max(exact, 0.05)


def test_tv_pushforward_affine_2d_same_cov():
    a = torch.tensor([[1.2, 0.3], [-0.2, 0.8]], dtype=DT)
    b, c = torch.tensor([0.1, -0.2], dtype=DT), torch.tensor([0.3, 0.1], dtype=DT)
    x = torch.randn(50_000, 2, generator=torch.Generator().manual_seed(12), dtype=DT)
    est = M.tv_pushforward(lambda z: z @ a.T + b, x, mvn_lp([0.0, 0.0], torch.eye(2)),
                           mvn_lp(c, a @ a.T), batch_size=20_000)
    exact = M.tv_gaussian_same_cov(b, c, a @ a.T)
    assert abs(est.value - exact) < 4 * est.stderr, (est, exact)
    # different covariances: no closed form, but the estimate must respect the bounds
    c2 = torch.tensor([[1.5, 0.2], [0.2, 0.7]], dtype=DT)
    est2 = M.tv_pushforward(lambda z: z @ a.T + b, x, mvn_lp([0.0, 0.0], torch.eye(2)),
                            mvn_lp(c, c2))
    lo, hi = M.tv_bounds_gaussian(b, a @ a.T, c, c2)
    assert lo <= est2.value <= hi


def test_tv_pushforward_matches_grid_for_nonlinear_map():
    x = torch.randn(100_000, 1, generator=torch.Generator().manual_seed(13), dtype=DT)
    est = M.tv_pushforward(monotone_map, x, normal_lp(0, 1), mixture_lp)
    grid = M.tv_density_1d_deterministic(monotone_map, normal_lp(0, 1), mixture_lp,
                                         torch.linspace(-10, 10, 1001, dtype=DT))
    assert abs(est.value - grid.value) < 4 * est.stderr, (est, grid)


@pytest.mark.parametrize("fn, match", [
    (lambda z: z[:, :1], "shape"),
    (lambda z: z.detach() * 2, "differentiabl"),
    (lambda z: z * 0.0, "singular"),
])
def test_tv_pushforward_bad_map(fn, match):
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    with pytest.raises(ValueError, match=match):
        M.tv_pushforward(fn, x, mvn_lp([0.0, 0.0], torch.eye(2)), mvn_lp([0.0, 0.0], torch.eye(2)))


def test_tv_pushforward_bad_input():
    lp = normal_lp(0, 1)
    with pytest.raises(ValueError, match="base_sample must have shape"):
        M.tv_pushforward(lambda z: z, torch.zeros(10, dtype=DT), lp, lp)
    with pytest.raises(ValueError, match="target_log_prob must return"):
        M.tv_pushforward(lambda z: z, torch.zeros(10, 1, dtype=DT), lp, lambda y: y)
    with pytest.raises(ValueError, match="base_sample must be finite"):
        M.tv_pushforward(lambda z: z, torch.full((10, 1), float("nan"), dtype=DT), lp, lp)


# ------------------------------------------------------------------------------------------------
# (c) density propagation on a 1-D grid
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, c, s", [(1.3, 0.2, 0.25, 1.25), (-0.7, 0.0, 0.3, 0.9),
                                        (1.0, 1e-5, 0.0, 1.0)])
def test_tv_density_1d_deterministic_affine_exact(a, b, c, s):
    grid = torch.linspace(-12, 12, 501, dtype=DT)
    res = M.tv_density_1d_deterministic(lambda z: a * z + b, normal_lp(0, 1), normal_lp(c, s), grid)
    exact = M.tv_gaussian_1d(b, abs(a), c, s)
    assert res.value == pytest.approx(exact, abs=1e-12)  # measured ~1e-17
    assert res.mass_error < 1e-12 and res.n_crossings in (1, 2)


def test_tv_density_1d_deterministic_self_convergence():
    coarse = M.tv_density_1d_deterministic(monotone_map, normal_lp(0, 1), mixture_lp,
                                           torch.linspace(-10, 10, 201, dtype=DT), quad_order=6)
    fine = M.tv_density_1d_deterministic(monotone_map, normal_lp(0, 1), mixture_lp,
                                         torch.linspace(-10, 10, 2001, dtype=DT))
    assert coarse.value == pytest.approx(fine.value, abs=1e-12)
    assert fine.n_crossings == 4


def test_tv_density_1d_deterministic_detects_unresolved_expansion():
    """T' reaches 17 near 0 and the target is narrow there: a coarse x-grid does not resolve
    p(T(x)) T'(x); the mass check must refuse it (measured |1 - mass| 8e-4, TV error 2e-5),
    and finer grids agree with each other and with importance sampling."""
    steep = lambda z: z + 2 * torch.tanh(8 * z)  # noqa: E731
    base, target = normal_lp(0, 1), normal_lp(0.3, 0.1)
    with pytest.raises(ValueError, match="does not resolve"):
        M.tv_density_1d_deterministic(steep, base, target, torch.linspace(-10, 10, 401, dtype=DT))
    mid = M.tv_density_1d_deterministic(steep, base, target, torch.linspace(-10, 10, 2001, dtype=DT))
    fine = M.tv_density_1d_deterministic(steep, base, target, torch.linspace(-10, 10, 8001, dtype=DT))
    assert mid.value == pytest.approx(fine.value, abs=1e-12)
    x = torch.randn(50_000, 1, generator=torch.Generator().manual_seed(14), dtype=DT)
    est = M.tv_pushforward(steep, x, base, target)
    assert abs(est.value - fine.value) < 4 * est.stderr


def test_tv_density_1d_deterministic_errors():
    lp = normal_lp(0, 1)
    with pytest.raises(ValueError, match="monotone"):
        M.tv_density_1d_deterministic(lambda z: z ** 3 - z, lp, lp, torch.linspace(-5, 5, 101,
                                                                                    dtype=DT))
    with pytest.raises(ValueError, match="does not cover the mass or does not resolve"):
        M.tv_density_1d_deterministic(lambda z: z, lp, lp, torch.linspace(-3, 3, 101, dtype=DT))
    with pytest.raises(ValueError, match="strictly increasing"):
        M.tv_density_1d_deterministic(lambda z: z, lp, lp, torch.tensor([0.0, 1.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="grid must be"):
        M.tv_density_1d_deterministic(lambda z: z, lp, lp, [0.0, 1.0, 2.0])


LINEAR_STEPS = [(0.9, 0.1, 0.3), (1.1, -0.05, 0.2), (0.95, 0.0, 0.25), (1.0, 0.1, 0.15)]


def _linear_chain(m, v, steps):
    """Transitions x -> N(a x + b, t^2) and the exact Gaussian end law (mean, variance)."""
    transitions = []
    for a, b, t in steps:
        transitions.append(lambda x, a=a, b=b, t=t: (a * x + b, torch.tensor(t, dtype=x.dtype)))
        m, v = a * m + b, a * a * v + t * t
    return transitions, m, v


def test_propagate_density_linear_chain_exact():
    transitions, m, v = _linear_chain(0.3, 1.2 ** 2, LINEAR_STEPS)
    grid = torch.linspace(-12, 12, 401, dtype=DT)
    q = M.propagate_density_1d(normal_lp(0.3, 1.2), transitions, grid)
    exact = torch.exp(normal_lp(m, math.sqrt(v))(grid[:, None]))
    assert float((q - exact).abs().max()) < 1e-13


@pytest.mark.parametrize("c, s", [(0.35, 1.3), (0.3, 1.25)])
def test_tv_density_1d_stochastic_linear_chain_exact(c, s):
    transitions, m, v = _linear_chain(0.3, 1.2 ** 2, LINEAR_STEPS)
    res = M.tv_density_1d_stochastic(normal_lp(0.3, 1.2), transitions, normal_lp(c, s),
                                     torch.linspace(-12, 12, 401, dtype=DT))
    exact = M.tv_gaussian_1d(m, math.sqrt(v), c, s)
    assert res.value == pytest.approx(exact, abs=1e-12)  # measured ~4e-16
    assert res.mass_error < 1e-12


def test_tv_density_1d_stochastic_no_transitions():
    res = M.tv_density_1d_stochastic(normal_lp(0, 1), [], normal_lp(0.5, 1.2),
                                     torch.linspace(-12, 12, 301, dtype=DT))
    assert res.value == pytest.approx(M.tv_gaussian_1d(0, 1, 0.5, 1.2), abs=1e-12)


def _nonlinear_step(x):
    return x + 0.2 * torch.tanh(x), 0.3 + 0.05 * torch.tanh(x) ** 2


def test_propagate_density_nonlinear_step_against_scipy_quad():
    grid = torch.linspace(-10, 10, 801, dtype=DT)
    q = M.propagate_density_1d(mixture_lp, [_nonlinear_step], grid)
    for i in range(150, 651, 50):
        y = float(grid[i])

        def integrand(x):
            xt = torch.tensor([[x]], dtype=DT)
            mean, std = _nonlinear_step(xt)
            return math.exp(float(mixture_lp(xt))) * stats.norm.pdf(y, float(mean), float(std))
        ref = integrate.quad(integrand, -12, 12, points=[-1.5, 1.0, y], limit=400,
                             epsabs=1e-14, epsrel=1e-12)[0]
        assert float(q[i]) == pytest.approx(ref, abs=1e-12)


def test_tv_density_1d_stochastic_nonlinear_cross_checks():
    steps = [_nonlinear_step, lambda x: (0.9 * x, torch.tensor(0.35, dtype=x.dtype))]
    target = normal_lp(0.1, 1.6)
    coarse = M.tv_density_1d_stochastic(mixture_lp, steps, target,
                                        torch.linspace(-12, 12, 241, dtype=DT), quad_order=6)
    fine = M.tv_density_1d_stochastic(mixture_lp, steps, target,
                                      torch.linspace(-12, 12, 961, dtype=DT))
    assert coarse.value == pytest.approx(fine.value, abs=1e-12)
    # Monte Carlo through the same chain, compared with the exact target by histogram
    g = torch.Generator().manual_seed(5)
    comp = torch.rand(200_000, generator=g, dtype=DT) < 0.3
    x = torch.where(comp, -1.5 + 0.5 * torch.randn(200_000, generator=g, dtype=DT),
                    1.0 + 0.8 * torch.randn(200_000, generator=g, dtype=DT))[:, None]
    for step in steps:
        mean, std = step(x)
        x = mean + std * torch.randn(x.shape, generator=g, dtype=DT)
    assert M.tv_histogram(x, target, bins=100) == pytest.approx(fine.value, abs=0.01)


def test_tv_density_1d_stochastic_errors():
    lp = normal_lp(0, 1)
    step = [lambda x: (x, torch.tensor(0.05, dtype=x.dtype))]
    with pytest.raises(ValueError, match="refine the grid"):
        M.tv_density_1d_stochastic(lp, step, lp, torch.linspace(-10, 10, 101, dtype=DT))
    with pytest.raises(ValueError, match="uniformly spaced"):
        M.tv_density_1d_stochastic(lp, [], lp, torch.tensor([-9.0, -1.0, 0.0, 9.0], dtype=DT))
    with pytest.raises(ValueError, match="std must be > 0"):
        M.tv_density_1d_stochastic(lp, [lambda x: (x, torch.zeros_like(x))], lp,
                                   torch.linspace(-10, 10, 101, dtype=DT))
    with pytest.raises(ValueError, match="mean must have shape"):
        M.tv_density_1d_stochastic(lp, [lambda x: (x[:, 0], 1.0)], lp,
                                   torch.linspace(-10, 10, 101, dtype=DT))
    with pytest.raises(ValueError, match="does not cover the mass or does not resolve"):
        M.tv_density_1d_stochastic(lp, [], lp, torch.linspace(-4, 4, 101, dtype=DT))


def test_propagate_keeps_dtype():
    grid = torch.linspace(-8, 8, 201, dtype=torch.float32)
    q = M.propagate_density_1d(normal_lp(0, 1), [lambda x: (x, torch.tensor(0.5))], grid)
    assert q.dtype == torch.float32 and q.device == grid.device
    exact = torch.exp(normal_lp(0, math.sqrt(1.25))(grid[:, None].double()))
    assert float((q.double() - exact).abs().max()) < 1e-6


# ------------------------------------------------------------------------------------------------
# (d) histogram and KDE fall-backs
# ------------------------------------------------------------------------------------------------

def test_histogram_and_kde_1d_against_exact():
    g = torch.Generator().manual_seed(21)
    y = 1.3 * torch.randn(100_000, 1, generator=g, dtype=DT) + 0.2
    z = 1.25 * torch.randn(100_000, 1, generator=g, dtype=DT) + 0.9
    exact = M.tv_gaussian_1d(0.2, 1.3, 0.9, 1.25)
    assert M.tv_histogram(y, normal_lp(0.9, 1.25), bins=100) == pytest.approx(exact, abs=0.01)
    assert M.tv_histogram(y, z, bins=100) == pytest.approx(exact, abs=0.02)
    assert M.tv_histogram(y[:, 0], z[:, 0], bins=100) == M.tv_histogram(y, z, bins=100)
    assert M.tv_kde(y, normal_lp(0.9, 1.25)) == pytest.approx(exact, abs=0.01)
    assert M.tv_kde(y, z) == pytest.approx(exact, abs=0.02)


def test_histogram_and_kde_2d_against_exact():
    g = torch.Generator().manual_seed(22)
    a = torch.tensor([[1.2, 0.3], [-0.2, 0.8]], dtype=DT)
    b, c = torch.tensor([0.1, -0.2], dtype=DT), torch.tensor([0.3, 0.1], dtype=DT)
    y = torch.randn(60_000, 2, generator=g, dtype=DT) @ a.T + b
    z = torch.randn(60_000, 2, generator=g, dtype=DT) @ a.T + c
    exact = M.tv_gaussian_same_cov(b, c, a @ a.T)
    for fn, kw in ((M.tv_histogram, {"bins": 30}), (M.tv_kde, {})):
        assert fn(y, mvn_lp(c, a @ a.T), **kw) == pytest.approx(exact, abs=0.01)
        assert fn(y, z, **kw) == pytest.approx(exact, abs=0.02)


def test_histogram_range_accounts_for_outside_mass():
    y = torch.randn(10_000, 1, generator=torch.Generator().manual_seed(0), dtype=DT)
    # all samples inside [-10, 10] but the target sits far outside the range: TV ~ 1
    assert M.tv_histogram(y, normal_lp(40.0, 1.0), range=(-10.0, 10.0)) == pytest.approx(1.0,
                                                                                       abs=1e-9)


@pytest.mark.parametrize("call, err, match", [
    (lambda: M.tv_histogram(torch.zeros(10, 3, dtype=DT), torch.zeros(10, 3, dtype=DT)),
     ValueError, "1-D or 2-D"),
    (lambda: M.tv_histogram(torch.zeros(10, 1, dtype=DT), "q"), TypeError, "q must be"),
    (lambda: M.tv_histogram(torch.randn(10, 1, dtype=DT), torch.randn(10, 2, dtype=DT)),
     ValueError, "dimension"),
    (lambda: M.tv_histogram(torch.randn(10, 1, dtype=DT), torch.randn(10, 1, dtype=DT), bins=0),
     ValueError, "bins"),
    (lambda: M.tv_histogram(torch.randn(10, 1, dtype=DT), torch.randn(10, 1, dtype=DT),
                            range=(1.0, 0.0)), ValueError, "high > low"),
    (lambda: M.tv_kde(torch.zeros(10, 1, dtype=DT), torch.randn(10, 1, dtype=DT)), ValueError,
     "degenerate"),
    (lambda: M.tv_kde(torch.randn(10, 1, dtype=DT), torch.randn(10, 1, dtype=DT),
                      bandwidth=-1.0), ValueError, "bandwidth"),
])
def test_sample_based_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()
