"""experiments.verify: self-reference verification of an opaque denoiser, the compare CLI."""
import csv

import pytest
import torch

from samplerlab.experiments.cli import main
from samplerlab.experiments.convergence import defect_sweep, fit_order
from samplerlab.experiments.reference import solve_pf_ode
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.experiments.verify import (ReferenceToleranceError, grid_from_spec,
                                           self_reference, verify_model)
from samplerlab.experiments.verify import checked_denoiser
from samplerlab.solvers import grids, sample

SAMPLERS = ["euler", "heun", "dpmpp_2m"]
STEPS = [8, 16, 32, 64]


@pytest.fixture(scope="module")
def ring():
    target = GaussianMixture.ring_2d()
    x = target.sample(64, generator=torch.Generator().manual_seed(0), sigma=80.0)
    return target, x


def opaque(target):
    return lambda x, sigma: target.denoiser(x, sigma)   # no GaussianMixture seen by the solver


@pytest.mark.parametrize("method", ["dop853", "richardson"])
def test_self_reference_agrees_with_the_exact_reference(ring, method):
    target, x = ring
    ref = self_reference(opaque(target), x, 80.0, 0.002, method=method)
    exact = solve_pf_ode(target, x, 80.0, 0.002)
    actual = torch.linalg.vector_norm(ref.x - exact, dim=1)
    assert float(actual.max()) <= ref.tolerance
    # the reported error is an upper estimate of the true one (median over samples)
    assert float(actual.median()) <= ref.error_median
    assert ref.nfe > 0
    if method == "richardson":
        assert abs(ref.observed_order - 3.0) < 0.1


def test_orders_match_the_exact_target_sweep(ring):
    target, x = ring
    res = verify_model(opaque(target), x, 80.0, 0.002, SAMPLERS, STEPS, grid="lambda_uniform")
    rows = defect_sweep(target, SAMPLERS, STEPS,
                        lambda m: grids.lambda_uniform(m, 0.002, 80.0), n=64, x_start=x)
    for name in SAMPLERS:
        exact = fit_order(rows, name)
        assert res.orders[name] is not None
        assert abs(res.orders[name].order - exact.order) < 0.02, name
    # NFE come from the ledger
    heun = [r for r in res.rows if r["name"] == "heun"]
    assert [r["nfe"] for r in heun] == [2 * m for m in STEPS]


def test_nfe_budgets_choose_steps(ring):
    target, x = ring
    res = verify_model(opaque(target), x[:8], 80.0, 0.002, ["euler", "heun"], nfe=[4, 6, 8])
    assert res.settings["steps"] == {"euler": [4, 6, 8], "heun": [2, 3, 4]}
    assert all(r["nfe"] <= 8 for r in res.rows)


def test_diffusers_unet_images_go_through_the_same_path():
    diffusers = pytest.importorskip("diffusers")
    from samplerlab.solvers.diffusers_interop import denoiser_from_diffusers
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3,
                                 block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval().double()
    den = denoiser_from_diffusers(unet, diffusers.DDPMScheduler(num_train_timesteps=1000))
    x = 2.0 * torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64)
    res = verify_model(den, x, 2.0, 0.5, ["euler", "heun"], [2, 4, 8], reference="richardson",
                       richardson_steps=8, tolerance=1.0)
    assert res.settings["shape"] == [3, 8, 8]
    assert res.reference.x.shape == x.shape
    eul = [r["defect_median"] for r in res.rows if r["name"] == "euler"]
    assert eul[0] > eul[1] > eul[2] > 0          # the defect falls with the steps


