"""Numerical health of every sampler (issue 13): the finite-value guard, the dtype rule, empty
batches, the grid-conditioning check and the stable ancestral split. Fuzzing: test_fuzz_*.py."""
import numpy as np
import pytest
import torch

from samplerlab.experiments.reference import solve_pf_ode
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import SOLVERS, grids, sample
from samplerlab.solvers.noise import ancestral_split
from samplerlab.theory.conditioning import (MAX_AMPLIFICATION, amplification_bound,
                                            coefficient_amplification)

ALL = sorted(SOLVERS)
TARGET = GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.5, -0.5]], [[0.3, 0.2], [0.4, 0.6]])
GRID = torch.tensor([20.0, 8.0, 3.0, 1.2, 0.5, 0.2], dtype=torch.float64)


def _x(n=4, sigma=20.0, dtype=torch.float64):
    return TARGET.sample(n, generator=0, sigma=sigma).to(dtype)


def _opts(name):
    return {"tol": 1e-8, "max_iter": 500} if name == "fv_ideal" else {}


def _nan_after(calls_ok):
    count = [0]

    def den(x, s):
        count[0] += 1
        out = TARGET.denoiser(x, s)
        return out * float("nan") if count[0] > calls_ok else out
    return den


@pytest.mark.parametrize("name", ALL)
def test_nan_from_the_denoiser_is_a_floating_point_error_naming_step_sigma_denoiser(name):
    with pytest.raises(FloatingPointError, match=r"denoiser returned NaN or inf at .*step.*sigma = "):
        sample(name, _nan_after(1), _x(), GRID, generator=0, **_opts(name))
    # off: the guard is skipped (documented), the NaN reaches the result
    if SOLVERS[name].family not in ("learned", "implicit"):   # AMED: always on; fv: no fixed point
        out = sample(name, _nan_after(1), _x(), GRID, generator=0, check_finite=False,
                     **_opts(name))
        assert torch.isnan(out).any()


def test_overflowing_update_names_the_step_and_its_coefficients():
    x = torch.full((2, 2), 60000.0, dtype=torch.float16)
    sig = torch.tensor([2.0, 1.0], dtype=torch.float16)
    with pytest.raises(FloatingPointError, match=r"update at step 0 .*coefficients"):
        sample("lms", lambda y, s: -y, x, sig)


@pytest.mark.parametrize("name", ALL)
def test_nan_in_x_is_a_value_error_naming_x(name):
    x = _x()
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match="x must be finite"):
        sample(name, TARGET.denoiser, x, GRID, generator=0)


@pytest.mark.parametrize("name", ALL)
def test_output_keeps_x_dtype_when_the_model_answers_narrower(name):
    # the dtype rule: model outputs are cast to x's dtype in every loop, the final step included
    sig = torch.cat([GRID, GRID.new_zeros(1)])
    out = sample(name, lambda y, s: TARGET.denoiser(y, s).float(), _x(), sig, generator=0,
                 **_opts(name))
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("final_zero", [False, True])
def test_empty_batch_returns_an_empty_tensor_of_x_shape_and_dtype(name, final_zero):
    sig = torch.cat([GRID, GRID.new_zeros(1)]) if final_zero else GRID
    for dtype in (torch.float64, torch.float32):
        x = torch.empty(0, 2, dtype=dtype)
        out = sample(name, TARGET.to(dtype=dtype).denoiser, x, sig.to(dtype), generator=0,
                     **_opts(name))
        assert out.shape == (0, 2) and out.dtype == dtype


@pytest.mark.parametrize("name", ALL)
def test_nfe_of_a_single_step_to_zero(name):
    expected = None if SOLVERS[name].family == "implicit" else 1
    assert SOLVERS[name].nfe(torch.tensor([5.0, 0.0], dtype=torch.float64)) == expected


def test_flags_must_be_bools():
    for flag in ("progress", "check_finite", "check_grid"):
        for name in ("euler", "amed"):
            with pytest.raises(TypeError, match=flag):
                sample(name, TARGET.denoiser, _x(), GRID, **{flag: "yes"})
    with pytest.raises(TypeError, match="generator"):
        sample("amed", TARGET.denoiser, _x(), GRID, generator="seed")


