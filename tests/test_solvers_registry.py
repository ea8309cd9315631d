"""The sampler registry: metadata, NFE ledger audit, shapes/dtypes, callbacks and bad input."""
import math

import pytest
import torch

from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import SOLVERS, NFECounter, grids, sample
import samplerlab.solvers as solvers

ALL = sorted(SOLVERS)
REQUIRED = {"euler", "heun", "ddpm", "dpm_solver_2", "dpm_solver_3", "dpmpp_2s", "dpmpp_2m",
            "dpmpp_3m", "unipc", "deis", "ipndm", "lms", "res_2s", "res_3s", "res_2m", "res_sde",
            "f_ddim", "f_dpmsolver", "fv_ideal", "li_ddim", "li_ddpm", "li_accel_ode",
            "li_accel_sde", "lagrange", "amed", "amed_plugin"}


@pytest.fixture(scope="module")
def target2d():
    return GaussianMixture.ring_2d()


def test_every_required_sampler_is_registered_with_metadata():
    assert REQUIRED <= set(SOLVERS)
    for name, spec in SOLVERS.items():
        assert spec.name == name
        assert isinstance(spec.stochastic, bool)
        assert spec.order >= 1
        assert spec.paper and spec.summary
        assert callable(getattr(solvers, f"sample_{name}"))


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="dpmpp_2m"):
        sample("dpmpp_2n", lambda x, s: x, torch.zeros(2, 1), torch.tensor([1.0, 0.5]))


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unknown option"):
        sample("euler", lambda x, s: x, torch.zeros(2, 1, dtype=torch.float64),
               torch.tensor([1.0, 0.5], dtype=torch.float64), c2=0.3)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("final_zero", [False, True])
def test_nfe_ledger_matches_declared_cost(name, final_zero, target2d):
    if name == "fv_ideal":
        pytest.skip("the implicit forward value's cost depends on its fixed-point iterations")
    for m in (1, 2, 5, 9):
        sigmas = grids.karras(m, sigma_min=0.05, sigma_max=20.0)
        if final_zero:
            sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
        x = target2d.sample(8, generator=torch.Generator().manual_seed(1), sigma=20.0)
        counted = NFECounter(target2d.denoiser)
        # the cost is counted on every grid, also where one step from 20 to 0.05 is
        # ill-conditioned for seed 001's Lagrange sampler (theory.conditioning)
        out = sample(name, counted, x, sigmas, generator=0, check_grid=False)
        assert counted.count == SOLVERS[name].nfe(sigmas), (name, m, final_zero)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_and_final_zero(name, dtype):
    g = torch.Generator().manual_seed(0)
    for d, shape in ((1, (16, 1)), (64, (4, 64)), (12, (3, 3, 2, 2))):
        target = GaussianMixture.random_anisotropic(d, 3, seed=d).to(dtype=dtype)
        sigmas = torch.cat([grids.karras(6, sigma_min=0.01, sigma_max=10.0),
                            torch.zeros(1, dtype=torch.float64)]).to(dtype)
        x = (torch.randn(shape, generator=g, dtype=torch.float64) * 10.0).to(dtype)
        out = sample(name, target.denoiser, x, sigmas, generator=3)
        assert out.shape == x.shape and out.dtype == dtype
        assert torch.isfinite(out).all(), name


@pytest.mark.parametrize("name", ALL)
def test_callback_sees_every_step(name, target2d):
    sigmas = grids.karras(5, sigma_min=0.05, sigma_max=20.0)
    seen = []
    x = target2d.sample(4, generator=torch.Generator().manual_seed(2), sigma=20.0)
    sample(name, target2d.denoiser, x, sigmas, generator=0, callback=lambda info: seen.append(info["i"]))
    assert seen == list(range(5))


@pytest.mark.parametrize("name", [n for n in ALL if SOLVERS[n].stochastic])
def test_stochastic_samplers_are_deterministic_given_a_seed(name, target2d):
    sigmas = grids.karras(6, sigma_min=0.05, sigma_max=20.0)
    x = target2d.sample(16, generator=torch.Generator().manual_seed(2), sigma=20.0)
    a = sample(name, target2d.denoiser, x, sigmas, generator=11)
    b = sample(name, target2d.denoiser, x, sigmas, generator=torch.Generator().manual_seed(11))
    c = sample(name, target2d.denoiser, x, sigmas, generator=12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_bad_grids_and_inputs_raise_clear_errors(target2d):
    x = torch.zeros(3, 2, dtype=torch.float64)
    d = target2d.denoiser
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample("euler", d, x, torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2"):
        sample("euler", d, x, torch.tensor([1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="non-negative"):
        sample("euler", d, x, torch.tensor([1.0, -0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="finite"):
        sample("euler", d, x, torch.tensor([math.nan, 0.5], dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        sample("euler", d, x.float(), torch.tensor([1.0, 0.5], dtype=torch.float64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        sample("euler", d, [[0.0, 0.0]], torch.tensor([1.0, 0.5], dtype=torch.float64))
    with pytest.raises(TypeError, match="denoiser"):
        sample("euler", None, x, torch.tensor([1.0, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("name, options", [
    ("res_2s", {"c2": 0.0}), ("res_2s", {"c2": 1.5}), ("dpm_solver_2", {"r": -0.1}),
    ("deis", {"order": 7}), ("lms", {"order": 0}), ("unipc", {"order": 9}),
    ("lagrange", {"K": 0}), ("ddpm", {"eta": -1.0}), ("unipc", {"variant": "bh9"}),
    ("fv_ideal", {"tol": 0.0}),
])
def test_options_out_of_range(name, options, target2d):
    x = torch.zeros(3, 2, dtype=torch.float64)
    sigmas = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    with pytest.raises((ValueError, TypeError)) as info:
        sample(name, target2d.denoiser, x, sigmas, **options)
    assert any(key in str(info.value) for key in options)


def test_denoiser_returning_a_wrong_shape_is_reported():
    x = torch.zeros(3, 2, dtype=torch.float64)
    sigmas = torch.tensor([2.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="denoiser returned"):
        sample("euler", lambda x, s: x[:, :1], x, sigmas)
