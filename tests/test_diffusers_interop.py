"""Interop with diffusers: grids, adapters, and the scheduler (samplerlab[diffusers]).

A tiny randomly initialised ``UNet2DModel`` (seeded, no downloaded weights) and the exact
Gaussian-mixture target stand in for real models.
"""
import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusers import (DDIMScheduler, DDPMPipeline, DPMSolverMultistepScheduler,  # noqa: E402
                       UNet2DModel)

from samplerlab.experiments.targets import GaussianMixture  # noqa: E402
from samplerlab.solvers import SOLVERS, grids, sample  # noqa: E402
from samplerlab.solvers.diffusers_interop import (SamplerlabScheduler,  # noqa: E402
                                                  denoiser_from_diffusers, grid_from_scheduler,
                                                  grid_from_spacing, model_from_denoiser,
                                                  scheduler_samplers, sigmas_from_timesteps)

SPACINGS = ("linspace", "leading", "trailing")


def _unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


@pytest.fixture(scope="module")
def unet():
    return _unet()


@pytest.fixture(scope="module")
def target():
    return GaussianMixture.random_anisotropic(2, 4, seed=0)


def _dpmsolver(**kw):
    kw = {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint",
          "final_sigmas_type": "zero", "euler_at_final": False, **kw}
    return DPMSolverMultistepScheduler(**kw)


def _loop(scheduler, model, x, n=None, timesteps=None):
    """diffusers' pipeline loop: model(x, t) then scheduler.step."""
    if timesteps is None:
        scheduler.set_timesteps(n)
    else:
        scheduler.set_timesteps(timesteps=timesteps)
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = model(x, t)
            out = getattr(out, "sample", out)
            x = scheduler.step(out, t, x).prev_sample
    return x


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# --- grids ------------------------------------------------------------------------------------

