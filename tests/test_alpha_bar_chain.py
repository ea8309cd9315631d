"""The seed-002 chain samplers compiled into StepCoefficients agree with the VP updates.

Every compiled step is applied by hand in numpy and compared with the same update computed
directly in VP variables (Y = sqrt(abar) x, s_t(Y) = (sqrt(abar_t) D - Y)/(1 - abar_t)); local
error slopes are measured against the exact one-step solution of the Gaussian PF-ODE.
"""
import numpy as np
import pytest

from samplerlab.theory.alpha_bar_chain import lookback_sigmas
from samplerlab.theory.step_form import step_coefficients

M_DATA, V_DATA = 0.3, 0.5          # 1-D Gaussian data N(m, v) in VE units


def gaussian_denoiser(x, sigma):
    """Exact denoiser of N(m, v) data: D(x, sigma) = m + v/(v + sigma^2) (x - m)."""
    return M_DATA + V_DATA / (V_DATA + sigma ** 2) * (x - M_DATA)


def nonlinear_denoiser(x, sigma):
    """Any smooth map will do for the algebraic equivalence; this one is far from linear."""
    return np.tanh(1.7 * x) / (1.0 + sigma) + 0.2 * np.sin(sigma) * x ** 2


def exact_flow(x, s_from, s_to):
    """Exact PF-ODE map of N(m, v) data: x(s') = m + sqrt((v + s'^2)/(v + s^2)) (x - m)."""
    return M_DATA + np.sqrt((V_DATA + s_to ** 2) / (V_DATA + s_from ** 2)) * (x - M_DATA)


def apply_step(c, x, denoiser, z_pre=None, z_post=None):
    """Run StepCoefficients row-wise: x [M, B], coefficient rows broadcast over B."""
    col = lambda a: a[:, None]
    xp = x + (0 if z_pre is None else col(c.pre_noise) * z_pre)
    outs = []
    for j in range(c.stages):
        xj = col(c.stage_x[:, j]) * xp + sum(col(c.stage_w[:, j, k]) * outs[k] for k in range(j))
        outs.append(denoiser(xj, col(c.stage_sigma[:, j])))
    new = col(c.out_x) * xp + sum(col(c.out_w[:, k]) * outs[k] for k in range(c.stages))
    return new + (0 if z_post is None else col(c.post_noise) * z_post)


# ---- the updates written directly in VP variables (independent of the module) -------------
def abar(sigma):
    return 1.0 / (1.0 + sigma ** 2)


def score(y, sigma, denoiser):
    a = abar(sigma)
    return (np.sqrt(a) * denoiser(y / np.sqrt(a), sigma) - y) / (sigma ** 2 * a)   # 1-a = s^2 a


def vp_li_ddim(y, sf, st, den):
    al = abar(sf) / abar(st)
    return (y + (1 - al) / 2 * score(y, sf, den)) / np.sqrt(al)


def vp_li_ddpm(y, sf, st, den, z):
    al = abar(sf) / abar(st)
    return (y + (1 - al) * score(y, sf, den) + np.sqrt(1 - al) * z) / np.sqrt(al)


def vp_li_accel_ode(y, sf, st, sb, den):
    al = abar(sf) / abar(st)
    al_back = abar(sb) / abar(sf)
    s = score(y, sf, den)
    y_minus = np.sqrt(al_back) * (y - (1 - al_back) / 2 * s)
    s_back = score(y_minus, sb, den)
    return (y + (1 - al) / 2 * s
            + (1 - al) ** 2 / (4 * (1 - al_back)) * (s - np.sqrt(al_back) * s_back)) / np.sqrt(al)


def vp_li_accel_sde(y, sf, st, den, z, z_plus):
    al = abar(sf) / abar(st)
    y_plus = y + np.sqrt((1 - al) / 2) * z
    return (y_plus + (1 - al) * score(y_plus, sf, den)) / np.sqrt(al) + np.sqrt((1 - al) / 2) * z_plus


GRID = np.geomspace(20.0, 0.05, 13)


@pytest.fixture
def batch():
    rng = np.random.default_rng(1234)
    sf, st = GRID[:-1, None], GRID[1:, None]
    x = M_DATA + rng.standard_normal((12, 7)) * np.sqrt(V_DATA + sf ** 2)
    return sf, st, x, rng.standard_normal((12, 7)), rng.standard_normal((12, 7))


