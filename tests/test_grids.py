"""Tests of samplerlab.solvers.grids: shape, monotonicity, endpoints and spacing of every grid."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from samplerlab.solvers import grids as G
from samplerlab.solvers.schedules import CosineVPSchedule, DiscreteVPSchedule, LinearVPSchedule

HYP = settings(max_examples=40, deadline=None)
DTYPES = [torch.float32, torch.float64]


def uniform(values: torch.Tensor, rtol: float) -> bool:
    """True if ``values`` is an arithmetic progression up to ``rtol`` of its mean spacing."""
    d = torch.diff(values.double())
    return bool(((d - d.mean()).abs() <= rtol * d.mean().abs()).all())


def check_grid(g, n, dtype, append_zero):
    assert g.dtype == dtype and g.ndim == 1 and g.numel() == n + 1
    assert (g[1:] < g[:-1]).all()
    assert torch.isfinite(g).all()
    if append_zero:
        assert g[-1] == 0 and (g[:-1] > 0).all()
    else:
        assert (g > 0).all()


# ---------------------------------------------------------------------------------------------
# sigma-range families: karras, lambda_uniform, sigma_uniform
# ---------------------------------------------------------------------------------------------

FAMILIES = {
    # name: (function, variable in which the grid is uniform)
    "karras": (lambda n, lo, hi, **kw: G.karras(n, lo, hi, rho=7.0, **kw), lambda s: s ** (1 / 7)),
    "karras_rho3": (lambda n, lo, hi, **kw: G.karras(n, lo, hi, rho=3.0, **kw), lambda s: s ** (1 / 3)),
    "lambda_uniform": (G.lambda_uniform, lambda s: -torch.log(s)),
    "sigma_uniform": (G.sigma_uniform, lambda s: s),
}


@HYP
@given(st.sampled_from(sorted(FAMILIES)), st.integers(1, 200), st.floats(-3, 0), st.floats(0.5, 3),
       st.sampled_from(DTYPES), st.booleans())
def test_sigma_range_families(name, n, log_lo, log_hi, dtype, append_zero):
    fn, var = FAMILIES[name]
    lo, hi = 10.0 ** log_lo, 10.0 ** log_hi
    if name == "sigma_uniform" and dtype == torch.float32 and n > 50:
        n = 50
    g = fn(n, lo, hi, append_zero=append_zero, dtype=dtype)
    check_grid(g, n, dtype, append_zero)
    pos = g[:-1] if append_zero else g
    assert pos[0].item() == pytest.approx(hi, rel=1e-7 if dtype == torch.float32 else 0)
    if pos.numel() >= 2:
        assert pos[-1].item() == pytest.approx(lo, rel=1e-7 if dtype == torch.float32 else 0)
    if pos.numel() >= 3:
        # spacing: uniform in the family's variable (computed from the float64 grid)
        g64 = fn(n, lo, hi, append_zero=append_zero, dtype=torch.float64)
        pos64 = g64[:-1] if append_zero else g64
        assert uniform(var(pos64), 1e-9)


def test_karras_defaults_are_edm():
    g = G.karras(18)
    assert g[0] == 80.0 and g[-1] == 0.002 and g.numel() == 19
    # EDM eq. 5 written out directly
    i = torch.arange(19, dtype=torch.float64)
    ref = (80 ** (1 / 7) + i / 18 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert torch.allclose(g, ref, rtol=1e-14, atol=0)


def test_append_zero_is_the_shorter_grid_then_zero():
    for fn in (G.karras, G.lambda_uniform, G.sigma_uniform, G.vp_time_uniform, G.time_quadratic):
        z = fn(10, append_zero=True)
        assert z[-1] == 0
        assert torch.equal(z[:-1], fn(9))
    assert torch.equal(G.karras(1, append_zero=True), torch.tensor([80.0, 0.0], dtype=torch.float64))


def test_lambda_uniform_has_equal_steps_h():
    g = G.lambda_uniform(12, 0.01, 50.0)
    h = torch.log(g[:-1] / g[1:])
    assert torch.allclose(h, torch.full_like(h, math.log(5000) / 12), rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# VP-time families
# ---------------------------------------------------------------------------------------------

@HYP
@given(st.sampled_from(["linear", "cosine"]), st.sampled_from(["uniform", "quadratic"]),
       st.integers(1, 200), st.sampled_from(DTYPES), st.booleans())
def test_vp_time_grids(schedule, kind, n, dtype, append_zero):
    fn = G.vp_time_uniform if kind == "uniform" else G.time_quadratic
    g = fn(n, schedule, append_zero=append_zero, dtype=dtype)
    check_grid(g, n, dtype, append_zero)
    sched = LinearVPSchedule() if schedule == "linear" else CosineVPSchedule()
    g64 = fn(n, schedule, append_zero=append_zero)
    pos = g64[:-1] if append_zero else g64
    t = sched.t_from_sigma(pos)
    assert t[0].item() == pytest.approx(sched.t_end, rel=1e-13)
    if pos.numel() >= 2:
        assert t[-1].item() == pytest.approx(1e-3, rel=1e-12)
    if pos.numel() >= 3:
        assert uniform(t if kind == "uniform" else torch.sqrt(t), 1e-9)


def test_vp_time_grid_endpoints_and_options():
    g = G.vp_time_uniform(10, "linear", t_min=0.01, t_max=0.5)
    lin = LinearVPSchedule()
    assert g[0].item() == pytest.approx(lin.sigma(0.5), rel=1e-15)
    assert g[-1].item() == pytest.approx(lin.sigma(0.01), rel=1e-15)
    # any VPSchedule instance, e.g. a different beta range
    g2 = G.vp_time_uniform(10, LinearVPSchedule(0.05, 10.0))
    assert uniform(LinearVPSchedule(0.05, 10.0).t_from_sigma(g2), 1e-9)
    # DDIM "quad" skip in discrete time: sqrt of the fractional index is uniform
    table = DiscreteVPSchedule(G.ddpm_linear_alphas_cumprod())
    q = G.time_quadratic(10, table, t_min=0.0, t_max=0.8 * 999)
    assert uniform(torch.sqrt(table.t_from_sigma(q)), 1e-9)
    assert q[-1] == table.sigmas[0]


# ---------------------------------------------------------------------------------------------
# discrete tables
# ---------------------------------------------------------------------------------------------

def test_ddpm_tables_match_direct_cumprod():
    b = np.linspace(1e-4, 0.02, 1000)
    assert np.allclose(G.ddpm_linear_alphas_cumprod().numpy(), np.cumprod(1 - b), rtol=1e-13, atol=0)
    b = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    assert np.allclose(G.ldm_scaled_linear_alphas_cumprod().numpy(), np.cumprod(1 - b),
                       rtol=1e-13, atol=0)
    t32 = G.ddpm_linear_alphas_cumprod(dtype=torch.float32)
    assert t32.dtype == torch.float32 and t32.numel() == 1000


def test_discrete_timesteps_match_diffusers_spacings():
    # 10 of 1000 steps, the three rows of Lin et al. 2024 (arXiv 2305.08891), Table 2
    lin = G.discrete_timesteps(1000, 10, "linspace").tolist()
    assert lin == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert G.discrete_timesteps(1000, 10, "leading").tolist() == list(range(900, -1, -100))
    assert G.discrete_timesteps(1000, 10, "leading", 1).tolist() == list(range(901, 0, -100))
    assert G.discrete_timesteps(1000, 10, "trailing").tolist() == list(range(999, 98, -100))
    assert G.discrete_timesteps(1000, 1000, "trailing").tolist() == list(range(999, -1, -1))


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("append_zero", [False, True])
def test_discrete_grid(spacing, dtype, append_zero):
    ab = G.ldm_scaled_linear_alphas_cumprod()
    n = 25
    g = G.discrete_grid(ab, n, spacing, append_zero=append_zero, dtype=dtype)
    check_grid(g, n, dtype, append_zero)
    ts = G.discrete_timesteps(1000, n if append_zero else n + 1, spacing)
    ref = torch.sqrt((1 - ab[ts]) / ab[ts])
    pos = g[:-1] if append_zero else g
    assert torch.allclose(pos.double(), ref, rtol=1e-6 if dtype == torch.float32 else 1e-15, atol=0)


def test_discrete_errors():
    ab = G.ddpm_linear_alphas_cumprod()
    with pytest.raises(ValueError, match="spacing"):
        G.discrete_grid(ab, 10, "uniform")
    with pytest.raises(ValueError, match="count"):
        G.discrete_timesteps(10, 11, "leading")
    with pytest.raises(ValueError, match="distinct"):
        G.discrete_timesteps(10, 20, "linspace")
    with pytest.raises(ValueError, match="steps_offset"):
        G.discrete_timesteps(1000, 10, "trailing", 1)
    with pytest.raises(ValueError, match="decreasing"):
        G.discrete_grid([0.5, 0.6, 0.4], 1)
    with pytest.raises(ValueError, match="beta_end"):
        G.ddpm_linear_alphas_cumprod(1000, 1e-4, 1.5)


# ---------------------------------------------------------------------------------------------
# Li et al. schedule (seeds 001/002)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T,c0,c1", [(50, 2.0, 6.0), (200, 1.0, 3.0), (1000, 2.0, 6.0),
                                     (1000, 1.0, 3.0), (10_000, 2.0, 6.0), (100_000, 2.0, 6.0)])
def test_li_schedule_properties(T, c0, c1):
    sch = G.li_schedule(T, c0, c1)
    r = c1 * math.log(T) / T
    b, ab = sch.betas, sch.alphas_cumprod
    assert b.numel() == T and sch.sigmas.numel() == T
    # the defining formula, written out
    t = torch.arange(1, T, dtype=torch.float64)
    ref = r * torch.clamp(T ** (-c0) * (1 + r) ** t, max=1.0)
    assert b[0].item() == pytest.approx(T ** (-c0), rel=1e-15)
    assert torch.allclose(b[1:], ref, rtol=1e-12, atol=0)
    assert torch.allclose(sch.alphas, 1 - b, rtol=1e-15, atol=0)
    # a product of T factors: both ways of forming it round at most ~T ulps
    assert torch.allclose(ab, torch.cumprod(1 - b, 0), rtol=8 * T * 2.2e-16, atol=0)
    assert sch.alpha_T_plus_1 == pytest.approx(1 - r * min(T ** (-c0) * (1 + r) ** T, 1.0), rel=1e-14)
    # steps non-decreasing from t = 2 on, ratio in [1, 1 + r], capped at r
    ratio = b[2:] / b[1:-1]
    assert (ratio >= 1 - 1e-12).all() and (ratio <= (1 + r) * (1 + 1e-12)).all()
    assert (b[1:] <= r * (1 + 1e-15)).all()
    # steps small relative to the noise level: (1 - alpha_t)/(1 - alpha_bar_{t-1}) <= 4 c1 log T/T
    assert (b[1:] / (1 - ab[:-1]) <= 4 * r).all()
    # alpha_bar_T = T^-(c1 - c0) e^-O(1): -log alpha_bar_T - (c1 - c0) log T -> 1 (the growth
    # phase sums to ~1); corrections O(c1^2 log^2 T / T)
    excess = -math.log(ab[-1].item()) - (c1 - c0) * math.log(T)
    assert abs(excess - 1) <= 0.25 + (c1 ** 2 + c0 * c1) * math.log(T) ** 2 / T
    # grid: decreasing sigmas from t = T to t = 1; ends at alpha_bar_1 = 1 - T^-c0
    s = sch.sigmas
    assert (s[1:] < s[:-1]).all()
    assert s[-1].item() == pytest.approx(math.sqrt(T ** (-c0) / (1 - T ** (-c0))), rel=1e-13)
    assert s[0].item() == pytest.approx(math.sqrt((1 - ab[-1].item()) / ab[-1].item()), rel=1e-12)


def test_li_excess_converges_to_one():
    ex = [-math.log(G.li_schedule(T, 2.0, 6.0).alphas_cumprod[-1].item()) - 4 * math.log(T)
          for T in (1000, 10_000, 100_000)]
    assert abs(ex[2] - 1) < abs(ex[1] - 1) < abs(ex[0] - 1)
    assert abs(ex[2] - 1) < 0.02


@pytest.mark.parametrize("dtype", DTYPES)
def test_li_grid(dtype):
    g = G.li_grid(30, dtype=dtype)
    check_grid(g, 30, dtype, False)
    assert torch.allclose(g.double(), G.li_schedule(31, 1.0, 3.0).sigmas,
                          rtol=1e-6 if dtype == torch.float32 else 0, atol=0)
    z = G.li_grid(30, append_zero=True, dtype=dtype)
    check_grid(z, 30, dtype, True)
    assert torch.allclose(z[:-1].double(), G.li_schedule(30, 1.0, 3.0).sigmas,
                          rtol=1e-6 if dtype == torch.float32 else 0, atol=0)


def test_li_errors():
    with pytest.raises(ValueError, match="c1"):
        G.li_schedule(10, 2.0, 6.0)     # 6 log 10 / 10 > 1
    with pytest.raises(ValueError, match="T"):
        G.li_schedule(1, 1.0, 0.1)
    with pytest.raises(ValueError, match="c0"):
        G.li_schedule(100, -1.0, 3.0)
    with pytest.raises(TypeError, match="T"):
        G.li_schedule(100.0, 1.0, 3.0)


# ---------------------------------------------------------------------------------------------
# registry and bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(G.GRIDS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_make_grid_every_name(name, dtype):
    g = G.make_grid(name, 12, dtype=dtype)
    check_grid(g, 12, dtype, False)
    z = G.make_grid(name, 12, dtype=dtype, append_zero=True)
    check_grid(z, 12, dtype, True)


def test_make_grid_unknown_name_lists_known():
    with pytest.raises(ValueError, match="karras"):
        G.make_grid("exponential", 10)


@pytest.mark.parametrize("call,exc,word", [
    (lambda: G.karras(0), ValueError, "^n must"),
    (lambda: G.karras(2.5), TypeError, "^n must"),
    (lambda: G.karras(True), TypeError, "^n must"),
    (lambda: G.karras(10, 1.0, 0.5), ValueError, "sigma_max"),
    (lambda: G.karras(10, -1.0, 5.0), ValueError, "sigma_min"),
    (lambda: G.karras(10, 0.1, float("inf")), ValueError, "sigma_max"),
    (lambda: G.karras(10, rho=0.0), ValueError, "rho"),
    (lambda: G.lambda_uniform(10, float("nan"), 1.0), ValueError, "sigma_min"),
    (lambda: G.karras(10, dtype=torch.int64), TypeError, "dtype"),
    (lambda: G.karras(10, append_zero=1), TypeError, "append_zero"),
    (lambda: G.vp_time_uniform(10, "cosine", t_max=1.0), ValueError, "t_max"),
    (lambda: G.vp_time_uniform(10, "linear", t_min=0.0), ValueError, "t_min"),
    (lambda: G.vp_time_uniform(10, "linear", t_min=0.5, t_max=0.4), ValueError, "t_max"),
    (lambda: G.time_quadratic(10, "sqrt"), ValueError, "schedule"),
    (lambda: G.sigma_uniform(100_000, 1.0, 1.001, dtype=torch.float32), ValueError,
     "too many steps"),
    (lambda: G.li_grid(1, append_zero=True), ValueError, "^n must"),
])
def test_bad_input(call, exc, word):
    with pytest.raises(exc, match=word):
        call()
