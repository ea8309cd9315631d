"""Tests of samplerlab.solvers.schedules: exact parameterisation conversions and VP schedules."""
import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from samplerlab.solvers import schedules as S
from samplerlab.solvers.grids import ddpm_linear_alphas_cumprod, ldm_scaled_linear_alphas_cumprod

EPS64 = torch.finfo(torch.float64).eps
HYP = settings(max_examples=60, deadline=None)

log_sigmas = st.floats(min_value=-4.0, max_value=3.0, allow_nan=False)


def rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).abs() / b.abs()).max().item()


def sig_batch(log10s):
    return torch.tensor([10.0 ** v for v in log10s], dtype=torch.float64)


sigma_lists = st.lists(log_sigmas, min_size=1, max_size=8)


# ---------------------------------------------------------------------------------------------
# noise-level conversions
# ---------------------------------------------------------------------------------------------

@HYP
@given(sigma_lists)
def test_sigma_lambda_vp_log_alpha_bar_round_trips(log10s):
    s = sig_batch(log10s)
    assert rel(S.sigma_from_lambda(S.lambda_from_sigma(s)), s) < 1e-12
    alpha, sigma_vp = S.vp_from_sigma(s)
    assert rel(S.sigma_from_vp(alpha, sigma_vp), s) < 1e-12
    assert (alpha ** 2 + sigma_vp ** 2 - 1).abs().max() < 4 * EPS64
    assert rel(S.sigma_from_log_alpha_bar(S.log_alpha_bar_from_sigma(s)), s) < 1e-12
    assert torch.equal(S.lambda_from_sigma(s), -torch.log(s))


@HYP
@given(sigma_lists)
def test_round_trips_through_alpha_bar_and_alpha_within_their_conditioning(log10s):
    # alpha_bar = 1/(1+sigma^2) stored in float64 has lost 1 - alpha_bar to relative eps/sigma^2,
    # so the round trip can only be as good as eps * (1 + 1/sigma^2); below 1e-12 once sigma >= 0.1.
    s = sig_batch(log10s)
    bound = 4 * EPS64 * (1 + 1 / s ** 2)
    err = ((S.sigma_from_alpha_bar(S.alpha_bar_from_sigma(s)) - s).abs() / s)
    assert (err <= bound).all()
    err = ((S.sigma_from_alpha(S.alpha_from_sigma(s)) - s).abs() / s)
    assert (err <= bound).all()
    lam_err = (S.lambda_from_alpha_bar(S.alpha_bar_from_sigma(s)) + torch.log(s)).abs()
    assert (lam_err <= bound + 4 * EPS64 * torch.log(s).abs()).all()
    big = s >= 0.1
    if big.any():
        assert rel(S.sigma_from_alpha_bar(S.alpha_bar_from_sigma(s[big])), s[big]) < 1e-12


@pytest.mark.parametrize("sigma", [1e-4, 3e-3, 0.5, 1.0, 7.0, 80.0, 1e3, 1e4])
def test_noise_level_conversions_match_mpmath(sigma):
    mpmath.mp.dps = 40
    sm = mpmath.mpf(sigma)
    ref = {
        "alpha": 1 / mpmath.sqrt(1 + sm ** 2),
        "sigma_vp": sm / mpmath.sqrt(1 + sm ** 2),
        "alpha_bar": 1 / (1 + sm ** 2),
        "log_alpha_bar": -mpmath.log(1 + sm ** 2),
    }
    got = {
        "alpha": S.alpha_from_sigma(sigma), "sigma_vp": S.sigma_vp_from_sigma(sigma),
        "alpha_bar": S.alpha_bar_from_sigma(sigma), "log_alpha_bar": S.log_alpha_bar_from_sigma(sigma),
    }
    for key, value in got.items():
        assert isinstance(value, float)
        assert abs(value - float(ref[key])) <= 4 * EPS64 * abs(float(ref[key])), key
    # sigma from alpha_bar given exactly as log: full accuracy even where alpha_bar ~ 1
    assert abs(S.sigma_from_log_alpha_bar(float(ref["log_alpha_bar"])) - sigma) <= 4 * EPS64 * sigma