@pytest.mark.parametrize("spacing", SPACINGS)
def test_ddim_grid_is_grids_discrete_grid(spacing):
    ddim = DDIMScheduler(timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
    got = grid_from_scheduler(ddim, 10)
    want = grids.discrete_grid(ddim.alphas_cumprod, 10, spacing,
                               steps_offset=1 if spacing == "leading" else 0, append_zero=True)
    assert torch.equal(got, want)
    assert torch.equal(grid_from_spacing(ddim, 10, spacing, 1 if spacing == "leading" else 0), want)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_dpmsolver_grid_is_its_sigmas(spacing):
    sched = _dpmsolver(timestep_spacing=spacing)
    got = grid_from_scheduler(sched, 10)
    sched.set_timesteps(10)
    assert got.dtype == torch.float64 and got.numel() == 11 and got[-1] == 0
    # diffusers rounds its levels to float32; the table levels agree to that precision
    assert torch.allclose(got, sched.sigmas.double(), rtol=3e-7, atol=0)
    assert torch.equal(grid_from_scheduler(sched, 10, source="scheduler"), sched.sigmas.double())


def test_grid_final_sigma_min_and_original_untouched():
    sched = _dpmsolver(final_sigmas_type="sigma_min")
    g = grid_from_scheduler(sched, 6)
    assert sched.num_inference_steps is None  # a copy was set
    table = torch.sqrt((1 - sched.alphas_cumprod.double()) / sched.alphas_cumprod.double())
    assert g[-1] == table[0] and (g > 0).all()


# --- adapters ---------------------------------------------------------------------------------

def test_unet_adapter_shapes_and_determinism(unet):
    sched = _dpmsolver()
    den = denoiser_from_diffusers(unet, sched)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 5.0
    with torch.no_grad():
        a = den(x, torch.tensor(5.0))
        b = den(x, torch.tensor(5.0))
        batch = den(x, torch.tensor([5.0, 1.0, 0.2]))
        single = den(x[1:2], torch.tensor(1.0))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert torch.allclose(batch[0], a[0], rtol=1e-5, atol=1e-5)
    assert torch.allclose(batch[1], single[0], rtol=1e-5, atol=1e-5)
    # float64 sampler state through a float32 model
    den64 = denoiser_from_diffusers(unet, sched, model_dtype=torch.float32)
    with torch.no_grad():
        c = den64(x.double(), torch.tensor(5.0, dtype=torch.float64))
    assert c.dtype == torch.float64 and torch.allclose(c.float(), a, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("mode", ["interpolate", "nearest"])
def test_round_trip_through_a_vp_model_is_exact(target, prediction_type, mode):
    """mixture denoiser -> diffusers-style model -> samplerlab denoiser gives the denoiser back."""
    table = grids.ddpm_linear_alphas_cumprod()
    model = model_from_denoiser(target.denoiser, table, prediction_type)
    den = denoiser_from_diffusers(model, table, prediction_type, timestep_mode=mode)
    levels = grids.discrete_grid(table, 7, "trailing")  # table levels: both modes exact
    x = target.sample(64, generator=torch.Generator().manual_seed(3), sigma=1.0)
    for s in levels:
        assert torch.allclose(den(x, s), target.denoiser(x, s), rtol=1e-11, atol=1e-11)
    if mode == "interpolate":  # off-table level: fractional timestep, still exact
        s = torch.tensor(0.7312, dtype=torch.float64)
        assert torch.allclose(den(x, s), target.denoiser(x, s), rtol=1e-11, atol=1e-11)


# --- same algorithm as diffusers' DPM-Solver++(2M) ----------------------------------------------

@pytest.mark.parametrize("n", [8, 12])
def test_dpmpp_2m_matches_diffusers_on_unet(unet, n):
    sched = _dpmsolver()
    x_vp = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    ref = _loop(sched, unet, x_vp.clone(), n)
    sigmas = grid_from_scheduler(sched, n, dtype=torch.float32)
    den = denoiser_from_diffusers(unet, sched, timestep_mode="nearest")
    with torch.no_grad():
        out = sample("dpmpp_2m", den, x_vp * torch.sqrt(1 + sigmas[0] ** 2), sigmas,
                     lower_order_final=False)
    assert _rel(out, ref) < 1e-5  # float32 round-off (measured ~4e-7)


@pytest.mark.parametrize("n", [8, 12])
def test_dpmpp_2m_matches_diffusers_on_mixture_float64(target, n):
    sched = _dpmsolver()
    sigmas = grid_from_scheduler(sched, n)
    x = target.sample(256, generator=torch.Generator().manual_seed(4), sigma=float(sigmas[0]))
    model = model_from_denoiser(target.denoiser, sched)
    ref = _loop(sched, model, x / torch.sqrt(1 + sigmas[0] ** 2), n)
    out = sample("dpmpp_2m", target.denoiser, x, sigmas, lower_order_final=False)
    # diffusers keeps its levels and the state in float32 inside step(), and D = x - sigma eps
    # cancels at sigma_max ~ 157: float32 round-off amplified (measured 6e-7 at n=8, 3e-6 at 12)
    assert _rel(out, ref) < 2e-5
    # the comparison discriminates: another method, or samplerlab's lower-order final step
    # (M < 10), is far off (measured 0.05 and 0.12)
    assert _rel(sample("res_2m", target.denoiser, x, sigmas), ref) > 1e-2
    if n < 10:
        assert _rel(sample("dpmpp_2m", target.denoiser, x, sigmas), ref) > 1e-2


# --- SamplerlabScheduler ------------------------------------------------------------------------

def test_scheduler_sampler_list():
    names = scheduler_samplers()
    assert "dpmpp_2m" in names and "res_2m" in names and "deis" in names
    assert all(SOLVERS[s].family == "multistep" for s in names)
    assert "heun" not in names and "unipc" not in names


@pytest.mark.parametrize("name", ["dpmpp_2m", "dpmpp_3m", "res_2m", "res_3m", "deis", "ipndm",
                                  "lms", "li_accel_ode_1nfe"])
@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_scheduler_equals_sample_float64(target, name, final):
    sched = SamplerlabScheduler(sampler=name, final_sigmas_type=final, timestep_spacing="trailing")
    model = model_from_denoiser(target.denoiser, sched)
    sched.set_timesteps(9)
    sigmas = sched.sigmas
    x = target.sample(128, generator=torch.Generator().manual_seed(5), sigma=float(sigmas[0]))
    out_vp = _loop(sched, model, x / torch.sqrt(1 + sigmas[0] ** 2), 9)
    out = out_vp * torch.sqrt(1 + sigmas[-1] ** 2)
    ref = sample(name, target.denoiser, x, sigmas)
    assert _rel(out, ref) < 1e-12


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_scheduler_prediction_types(target, prediction_type):
    sched = SamplerlabScheduler(sampler="res_2m", prediction_type=prediction_type)
    model = model_from_denoiser(target.denoiser, sched, prediction_type)
    sched.set_timesteps(7)
    x = target.sample(64, generator=torch.Generator().manual_seed(6), sigma=float(sched.sigmas[0]))
    out = _loop(sched, model, x / torch.sqrt(1 + sched.sigmas[0] ** 2), 7)
    assert _rel(out, sample("res_2m", target.denoiser, x, sched.sigmas)) < 1e-12


def test_scheduler_in_ddpm_pipeline(unet):
    """Runs inside diffusers' own DDPMPipeline; deterministic; = DPMSolverMultistep there."""
    ours = SamplerlabScheduler(sampler="dpmpp_2m", timestep_spacing="trailing",
                               sampler_options={"lower_order_final": False})
    pipe = DDPMPipeline(unet=unet, scheduler=ours)
    pipe.set_progress_bar_config(disable=True)
    a = pipe(batch_size=2, generator=torch.Generator().manual_seed(7), num_inference_steps=8,
             output_type="np").images
    b = pipe(batch_size=2, generator=torch.Generator().manual_seed(7), num_inference_steps=8,
             output_type="np").images
    assert a.shape == (2, 8, 8, 3) and (a == b).all()
    theirs = DDPMPipeline(unet=unet, scheduler=_dpmsolver(timestep_spacing="trailing"))
    theirs.set_progress_bar_config(disable=True)
    c = theirs(batch_size=2, generator=torch.Generator().manual_seed(7), num_inference_steps=8,
               output_type="np").images
    assert ours.timesteps.tolist() == theirs.scheduler.timesteps.tolist()
    # images are clamped to [0, 1]; float32 round-off (the tables differ in the last float32 bit)
    assert abs(a - c).max() < 1e-4


def _loop_from(scheduler, model, x, begin, set_begin):
    """An img2img-style loop: timesteps[begin:], optionally announced by set_begin_index."""
    if set_begin:
        scheduler.set_begin_index(begin)
    with torch.no_grad():
        for t in scheduler.timesteps[begin:]:
            x = scheduler.step(model(x, t), t, x).prev_sample
    return x


@pytest.mark.parametrize("name", ["dpmpp_2m", "res_3m", "ipndm"])
@pytest.mark.parametrize("begin", [3, 6])
@pytest.mark.parametrize("set_begin", [False, True])
def test_scheduler_started_partway_equals_sample_on_the_rest(target, name, begin, set_begin):
    # img2img (strength < 1) runs timesteps[begin:]: that is the sampler on sigmas[begin:],
    # with its own warm-up (rows of the full grid would weight a history it never saw)
    sched = SamplerlabScheduler(sampler=name, timestep_spacing="trailing")
    model = model_from_denoiser(target.denoiser, sched)
    sched.set_timesteps(10)
    sigmas = sched.sigmas[begin:]
    x = target.sample(128, generator=torch.Generator().manual_seed(8), sigma=float(sigmas[0]))
    out = _loop_from(sched, model, x / torch.sqrt(1 + sigmas[0] ** 2), begin, set_begin)
    assert _rel(out, sample(name, target.denoiser, x, sigmas)) < 1e-12
    # and it discriminates: the full-grid sampler's own trajectory from there is different
    full = sample(name, target.denoiser, x, sched.sigmas[begin - 1:])
    assert _rel(out, full) > 1e-3


def test_scheduler_started_partway_matches_diffusers(target):
    ours = SamplerlabScheduler(sampler="dpmpp_2m", timestep_spacing="trailing",
                               sampler_options={"lower_order_final": False})
    theirs = _dpmsolver(timestep_spacing="trailing")
    model = model_from_denoiser(target.denoiser, theirs)
    for sched in (ours, theirs):
        sched.set_timesteps(12)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist()
    x = target.sample(128, generator=torch.Generator().manual_seed(9), sigma=float(ours.sigmas[5]))
    x_vp = x / torch.sqrt(1 + ours.sigmas[5] ** 2)
    a = _loop_from(ours, model, x_vp.clone(), 5, True)
    b = _loop_from(theirs, model, x_vp.clone(), 5, True)
    assert _rel(a, b) < 1e-5   # float32 round-off


def test_scheduler_add_noise_is_diffusers(unet):
    from diffusers import DDPMScheduler
    ours, theirs = SamplerlabScheduler(), DDPMScheduler()
    x0 = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    noise = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(11))
    for ts in (torch.tensor([999, 500, 0]), torch.tensor(250), 10):
        ref = theirs.add_noise(x0, noise, torch.as_tensor(ts).reshape(-1).expand(3))
        got = ours.add_noise(x0, noise, ts)
        assert got.dtype == x0.dtype and _rel(got, ref) < 1e-6
    with pytest.raises(ValueError, match="timesteps"):
        ours.add_noise(x0, noise, torch.tensor([1000, 0, 0]))
    with pytest.raises(ValueError, match="timesteps"):
        ours.add_noise(x0, noise, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="noise has shape"):
        ours.add_noise(x0, noise[:1], 10)


@pytest.mark.parametrize("spacing", ["linspace", "leading"])
def test_sigma_min_when_the_timesteps_end_at_zero(target, spacing):
    # linspace (and leading without offset) end at t = 0: sigma_min adds no level there, and
    # the scheduler's last step (diffusers' h = 0 step) leaves x unchanged
    sched = SamplerlabScheduler(sampler="dpmpp_2m", final_sigmas_type="sigma_min",
                                timestep_spacing=spacing)
    sched.set_timesteps(8)
    assert sched.timesteps[-1] == 0 and sched.sigmas.numel() == len(sched.timesteps)
    assert float(sched.sigmas[-1]) == pytest.approx(float(sched.schedule.sigmas[0]), rel=1e-15)
    model = model_from_denoiser(target.denoiser, sched)
    x = target.sample(64, generator=torch.Generator().manual_seed(12), sigma=float(sched.sigmas[0]))
    out = _loop(sched, model, x / torch.sqrt(1 + sched.sigmas[0] ** 2), 8)
    out = out * torch.sqrt(1 + sched.sigmas[-1] ** 2)
    assert _rel(out, sample("dpmpp_2m", target.denoiser, x, sched.sigmas)) < 1e-12
    ddim = grid_from_scheduler(DDIMScheduler(set_alpha_to_one=False), 8)   # 'leading', ends at 0
    assert ddim.numel() == 8 and float(ddim[-1]) > 0


def test_steps_offset_is_ignored_outside_leading_as_in_diffusers():
    # Stable Diffusion's scheduler config carries steps_offset=1 whatever the spacing
    for spacing in ("linspace", "trailing"):
        a = SamplerlabScheduler(timestep_spacing=spacing, steps_offset=1)
        b = SamplerlabScheduler(timestep_spacing=spacing)
        a.set_timesteps(10)
        b.set_timesteps(10)
        assert a.timesteps.tolist() == b.timesteps.tolist()
    lead = SamplerlabScheduler(timestep_spacing="leading", steps_offset=1)
    lead.set_timesteps(10)
    assert lead.timesteps[-1] == 1


# --- bad input --------------------------------------------------------------------------------

def test_bad_input(unet, target):
    table = grids.ddpm_linear_alphas_cumprod()
    x = torch.randn(2, 3, 8, 8)

    def wrong_shape(x_vp, t):
        return x_vp[:, :2]

    with pytest.raises(ValueError, match="model output has shape"):
        denoiser_from_diffusers(wrong_shape, table)(x, torch.tensor(1.0))
    with pytest.raises(ValueError, match="prediction_type"):
        denoiser_from_diffusers(unet, table, "flow")
    with pytest.raises(ValueError, match="prediction_type"):
        model_from_denoiser(target.denoiser, table, "score")
    with pytest.raises(ValueError, match="timestep_mode"):
        denoiser_from_diffusers(unet, table, timestep_mode="floor")
    with pytest.raises(ValueError, match="outside the scheduler's range"):
        denoiser_from_diffusers(unet, table)(x, torch.tensor(1e-4))
    with pytest.raises(ValueError, match="outside the scheduler's range"):
        denoiser_from_diffusers(unet, table)(x, torch.tensor(1e4))
    with pytest.raises(ValueError, match="timesteps must lie"):
        sigmas_from_timesteps([1000, 500], table)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sigmas_from_timesteps([100, 500], table)
    with pytest.raises(ValueError, match="final"):
        sigmas_from_timesteps([500, 100], table, final="one")
    with pytest.raises(ValueError, match="^t must"):
        model_from_denoiser(target.denoiser, table)(torch.zeros(2, 2, dtype=torch.float64), 1000)
    with pytest.raises(ValueError, match="sampler"):
        SamplerlabScheduler(sampler="heun")
    with pytest.raises(ValueError, match="warmup"):
        SamplerlabScheduler(sampler="res_3m", sampler_options={"warmup": "single_step"})
    with pytest.raises(TypeError, match="unknown option"):
        SamplerlabScheduler(sampler="res_2m", sampler_options={"eta": 1.0})
    sched = SamplerlabScheduler()
    with pytest.raises(ValueError, match="set_timesteps"):
        sched.step(x, 999, x)
    with pytest.raises(ValueError, match="timesteps must lie"):
        sched.set_timesteps(timesteps=[1200, 10])
    sched.set_timesteps(4)
    with pytest.raises(ValueError, match="model_output has shape"):
        sched.step(x[:, :2], sched.timesteps[0], x)
    with pytest.raises(ValueError, match="not one of the scheduler's timesteps"):
        sched.step(x, 998, x)
    with pytest.raises(ValueError, match="one timestep"):
        sched.step(x, torch.tensor([999, 999]), x)
    with pytest.raises(ValueError, match="begin_index"):
        sched.set_begin_index(4)
    sched.set_begin_index(1)
    with pytest.raises(ValueError, match="set_begin_index"):
        sched.step(x, sched.timesteps[2], x)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("lower_order_final", [True, False])
@pytest.mark.parametrize("n", [6, 12])
def test_unipc_matches_diffusers_unipc_on_mixture(target, variant, lower_order_final, n):
    """samplerlab's UniPC (theory/predictor_corrector) against diffusers' UniPCMultistepScheduler
    (data prediction, order 2, grid ending at sigma_min, where diffusers' last step is defined)."""
    from diffusers import UniPCMultistepScheduler

    sched = UniPCMultistepScheduler(solver_order=2, solver_type=variant, predict_x0=True,
                                    lower_order_final=lower_order_final,
                                    final_sigmas_type="sigma_min")
    sigmas = grid_from_scheduler(sched, n, final="sigma_min")
    x = target.sample(64, generator=torch.Generator().manual_seed(4), sigma=float(sigmas[0]))
    model = model_from_denoiser(target.denoiser, sched)
    ref_vp = _loop(sched, model, x / torch.sqrt(1 + sigmas[0] ** 2), n)
    ref = ref_vp * torch.sqrt(1 + sigmas[-1] ** 2)  # back to VE at the last level
    out = sample("unipc", target.denoiser, x, sigmas, variant=variant,
                 lower_order_final=lower_order_final)
    # diffusers steps in float32 (measured agreement ~2e-7)
    assert _rel(out, ref) < 2e-5
    assert _rel(sample("dpmpp_2m", target.denoiser, x, sigmas), ref) > 1e-2  # discriminates