def test_bad_model_outputs_name_what_and_where(ring):
    target, x = ring

    def wrong_shape(x, s):
        return x[:, :1]

    def wrong_dtype(x, s):
        return target.denoiser(x, s).float()

    def nan_below_one(x, s):
        out = target.denoiser(x, s)
        return out * float("nan") if float(s) < 1.0 else out

    with pytest.raises(ValueError, match="shape .*sigma = 80"):
        verify_model(wrong_shape, x, 80.0, 0.002, ["euler"], [4, 8, 16])
    with pytest.raises(TypeError, match="dtype torch.float32"):
        verify_model(wrong_dtype, x, 80.0, 0.002, ["euler"], [4, 8, 16])
    with pytest.raises(FloatingPointError, match="NaN"):
        verify_model(nan_below_one, x, 80.0, 0.002, ["euler"], [4, 8, 16])
    # in a sampler run the message names the sampler, M, sigma and the grid step
    sig = grids.karras(4, 0.002, 80.0)
    where = r"sigma = 0.169753 \(grid level 3, step 3 of 4.*'euler', M = 4"
    with pytest.raises(FloatingPointError, match=where):
        sample("euler", checked_denoiser(nan_below_one, "sampler 'euler', M = 4", sig), x, sig)


def test_bad_arguments(ring):
    target, x = ring
    den = opaque(target)
    with pytest.raises(ReferenceToleranceError, match="tolerance"):
        verify_model(den, x, 80.0, 0.002, ["euler"], [4, 8], tolerance=1e-30)
    with pytest.raises(ValueError, match="stochastic"):
        verify_model(den, x, 80.0, 0.002, ["ddpm"], [4, 8])
    with pytest.raises(ValueError, match="exactly one"):
        verify_model(den, x, 80.0, 0.002, ["euler"], [4, 8], nfe=[4])
    with pytest.raises(ValueError, match="sigma_min"):
        verify_model(den, x, 80.0, 0.0, ["euler"], [4, 8])
    with pytest.raises(TypeError, match="x_start"):
        verify_model(den, x.numpy(), 80.0, 0.002, ["euler"], [4, 8])
    with pytest.raises(ValueError, match="unknown sampler"):
        verify_model(den, x, 80.0, 0.002, ["nope"], [4, 8])
    assert grid_from_spec(grids.karras(5, 0.01, 10.0))[:3] == (10.0, pytest.approx(0.01), "karras")
    assert grid_from_spec({"sigma_max": 5, "sigma_min": 0.1, "grid": "karras", "rho": 3})[3] == \
        {"rho": 3}
    with pytest.raises(ValueError, match="sigma_min"):
        grid_from_spec({"sigma_max": 5})
    with pytest.raises(TypeError, match="grid spec"):
        grid_from_spec(3.0)


FACTORY = '''
import torch
from samplerlab.experiments.targets import GaussianMixture
def make():
    t = GaussianMixture.ring_2d()
    x = t.sample(32, generator=torch.Generator().manual_seed(0), sigma=80.0)
    return (lambda x, s: t.denoiser(x, s)), x, {"sigma_max": 80.0, "sigma_min": 0.002}
def pair():
    return make()[:2]
def nan_model():
    den, x, spec = make()
    return (lambda x, s: x * float("nan")), x, spec
'''


def test_compare_cli_writes_reproducible_files(tmp_path, monkeypatch, capsys):
    (tmp_path / "toy_factory.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    args = ["compare", "toy_factory:make", "--samplers", "euler,dpmpp_2m", "--nfe", "4,8,16,32",
            "--out", str(out)]
    assert main(args) == 0
    first = (out / "compare.csv").read_bytes()
    assert {p.name for p in out.iterdir()} == {"compare.csv", "compare_orders.csv", "compare.md",
                                              "compare.png"}
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [int(r["nfe"]) for r in rows if r["sampler"] == "euler"] == [4, 8, 16, 32]
    assert "measured order" in (out / "compare.md").read_text()
    assert main(args) == 0
    assert (out / "compare.csv").read_bytes() == first


@pytest.mark.parametrize("factory, message", [("toy_factory:pair", "must return the tuple"),
                                              ("toy_factory:nan_model", "NaN"),
                                              ("toy_factory:missing", "no callable"),
                                              ("nomodule_here:make", "cannot import")])
def test_compare_cli_bad_factories_write_nothing(tmp_path, monkeypatch, capsys, factory, message):
    (tmp_path / "toy_factory.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["compare", factory, "--samplers", "euler", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