@pytest.mark.parametrize("den", [gaussian_denoiser, nonlinear_denoiser])
def test_deterministic_steps_match_vp_updates(batch, den):
    sf, st, x, _, _ = batch
    y = np.sqrt(abar(sf)) * x
    c = step_coefficients("li_ddim", GRID[:-1], GRID[1:])
    np.testing.assert_allclose(apply_step(c, x, den), vp_li_ddim(y, sf, st, den) / np.sqrt(abar(st)),
                               rtol=1e-12, atol=1e-12)
    sb = lookback_sigmas(GRID)[:, None]
    c = step_coefficients("li_accel_ode", GRID[:-1], GRID[1:], sigma_back=sb[:, 0])
    assert c.stages == 2
    np.testing.assert_array_equal(c.stage_sigma, np.stack([GRID[:-1], sb[:, 0]], axis=1))
    np.testing.assert_allclose(apply_step(c, x, den),
                               vp_li_accel_ode(y, sf, st, sb, den) / np.sqrt(abar(st)),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("den", [gaussian_denoiser, nonlinear_denoiser])
def test_stochastic_steps_match_vp_updates(batch, den):
    sf, st, x, z1, z2 = batch
    y = np.sqrt(abar(sf)) * x
    c = step_coefficients("li_ddpm", GRID[:-1], GRID[1:])
    np.testing.assert_array_equal(c.pre_noise, 0.0)
    np.testing.assert_allclose(apply_step(c, x, den, z_post=z1),
                               vp_li_ddpm(y, sf, st, den, z1) / np.sqrt(abar(st)),
                               rtol=1e-12, atol=1e-12)
    c = step_coefficients("li_accel_sde", GRID[:-1], GRID[1:])
    np.testing.assert_allclose(apply_step(c, x, den, z_pre=z1, z_post=z2),
                               vp_li_accel_sde(y, sf, st, den, z1, z2) / np.sqrt(abar(st)),
                               rtol=1e-12, atol=1e-12)


def test_large_and_small_sigma_rows_are_finite_and_consistent():
    grid = np.array([80.0, 60.0, 1.0, 0.01, 0.002])
    for name, kw in [("li_ddim", {}), ("li_ddpm", {}), ("li_accel_sde", {}),
                     ("li_accel_ode", {"sigma_back": lookback_sigmas(grid)})]:
        c = step_coefficients(name, grid[:-1], grid[1:], **kw)
        # a constant denoiser D = x0 reproduces the data point: out_x + sum(out_w) = 1 at x = x0
        np.testing.assert_allclose(c.out_x + c.out_w.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_lookback_sigmas_rule():
    grid = np.array([10.0, 5.0, 2.0, 1.0, 0.0])
    np.testing.assert_array_equal(lookback_sigmas(grid), [20.0, 10.0, 5.0, 2.0])


def _slope(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


def test_local_error_orders_against_exact_gaussian_flow():
    """One step from an exact trajectory point: li_ddim error O(h^2), li_accel_ode O(h^3).

    The look-back step is 1.4 times the step (as in the notes' check); with equal steps and this
    particular (m, v, sigma) the h^3 coefficient of li_accel_ode happens to vanish (slope 4).
    """
    s0, x0 = 1.0, M_DATA + 1.3 * np.sqrt(V_DATA + 1.0)
    hs = 0.2 * 2.0 ** -np.arange(8)
    errs = {"li_ddim": [], "li_accel_ode": []}
    for h in hs:
        sf, st, sb = np.array([s0]), np.array([s0 * np.exp(-h)]), np.array([s0 * np.exp(1.4 * h)])
        exact = exact_flow(x0, sf, st)
        for name in errs:
            kw = {"sigma_back": sb} if name == "li_accel_ode" else {}
            c = step_coefficients(name, sf, st, **kw)
            errs[name].append(abs(apply_step(c, np.array([[x0]]), gaussian_denoiser)[0, 0] - exact[0]))
    ddim, accel = _slope(errs["li_ddim"]), _slope(errs["li_accel_ode"])
    assert np.all(np.abs(ddim[-3:] - 2.0) < 0.05), ddim
    assert np.all(np.abs(accel[-3:] - 3.0) < 0.05), accel


@pytest.mark.parametrize("name", ["li_ddim", "li_ddpm", "li_accel_sde", "li_accel_ode"])
def test_rejects_increasing_steps(name):
    kw = {"sigma_back": np.array([3.0])} if name == "li_accel_ode" else {}
    with pytest.raises(ValueError, match="sigma_to < sigma_from"):
        step_coefficients(name, np.array([1.0]), np.array([1.5]), **kw)


def test_accel_ode_param_errors():
    sf, st = np.array([2.0, 1.0]), np.array([1.0, 0.5])
    with pytest.raises(ValueError, match="sigma_back"):
        step_coefficients("li_accel_ode", sf, st)
    with pytest.raises(ValueError, match=r"sigma_back must be a 1-D array of shape \[2\]"):
        step_coefficients("li_accel_ode", sf, st, sigma_back=np.array([3.0]))
    with pytest.raises(ValueError, match="sigma_back must be > sigma_from"):
        step_coefficients("li_accel_ode", sf, st, sigma_back=np.array([3.0, 0.9]))
    with pytest.raises(ValueError, match="finite"):
        step_coefficients("li_accel_ode", sf, st, sigma_back=np.array([3.0, np.nan]))


def test_lookback_sigmas_bad_input():
    with pytest.raises(ValueError, match="strictly decreasing"):
        lookback_sigmas([1.0, 2.0, 0.5])
    with pytest.raises(ValueError, match="at least 2"):
        lookback_sigmas([1.0])
    with pytest.raises(ValueError, match=r"sigmas\[1\] must be > 0"):
        lookback_sigmas([1.0, 0.0])