# --- the ancestral split -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ddpm", "res_sde"])
def test_ancestral_samplers_take_a_huge_last_ratio(name):
    out = sample(name, TARGET.denoiser, _x(sigma=80.0), torch.tensor([80.0, 1e-8],
                                                                     dtype=torch.float64),
                 generator=0)
    assert torch.isfinite(out).all()


def test_ancestral_split_is_the_exact_variance_split():
    rng = np.random.default_rng(0)
    sf = 10 ** rng.uniform(-2, 2, 200)
    st = sf * rng.uniform(0.01, 0.99, 200)
    for eta in (0.0, 0.3, 1.0):
        down, up = ancestral_split(sf, st, eta)
        np.testing.assert_allclose(down ** 2 + up ** 2, st ** 2, rtol=1e-13)
        np.testing.assert_allclose(up, eta * st * np.sqrt(1 - (st / sf) ** 2), rtol=1e-13)
    down, _ = ancestral_split(np.array([80.0]), np.array([1e-8]), 1.0)
    assert down[0] == pytest.approx(1e-16 / 80.0, rel=1e-12)   # sigma_to^2 / sigma_from


# --- grid conditioning ---------------------------------------------------------------------
_STANDARD = [grids.karras, grids.lambda_uniform, grids.sigma_uniform, grids.vp_time_uniform,
             grids.time_quadratic]


def _worst(name, make, steps, **options):
    spec = SOLVERS[name]
    worst = 0.0
    for m in steps:
        g = make(m).double().numpy()
        g = g[g > 0]
        c = spec.build(g, spec.options(**options))
        c = c[0] if isinstance(c, tuple) else c
        worst = max(worst, float(coefficient_amplification(c, g).max()))
    return worst


@pytest.mark.parametrize("name", [n for n in ALL if SOLVERS[n].family not in ("learned", "implicit")
                                  and n != "lagrange"])
def test_standard_grids_are_well_conditioned(name):
    # measured worst over the five constructors with 5 .. 300 steps: heun 8.0e3 (sigma_uniform,
    # 5 steps: the last one 16 -> 0.002), dpm_solver_3 876, res_3m 444, dpmpp_3m 251; others < 130
    worst = max(_worst(name, make, (5, 10, 30, 100, 300)) for make in _STANDARD)
    assert worst < MAX_AMPLIFICATION, (name, worst)
    # EDM's Heun is refused on one- to three-step grids only (a step to sigma_to divides its
    # second stage's error by sigma_to: A = 4e4 for one step 80 -> 0.002)
    if name == "heun":
        assert _worst(name, grids.karras, (1,)) > MAX_AMPLIFICATION


def test_lagrange_is_well_conditioned_on_its_own_schedule_only():
    # seed 001's sampler on the Li et al. schedule: A <= 2.3 (K = 2..4); on sigma-uniform grids
    # its last (huge) step gives A = 4.5e4 even with 100 steps, on 2-3 step Karras grids 1e4-2e5
    for k in (2, 3, 4):
        assert _worst("lagrange", grids.li_grid, (10, 30, 100, 300), K=k) < 3
    assert _worst("lagrange", grids.sigma_uniform, (100,)) > MAX_AMPLIFICATION
    assert _worst("lagrange", grids.karras, (30, 100)) < 600


def _near_duplicate(rel):
    g = torch.tensor([80.0, 40, 20, 10, 5, 2.5, 1.2, 0.6, 0.3, 0.1], dtype=torch.float64)
    g[4] = g[3] * (1 - rel)
    return g


# f_ddim (first order: one history value) and ipndm (fixed-step weights) do not depend on the
# node separations, so a near-duplicate level does not amplify anything for them
@pytest.mark.parametrize("name", [n for n in ALL if SOLVERS[n].family in
                                  ("multistep", "predictor_corrector")
                                  and n not in ("f_ddim", "ipndm")])
def test_near_duplicate_levels_are_refused_naming_grid_index_and_ratio(name):
    x = _x(sigma=80.0)
    with pytest.raises(ValueError, match=r"sigmas is ill-conditioned .* at step 4: .*amplify.*"
                                         r"ratio h_4/h_3 = .*check_grid=False"):
        sample(name, TARGET.denoiser, x, _near_duplicate(1e-12))
    out = sample(name, TARGET.denoiser, x, _near_duplicate(1e-12), check_grid=False)
    assert out.shape == x.shape   # the expert override runs it