def test_input_types_are_kept():
    s32 = torch.tensor([0.1, 2.0], dtype=torch.float32)
    assert S.alpha_from_sigma(s32).dtype == torch.float32
    assert S.lambda_from_sigma(s32).dtype == torch.float32
    out = S.sigma_from_alpha_bar(np.array([0.5, 0.2]))
    assert isinstance(out, np.ndarray) and np.allclose(out, [1.0, 2.0], rtol=1e-15)
    assert isinstance(S.lambda_from_sigma(2.0), float)
    assert isinstance(S.lambda_from_sigma(np.float64(2.0)), np.floating)
    assert S.alpha_from_sigma(0.0) == 1.0  # sigma = 0 is a valid noise level


@pytest.mark.parametrize("fn,arg,word", [
    (S.lambda_from_sigma, 0.0, "sigma"),
    (S.lambda_from_sigma, -1.0, "sigma"),
    (S.alpha_from_sigma, float("nan"), "sigma"),
    (S.sigma_from_alpha_bar, 1.5, "alpha_bar"),
    (S.sigma_from_alpha_bar, 0.0, "alpha_bar"),
    (S.lambda_from_alpha_bar, 1.0, "alpha_bar"),
    (S.sigma_from_alpha, 0.0, "alpha"),
    (S.sigma_from_log_alpha_bar, 0.1, "log_alpha_bar"),
    (S.sigma_from_lambda, 1e4, "lam"),
    (S.sigma_from_lambda, float("inf"), "lam"),
])
def test_noise_level_bad_values(fn, arg, word):
    with pytest.raises(ValueError, match=word):
        fn(arg)


def test_noise_level_bad_types():
    with pytest.raises(TypeError, match="sigma"):
        S.alpha_from_sigma(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="sigma"):
        S.alpha_from_sigma("1.0")
    with pytest.raises(ValueError, match="sigma_vp"):
        S.sigma_from_vp(0.5, -0.1)


# ---------------------------------------------------------------------------------------------
# states and predictions
# ---------------------------------------------------------------------------------------------

def _batch(log10s, seed, d=3):
    g = torch.Generator().manual_seed(seed)
    s = sig_batch(log10s)
    x0 = torch.randn(len(log10s), d, dtype=torch.float64, generator=g)
    eps = torch.randn(len(log10s), d, dtype=torch.float64, generator=g)
    return s, x0, eps


@HYP
@given(sigma_lists, st.integers(0, 2 ** 31 - 1))
def test_state_conversions(log10s, seed):
    s, x0, eps = _batch(log10s, seed)
    alpha, sigma_vp = S.vp_from_sigma(s)
    x = x0 + s[:, None] * eps
    x_vp = alpha[:, None] * x0 + sigma_vp[:, None] * eps
    scale = x.abs().max(dim=1).values[:, None] + 1
    assert ((S.vp_state_from_ve(x, s) - x_vp).abs() / (alpha[:, None] * scale)).max() < 1e-14
    assert ((S.ve_state_from_vp(x_vp, s) - x).abs() / scale).max() < 1e-14
    back = S.ve_state_from_vp(S.vp_state_from_ve(x, s), s)
    assert ((back - x).abs() / scale).max() < 1e-14


@HYP
@given(sigma_lists, st.integers(0, 2 ** 31 - 1))
def test_prediction_conversions(log10s, seed):
    """Build x, eps, score, v from (x0, eps) by their definitions and convert every way."""
    s, x0, eps = _batch(log10s, seed)
    sc = s[:, None]
    alpha, sigma_vp = (t[:, None] for t in S.vp_from_sigma(s))
    x = x0 + sc * eps
    score = -eps / sc
    v = alpha * eps - sigma_vp * x0                     # Salimans & Ho, VP variables
    # relative to the size of the terms that the formulas combine
    size_x = (x0.abs() + sc * eps.abs()).max()
    assert ((S.data_from_eps(x, eps, s) - x0).abs()).max() < 8 * EPS64 * size_x
    assert ((S.eps_from_data(x, x0, s) - eps).abs()).max() < 8 * EPS64 * size_x / s.min()
    assert ((S.data_from_score(x, score, s) - x0).abs()).max() < 8 * EPS64 * size_x
    assert ((S.score_from_data(x, x0, s) - score).abs() * sc).max() < 8 * EPS64 * size_x / s.min()
    assert ((S.score_from_eps(eps, s) - score).abs() * sc).max() < 4 * EPS64 * eps.abs().max()
    assert ((S.eps_from_score(score, s) - eps).abs()).max() < 4 * EPS64 * eps.abs().max()
    tol_v = 16 * EPS64 * size_x / s.min()
    assert ((S.velocity_from_data(x, x0, s) - v).abs()).max() < tol_v
    assert ((S.data_from_velocity(x, v, s) - x0).abs()).max() < 16 * EPS64 * size_x
    assert ((S.eps_from_velocity(x, v, s) - eps).abs()).max() < 16 * EPS64 * size_x
    # round trips in float64
    d = S.data_from_velocity(x, S.velocity_from_data(x, x0, s), s)
    assert ((d - x0).abs()).max() < 1e-12 * size_x / s.min().clamp(max=1)