def test_the_refused_grids_are_the_ones_that_blow_up():
    # measured: UniPC and F-DPMSolver amplify a 1e-6 near-duplicate to errors >> 1 (their caches
    # hold predicted points); the multistep samplers stay accurate there in float64 and are run
    x = _x(8, sigma=80.0)
    g = _near_duplicate(1e-6)
    ref = solve_pf_ode(TARGET, x, 80.0, 0.1)
    for name in ("unipc", "f_dpmsolver"):
        bad = sample(name, TARGET.denoiser, x, g, check_grid=False)
        assert float((bad - ref).abs().max()) > 5   # base grid: 0.09 (unipc), 0.19
        with pytest.raises(ValueError, match="ill-conditioned"):
            sample(name, TARGET.denoiser, x, g)
    for name in ("dpmpp_2m", "res_2m", "deis"):
        good = sample(name, TARGET.denoiser, x, g)
        assert float((good - ref).abs().max()) < 0.2
        with pytest.raises(ValueError, match="ill-conditioned"):   # float32: rounding amplified
            sample(name, TARGET.to(dtype=torch.float32).denoiser, x.float(), g.float())


def test_lagrange_on_a_very_coarse_grid_is_refused():
    x = _x(sigma=80.0)
    g = torch.tensor([80.0, 0.1], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"ill-conditioned for lagrange at step 0"):
        sample("lagrange", TARGET.denoiser, x, g)
    err = (sample("lagrange", TARGET.denoiser, x, g, check_grid=False)
           - solve_pf_ode(TARGET, x, 80.0, 0.1)).abs().max()
    assert err > 100   # what the check prevents (measured ~3e3)


def test_amplification_bound_depends_on_the_kind_of_values():
    from samplerlab.theory.multistep import multistep_coefficients
    ms = multistep_coefficients("dpmpp", GRID.numpy(), 2)
    assert amplification_bound(ms, 2.2e-16) == pytest.approx(1e-4 / 2.2e-16)
    assert amplification_bound(ms, 1.2e-7) == MAX_AMPLIFICATION
    with pytest.raises(ValueError, match="eps"):
        amplification_bound(ms, 0.0)


# --- the mixture in half precision and at large scales ---------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixture_is_finite_in_half_precision_at_sigma_80(dtype):
    g = TARGET.to(dtype=dtype)
    x = TARGET.sample(64, generator=1, sigma=80.0).to(dtype)
    for fn in (g.denoiser, g.score, g.log_prob, g.responsibilities):
        out = fn(x, 80.0)
        assert out.dtype == dtype and torch.isfinite(out).all()
    ref = TARGET.denoiser(x.double(), 80.0)
    assert float((g.denoiser(x, 80.0).double() - ref).abs().max()) <= 4 * torch.finfo(dtype).eps * (
        1 + float(ref.abs().max()))
    out = sample("dpmpp_2m", g.denoiser, x, GRID.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_mixture_with_means_out_of_range_is_refused_naming_means():
    GaussianMixture([0.5, 0.5], [[1e149, 0.0], [-1e149, 1.0]], [1.0, 2.0])   # still works
    with pytest.raises(ValueError, match="means"):
        GaussianMixture([0.5, 0.5], [[1e160, 0.0], [-1e160, 1.0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="means"):
        GaussianMixture([0.5, 0.5], [[1e16, 0.0], [-1e16, 1.0]], [1.0, 2.0], dtype=torch.float32)


def test_check_tensor_like_names_what_and_where():
    from samplerlab.theory.validation import check_tensor_like
    x = torch.zeros(3, 2, dtype=torch.float64)
    assert check_tensor_like(x.clone(), x, "f") is not None
    with pytest.raises(TypeError, match=r"f returned list, expected a torch.Tensor like x \(at 1\)"):
        check_tensor_like([0.0], x, "f", "at 1")
    with pytest.raises(ValueError, match=r"f returned shape \(3,\), expected x's shape \(3, 2\)"):
        check_tensor_like(torch.zeros(3, dtype=torch.float64), x, "f")
    with pytest.raises(TypeError, match="f returned torch.float32 on cpu; its dtype torch.float32"):
        check_tensor_like(x.float(), x, "f", hint="; cast it")