def test_predictions_broadcast_scalar_sigma_and_keep_dtype():
    x = torch.randn(4, 2, 5, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    d = torch.zeros_like(x)
    out = S.eps_from_data(x, d, 2.0)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.allclose(out, x / 2)
    out = S.eps_from_data(x, d, torch.tensor([1.0, 2.0, 4.0, 8.0]))
    assert torch.allclose(out[3], x[3] / 8)


def test_prediction_bad_input():
    x = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma"):
        S.eps_from_data(x, x, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        S.data_from_eps(x, x, -1.0)
    with pytest.raises(ValueError, match="sigma"):
        S.data_from_eps(x, x, torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="denoised"):
        S.eps_from_data(x, torch.ones(3, 3, dtype=torch.float64), 1.0)
    with pytest.raises(TypeError, match="v"):
        S.data_from_velocity(x, x.float(), 1.0)
    with pytest.raises(TypeError, match="x"):
        S.data_from_eps(np.ones((3, 2)), x, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        S.data_from_eps(x, x, float("nan"))


# ---------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------

def _mp_alpha_bar(schedule, t):
    """alpha_bar(t) at 40 digits, written directly from the papers' formulas."""
    mpmath.mp.dps = 40
    t = mpmath.mpf(t)
    if isinstance(schedule, S.LinearVPSchedule):
        b0, b1 = mpmath.mpf(schedule.beta_min), mpmath.mpf(schedule.beta_max)
        return mpmath.exp(-(b0 * t + (b1 - b0) * t ** 2 / 2))
    s = mpmath.mpf(schedule.s)
    f = lambda u: mpmath.cos((u + s) / (1 + s) * mpmath.pi / 2) ** 2  # noqa: E731
    return f(t) / f(0)


schedules_st = st.one_of(
    st.builds(S.LinearVPSchedule, st.floats(0.01, 1.0), st.floats(1.0, 50.0)),
    st.builds(S.CosineVPSchedule, st.floats(1e-3, 0.2)),
)


@HYP
@given(schedules_st, st.floats(1e-6, 0.999))
def test_schedule_sigma_matches_paper_formula(schedule, t):
    ab = _mp_alpha_bar(schedule, t)
    mp_sigma = mpmath.sqrt((1 - ab) / ab)
    # conditioning of sigma(t) in t: |d log sigma / d log t| (the input t itself is rounded)
    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    torch.log(schedule._sigma(tt)).backward()
    kappa = abs(tt.grad.item() * t)
    assert rel(schedule.sigma(t), float(mp_sigma)) < 16 * EPS64 * (1 + kappa)
    assert rel(schedule.alpha_bar(t), float(ab)) < 16 * EPS64 * (1 + kappa)


@HYP
@given(schedules_st, sigma_lists)
def test_schedule_round_trips(schedule, log10s):
    s = sig_batch(log10s)
    t = schedule.t_from_sigma(s)
    assert rel(schedule.sigma(t), s) < 1e-12
    assert rel(schedule.t_from_sigma(schedule.sigma(t)), t) < 1e-12
    assert rel(S.alpha_from_sigma(s), schedule.alpha(t)) < 1e-12
    lam = -torch.log(s)
    assert ((schedule.half_log_snr(t) - lam).abs() / lam.abs().clamp(min=1)).max() < 1e-12
    # an increasing map: never against the order of sigma, and strictly so wherever the two
    # levels differ by more than round-off (sigmas 1 ulp apart may map to the same t)
    dt, ds = t[1:] - t[:-1], s[1:] - s[:-1]
    assert (dt * ds >= 0).all()
    apart = ds.abs() > 1e-12 * torch.maximum(s[1:], s[:-1])
    assert (dt[apart] * ds[apart] > 0).all()


def test_continuous_schedule_endpoints_and_defaults():
    lin, cos = S.vp_schedule("linear"), S.vp_schedule("cosine")
    assert lin.sigma(0.0) == 0.0 and cos.sigma(0.0) == 0.0
    assert abs(lin.log_alpha_bar(1.0) + (0.1 + 19.9 / 2)) < 1e-14
    assert lin.t_end == 1.0 and cos.t_end == 0.9946
    with pytest.raises(ValueError, match="t"):
        cos.sigma(1.0)
    with pytest.raises(ValueError, match="t"):
        lin.sigma(-0.1)
    with pytest.raises(ValueError, match="schedule"):
        S.vp_schedule("quadratic")
    with pytest.raises(ValueError, match="beta_max"):
        S.LinearVPSchedule(0.1, 0.05)
    # float32 inputs stay float32 and agree with float64 to float32 accuracy
    t32 = torch.linspace(0.01, 0.99, 7, dtype=torch.float32)
    for sch in (lin, cos):
        out = sch.sigma(t32)
        assert out.dtype == torch.float32
        assert rel(out, sch.sigma(t32.double())) < 1e-5


@pytest.mark.parametrize("table_fn", [ddpm_linear_alphas_cumprod, ldm_scaled_linear_alphas_cumprod])
def test_discrete_schedule(table_fn):
    ab = table_fn()
    sch = S.DiscreteVPSchedule(ab)
    idx = torch.arange(0, 1000, dtype=torch.float64)
    # at integer t: the table itself
    assert rel(sch.alpha_bar(idx), ab) < 1e-13
    assert rel(sch.sigma(idx), torch.sqrt((1 - ab) / ab)) < 1e-14
    # fractional t: log sigma linear between neighbours, and the inverse is exact
    g = torch.Generator().manual_seed(1)
    t = torch.rand(500, dtype=torch.float64, generator=g) * 999
    lo = torch.floor(t).long()
    w = t - lo
    ls = torch.log(sch.sigmas)
    interp = (1 - w) * ls[lo] + w * ls[(lo + 1).clamp(max=999)]
    assert (torch.log(sch.sigma(t)) - interp).abs().max() < 1e-13
    assert (sch.t_from_sigma(sch.sigma(t)) - t).abs().max() < 1e-9
    assert (sch.t_from_sigma(sch.sigmas) - idx).abs().max() < 1e-9
    with pytest.raises(ValueError, match="sigma"):
        sch.t_from_sigma(sch.sigmas[-1].item() * 1.01)
    with pytest.raises(ValueError, match="t"):
        sch.sigma(999.5)


def test_discrete_schedule_bad_tables():
    with pytest.raises(ValueError, match="decreasing"):
        S.DiscreteVPSchedule([0.9, 0.95, 0.5])
    with pytest.raises(ValueError, match="alphas_cumprod"):
        S.DiscreteVPSchedule([1.0, 0.5])
    with pytest.raises(ValueError, match="alphas_cumprod"):
        S.DiscreteVPSchedule([0.5])
    with pytest.raises(TypeError, match="alphas_cumprod"):
        S.DiscreteVPSchedule("abc")


# ---------------------------------------------------------------------------------------------
# VP model wrappers on an analytic 1-D Gaussian
# ---------------------------------------------------------------------------------------------

M0, S0 = 0.7, 1.3   # data law N(M0, S0^2)


def _vp_coeffs(schedule, t):
    """(alpha, sigma_vp) from the schedule's own alpha_bar(t), written independently of the wrappers."""
    if isinstance(schedule, S.LinearVPSchedule):
        ab = torch.exp(-(schedule.beta_min * t + 0.5 * (schedule.beta_max - schedule.beta_min) * t ** 2))
    elif isinstance(schedule, S.CosineVPSchedule):
        f = lambda u: torch.cos((u + schedule.s) / (1 + schedule.s) * math.pi / 2) ** 2  # noqa: E731
        ab = f(t) / f(torch.zeros_like(t))
    else:
        ab = schedule.alpha_bar(t)
    return torch.sqrt(ab), torch.sqrt(1 - ab)


def _exact_eps_model(schedule):
    def model(x_vp, t):
        a, sv = _vp_coeffs(schedule, t)
        a, sv = a.reshape(-1, 1), sv.reshape(-1, 1)
        # E[eps | x_vp] for x_vp = a x0 + sv eps, x0 ~ N(M0, S0^2)
        return sv * (x_vp - a * M0) / (a ** 2 * S0 ** 2 + sv ** 2)
    return model


def _exact_v_model(schedule):
    eps_model = _exact_eps_model(schedule)

    def model(x_vp, t):
        a, sv = _vp_coeffs(schedule, t)
        a, sv = a.reshape(-1, 1), sv.reshape(-1, 1)
        x0 = M0 + a * S0 ** 2 * (x_vp - a * M0) / (a ** 2 * S0 ** 2 + sv ** 2)
        return a * eps_model(x_vp, t) - sv * x0
    return model


def _exact_denoiser(x, sigma):
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
    return M0 + S0 ** 2 / (S0 ** 2 + s ** 2) * (x - M0)


@pytest.mark.parametrize("schedule", [S.LinearVPSchedule(), S.CosineVPSchedule(),
                                      S.DiscreteVPSchedule(ddpm_linear_alphas_cumprod())],
                         ids=["linear", "cosine", "discrete"])
@pytest.mark.parametrize("kind", ["eps", "v"])
def test_model_wrappers_give_exact_denoiser(schedule, kind):
    if kind == "eps":
        den = S.denoiser_from_eps_model(_exact_eps_model(schedule), schedule)
    else:
        den = S.denoiser_from_v_model(_exact_v_model(schedule), schedule)
    g = torch.Generator().manual_seed(3)
    smin, smax = (0.02, 100.0) if not isinstance(schedule, S.DiscreteVPSchedule) else (0.011, 150.0)
    sig = torch.exp(torch.linspace(math.log(smin), math.log(smax), 8, dtype=torch.float64))
    x0 = M0 + S0 * torch.randn(8, 1, dtype=torch.float64, generator=g)
    x = x0 + sig[:, None] * torch.randn(8, 1, dtype=torch.float64, generator=g)
    ref = _exact_denoiser(x, sig)
    got = den(x, sig)
    # the model's eps is amplified by sigma in D = x - sigma eps: compare on the scale of x
    scale = x.abs() + 1
    assert ((got - ref).abs() / scale).max() < 1e-11
    # scalar sigma: one noise level for the batch
    got0 = den(x, sig[3])
    assert ((got0 - _exact_denoiser(x, sig[3])).abs() / scale).max() < 1e-11


def test_model_wrapper_with_callable_schedule_and_errors():
    lin = S.LinearVPSchedule()
    den = S.denoiser_from_eps_model(_exact_eps_model(lin), lin.t_and_alpha)
    x = torch.linspace(-2, 2, 5, dtype=torch.float64).reshape(5, 1)
    assert ((den(x, 2.0) - _exact_denoiser(x, 2.0)).abs()).max() < 1e-12
    with pytest.raises(TypeError, match="eps_model"):
        S.denoiser_from_eps_model(3, lin)
    with pytest.raises(TypeError, match="schedule"):
        S.denoiser_from_v_model(lambda x, t: x, 3)
    with pytest.raises(ValueError, match="sigma"):
        den(x, -1.0)
    # a schedule given by name
    den = S.denoiser_from_v_model(_exact_v_model(S.CosineVPSchedule()), "cosine")
    assert ((den(x, 2.0) - _exact_denoiser(x, 2.0)).abs()).max() < 1e-12


def test_schedule_extremes():
    lin, cos = S.LinearVPSchedule(), S.CosineVPSchedule()
    huge = torch.tensor([1e-200, 1e200], dtype=torch.float64)
    for sch in (lin, cos):
        t = sch.t_from_sigma(huge)
        assert torch.isfinite(t).all() and t[0] == 0.0
    assert 1 - cos.t_from_sigma(1e200) < 1e-15
    with pytest.raises(ValueError, match="overflow"):
        lin.sigma(10.0)                      # exp(B(10)) overflows float64
    assert S.alpha_bar_from_sigma(1e200) == 0.0  # 1e-400 rounds to 0 in float64
