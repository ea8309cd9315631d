"""AMED-Solver / AMED-Plugin (seed 004): equivalences, per-sample coefficients, NFE, order with the
fixed predictor, training, save/load and bad input."""
import math

import numpy as np
import pytest
import sympy
import torch

from samplerlab.experiments.amed_training import AMEDTrainingConfig, load_predictor, \
    save_predictor, teacher_trajectory, train_amed
from samplerlab.experiments.convergence import defect_sweep, fit_order, starting_points
from samplerlab.experiments.reference import solve_pf_ode
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import NFECounter, SOLVERS, grids, sample
from samplerlab.solvers import amed
from samplerlab.solvers.amed import AMEDPredictor, AMEDStepper, FeatureMap, amed_tableau, \
    multistep_row, tableau_rows
from samplerlab.theory import exp_rk
from samplerlab.theory.multistep import multistep_coefficients
from samplerlab.theory.step_form import step_coefficients

F64 = torch.float64


@pytest.fixture(scope="module")
def ring():
    return GaussianMixture.ring_2d()


@pytest.fixture(scope="module")
def aniso():
    return GaussianMixture.random_anisotropic(6, 3, seed=2)


def karras(m, lo=0.002, hi=80.0):
    return grids.karras(m, sigma_min=lo, sigma_max=hi)


def refined(sig, r=0.5):
    """t_0, s_0, t_1, ... with s = t e^{-r h} (the plugins' refined grid)."""
    out = [sig[0]]
    for i in range(sig.numel() - 1):
        t, tn = sig[i], sig[i + 1]
        out += [t * torch.exp(-r * torch.log(t / tn)), tn]
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# coefficients against theory/
# ---------------------------------------------------------------------------------------------

def test_amed_tableau_at_half_is_dpm_solver_2_symbolically():
    a = amed_tableau()
    d = exp_rk.get_tableau("dpm_solver_2")
    half = {amed.R_SYMBOL: sympy.Rational(1, 2)}
    for i in range(2):
        assert sympy.simplify(sympy.sympify(a.c[i]).subs(half) - d.c[i]) == 0
        assert sympy.simplify((a.b[i].subs(half) - d.b[i]).rewrite(sympy.exp)) == 0
    assert sympy.simplify((a.A[1, 0].subs(half) - d.A[1, 0]).rewrite(sympy.exp)) == 0


@pytest.mark.parametrize("name", ["dpm_solver_2", "euler"])
@pytest.mark.parametrize("r", [0.2, 0.5, 0.9])
def test_tableau_rows_equal_theory_step_coefficients(name, r):
    sf = np.array([80.0, 9.7, 0.47, 0.05])
    st = np.array([9.7, 0.47, 0.05, 0.002])
    ref = step_coefficients(name, sf, st, **({"r": r} if name != "euler" else {}))
    sig_f, sig_t = torch.tensor(sf, dtype=F64), torch.tensor(st, dtype=F64)
    rows = tableau_rows(name, sig_f, sig_t, torch.full((4,), r, dtype=F64))
    stage_sigma, stage_x, stage_w, out_x, out_w = rows
    s = ref.stages
    for j in range(s):
        np.testing.assert_allclose(torch.broadcast_to(stage_sigma[j], (4,)).numpy(),
                                   ref.stage_sigma[:, j], rtol=1e-13)
        np.testing.assert_allclose(torch.broadcast_to(stage_x[j], (4,)).numpy(),
                                   ref.stage_x[:, j], rtol=1e-13)
        np.testing.assert_allclose(torch.broadcast_to(out_w[j], (4,)).numpy(), ref.out_w[:, j],
                                   rtol=1e-12, atol=1e-15)
        for k in range(j):
            np.testing.assert_allclose(torch.as_tensor(stage_w[j][k]).numpy(),
                                       ref.stage_w[:, j, k], rtol=1e-12)
    np.testing.assert_allclose(out_x.numpy(), ref.out_x, rtol=1e-15)


def test_amed_row_is_the_papers_update(ring):
    """Eq. 9 written out directly: x_s = x + (s - t) d, x' = x + c (t' - t) (x_s - D(x_s, a s))/s."""
    x = starting_points(ring, 16, 5.0, seed=3)
    t, tn = torch.tensor(5.0, dtype=F64), torch.tensor(1.5, dtype=F64)
    r = torch.linspace(0.1, 0.9, 16, dtype=F64)
    c = torch.linspace(0.9, 1.1, 16, dtype=F64)
    a = torch.linspace(0.8, 1.2, 16, dtype=F64)
    sig = torch.stack([t, tn])
    stepper = AMEDStepper(None, sig)
    stepper.fixed = None

    class Fixed(torch.nn.Module):   # a predictor stand-in returning given per-sample values
        features = FeatureMap("zeros", data_dim=2)

        def forward(self, feats, s0, s1):
            return r, c, a

    stepper.predictor = Fixed()
    out, info = stepper.interval(ring.denoiser, x, 0)
    s = t * (tn / t) ** r
    d = (x - ring.denoiser(x, t)) / t
    xs = x + (s - t)[:, None] * d
    ds = (xs - ring.denoiser(xs, a * s)) / s[:, None]
    expected = x + (c * (tn - t))[:, None] * ds
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(info["sigma_mid"], s, rtol=1e-14, atol=0)


@pytest.mark.parametrize("method, order", [("ipndm", 1), ("ipndm", 2), ("ipndm", 3),
                                           ("ipndm", 4), ("dpmpp", 1), ("dpmpp", 2),
                                           ("dpmpp", 3), ("res", 2), ("deis", 3), ("lms", 3)])
def test_multistep_rows_equal_theory_weights(method, order):
    sig = karras(7, 0.01, 20.0).numpy()
    ref = multistep_coefficients(method, sig, order, lower_order_final=False)
    st = torch.tensor(sig, dtype=F64)
    for n in range(len(sig) - 1):
        q = int(ref.orders[n])
        past = [st[n - j] for j in range(q)]
        out_x, w = multistep_row(method, q, past, st[n + 1])
        np.testing.assert_allclose(float(out_x), ref.out_x[n], rtol=1e-14)
        np.testing.assert_allclose([float(v) for v in w], ref.weights[n, :q], rtol=1e-11,
                                   atol=1e-14)


# ---------------------------------------------------------------------------------------------
# the samplers with the fixed predictor
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("final_zero", [False, True])
def test_amed_with_r_half_c_one_is_dpm_solver_2(ring, aniso, final_zero):
    for target, m in ((ring, 3), (aniso, 6)):
        sig = karras(m)
        if final_zero:
            sig = torch.cat([sig, sig.new_zeros(1)])
        x = starting_points(target, 32, 80.0, seed=1)
        a = sample("amed", target.denoiser, x, sig)
        b = sample("dpm_solver_2", target.denoiser, x, sig)
        assert (a - b).abs().max() <= 1e-12 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("base", ["euler", "ipndm", "dpmpp_2m"])
def test_plugin_with_r_half_is_its_base_on_the_refined_grid(aniso, base):
    sig = karras(5)
    x = starting_points(aniso, 32, 80.0, seed=2)
    a = sample("amed_plugin", aniso.denoiser, x, sig, base=base)
    b = sample(base, aniso.denoiser, x, refined(sig))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dpm_solver_2_plugin_is_the_generalised_dpm_solver_2(aniso):
    sig = karras(4)
    x = starting_points(aniso, 16, 80.0, seed=4)
    for r in (0.3, 0.7):
        a = sample("amed_plugin", aniso.denoiser, x, sig, base="dpm_solver_2", r=r)
        b = sample("dpm_solver_2", aniso.denoiser, x, sig, r=r)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_ipndm_plugin_order_option_and_fixed_r_per_step(aniso):
    sig = karras(4)
    x = starting_points(aniso, 8, 80.0, seed=5)
    rs = [0.3, 0.6, 0.45, 0.5]
    a = sample("amed_plugin", aniso.denoiser, x, sig, base="ipndm", order=2, r=rs)
    grid = [sig[0]]
    for i, r in enumerate(rs):
        grid += [sig[i] * torch.exp(-r * torch.log(sig[i] / sig[i + 1])), sig[i + 1]]
    b = sample("ipndm", aniso.denoiser, x, torch.stack(grid), order=2)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_scale_c_multiplies_the_increment(aniso):
    sig = karras(3)
    x = starting_points(aniso, 8, 80.0, seed=6)
    base = sample("amed_plugin", aniso.denoiser, x, sig[:2], base="euler")
    scaled = sample("amed_plugin", aniso.denoiser, x, sig[:2], base="euler", c=1.05)
    xs = sample("euler", aniso.denoiser, x, refined(sig[:2])[:2])
    torch.testing.assert_close(scaled - xs, 1.05 * (base - xs), rtol=1e-12, atol=1e-12)


def test_time_scale_a_moves_only_the_evaluation(aniso):
    sig = karras(2)
    x = starting_points(aniso, 4, 80.0, seed=7)
    counted = NFECounter(aniso.denoiser)
    sample("amed", counted, x, sig, a=1.1)
    s_mid = float(sig[0] * torch.sqrt(sig[1] / sig[0]))
    assert counted.sigmas[1] == pytest.approx(1.1 * s_mid, rel=1e-14)


def _predictor(target, kind="responsibilities", seed=0, settings=None, **kw):
    fm = FeatureMap(kind, data_dim=target.dim, target=target if kind == "responsibilities"
                    else None, seed=seed)
    return AMEDPredictor(fm, seed=seed, settings=settings, scale_dir=0.1, scale_time=0.2, **kw)


@pytest.mark.parametrize("base", [None, "euler", "dpm_solver_2", "ipndm", "dpmpp_2m"])
def test_per_sample_coefficients_equal_separate_runs(aniso, base):
    """A predictor gives each sample its own r, c, a; the batch run equals running every sample
    alone with its values fixed (the per-sample steppers add no cross-talk)."""
    sig = karras(3)
    x = starting_points(aniso, 5, 80.0, seed=8)
    name, opts = ("amed", {}) if base is None else ("amed_plugin", {"base": base})
    pred = _predictor(aniso, seed=3)
    seen = []
    with torch.no_grad():
        out = sample(name, aniso.denoiser, x, sig, predictor=pred, callback=seen.append, **opts)
    r = torch.stack([i["r"] for i in seen], 1)
    c = torch.stack([i["c"] for i in seen], 1)
    a = torch.stack([i["a"] for i in seen], 1)
    assert r.std() > 1e-3 and (c != 1).any() and (a != 1).any()
    for b in range(5):
        alone = sample(name, aniso.denoiser, x[b:b + 1], sig, r=r[b].tolist(), c=c[b].tolist(),
                       a=a[b].tolist(), **opts)
        torch.testing.assert_close(alone[0], out[b], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("base", [None, "euler", "dpm_solver_2", "ipndm", "dpmpp_2m"])
@pytest.mark.parametrize("afs", [False, True])
@pytest.mark.parametrize("final_zero", [False, True])
def test_nfe_ledger(ring, base, afs, final_zero):
    name, opts = ("amed", {}) if base is None else ("amed_plugin", {"base": base})
    for m in (1, 2, 5):
        sig = karras(m, 0.05, 20.0)
        if final_zero:
            sig = torch.cat([sig, sig.new_zeros(1)])
        counted = NFECounter(ring.denoiser)
        sample(name, counted, ring.sample(4, generator=0, sigma=20.0), sig, afs=afs, **opts)
        assert counted.count == SOLVERS[name].nfe(sig, afs=afs, **opts) == \
            2 * m - int(afs) + int(final_zero)
        if afs:
            assert counted.sigmas[0] < 20.0     # no evaluation at sigma_max


def test_afs_proxy_is_the_papers_direction():
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    d = amed.afs_denoised(x, torch.tensor(80.0, dtype=F64))
    torch.testing.assert_close((x - d) / 80.0, x / math.sqrt(1 + 80.0 ** 2), rtol=1e-14, atol=0)


STEPS = [16, 32, 64, 128]


@pytest.mark.parametrize("base, expected", [(None, 2), ("euler", 1), ("dpm_solver_2", 2),
                                            ("ipndm", 2), ("dpmpp_2m", 2)])
def test_fixed_predictor_orders(base, expected):
    """Measured global order on the 1-D two-mode mixture (lambda-uniform grid 2 -> 0.05), equal
    to the registry's order for the fixed predictor."""
    target = GaussianMixture.two_mode_1d()
    name, opts = ("amed", {}) if base is None else ("amed_plugin", {"base": base})
    assert SOLVERS[name].order_for(**opts) == expected
    rows = defect_sweep(target, [("s", name, opts)], STEPS,
                        lambda m: grids.lambda_uniform(m, sigma_min=0.05, sigma_max=2.0), n=16,
                        seed=0)
    est = fit_order(rows, "s")
    assert abs(est.order - expected) <= 0.25, est


def test_registry_orders_for_non_default_options():
    assert SOLVERS["amed"].order_for(r=0.3) == 1
    assert SOLVERS["amed"].order_for(c=1.01) == 0
    assert SOLVERS["amed"].order_for(afs=True) == 1
    assert SOLVERS["amed_plugin"].order_for(base="dpm_solver_2", r=0.3) == 2
    assert SOLVERS["amed_plugin"].order_for(base="ipndm", r=0.3) == 1


def test_float32_and_image_shaped_input(aniso):
    target = GaussianMixture.random_anisotropic(4, 2, seed=1).to(dtype=torch.float32)
    sig = karras(3).float()
    x = starting_points(target, 6, 80.0, seed=1).reshape(6, 1, 2, 2)
    pred = _predictor(target, kind="projection", dtype=torch.float64)
    for name, opts in (("amed", {}), ("amed_plugin", {"base": "ipndm"})):
        out = sample(name, target.denoiser, x, sig, predictor=pred, **opts)
        assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------
# training, save/load
# ---------------------------------------------------------------------------------------------

def _cfg(**kw):
    base = dict(steps=3, afs=True, n_train=512, batch_size=128, seed=0)
    base.update(kw)
    return AMEDTrainingConfig(**base)


@pytest.fixture(scope="module")
def trained_ring(ring):
    return train_amed(ring, _cfg())


def test_training_reduces_the_held_out_defect(ring, trained_ring):
    sig = trained_ring.config.student_grid()
    x = starting_points(ring, 200, 80.0, seed=99)
    ref = solve_pf_ode(ring, x, 80.0, 0.002)
    before = sample("amed", ring.denoiser, x, sig, afs=True)
    after = sample("amed", ring.denoiser, x, sig, predictor=trained_ring.predictor)
    d_before = (before - ref).norm(dim=1).median()
    d_after = (after - ref).norm(dim=1).median()
    assert d_after < 0.7 * d_before, (float(d_before), float(d_after))


def test_training_is_reproducible(ring, trained_ring):
    again = train_amed(ring, _cfg())
    for k, v in trained_ring.predictor.state_dict().items():
        assert torch.equal(v, again.predictor.state_dict()[k]), k
    assert [r["loss"] for r in again.log] == [r["loss"] for r in trained_ring.log]


def test_multistep_plugin_trains_by_rollout_and_exact_teacher_matches_reference(ring):
    cfg = _cfg(base="ipndm", n_train=128, teacher="exact")
    assert cfg.resolved_student_input() == "rollout"
    out = train_amed(ring, cfg)
    assert len(out.log) == 3 and all(math.isfinite(r["loss"]) for r in out.log)
    x = starting_points(ring, 8, 80.0, seed=5)
    ys = teacher_trajectory(ring, x, cfg)
    torch.testing.assert_close(ys[-1], solve_pf_ode(ring, x, 80.0, 0.002), rtol=1e-9, atol=1e-9)


def test_paper_teacher_is_sliced_at_the_student_points(ring):
    cfg = _cfg(base="ipndm")
    x = starting_points(ring, 4, 80.0, seed=6)
    ys = teacher_trajectory(ring, x, cfg)
    full = sample("ipndm", ring.denoiser, x, cfg.teacher_grid())
    assert len(ys) == 4 and torch.equal(ys[-1], full)


def test_save_load_round_trip_and_mismatches(tmp_path, ring, trained_ring):
    path = save_predictor(trained_ring.predictor, tmp_path / "p.pt")
    sig = trained_ring.config.student_grid()
    loaded = load_predictor(path, target=ring, expect={"grid": sig, "nfe": 5, "target_dim": 2})
    x = starting_points(ring, 16, 80.0, seed=7)
    torch.testing.assert_close(sample("amed", ring.denoiser, x, sig, predictor=loaded),
                               sample("amed", ring.denoiser, x, sig,
                                      predictor=trained_ring.predictor), rtol=0, atol=0)
    with pytest.raises(ValueError, match="grid"):
        load_predictor(path, target=ring, expect={"grid": karras(4)})
    with pytest.raises(ValueError, match="nfe"):
        load_predictor(path, target=ring, expect={"nfe": 7})
    with pytest.raises(ValueError, match="dimension 2"):
        load_predictor(path, target=GaussianMixture.random_anisotropic(3, 8, seed=0))
    with pytest.raises(ValueError, match="components"):
        load_predictor(path, target=GaussianMixture.ring_2d(n_modes=6))
    with pytest.raises(ValueError, match="target="):
        load_predictor(path)


def test_sampler_refuses_a_predictor_trained_for_something_else(ring, trained_ring):
    pred = trained_ring.predictor
    x = starting_points(ring, 4, 80.0, seed=8)
    with pytest.raises(ValueError, match=r"trained for the grid .*3 steps, NFE 5"):
        sample("amed", ring.denoiser, x, karras(4), predictor=pred)
    with pytest.raises(ValueError, match="afs=True"):
        sample("amed", ring.denoiser, x, karras(3), predictor=pred, afs=False)
    with pytest.raises(ValueError, match="trained for amed, not amed_plugin"):
        sample("amed_plugin", ring.denoiser, x, karras(3), predictor=pred, base="euler")
    x3 = torch.zeros(4, 3, dtype=F64)
    with pytest.raises(ValueError, match="target dimension 2"):
        sample("amed", lambda y, s: y, x3, karras(3), predictor=pred)


def test_bad_input_is_reported(ring):
    x = starting_points(ring, 4, 80.0, seed=9)
    sig = karras(3)
    with pytest.raises(ValueError, match="'heun'"):
        sample("amed_plugin", ring.denoiser, x, sig, base="heun")
    with pytest.raises(ValueError, match="'heun'"):
        AMEDTrainingConfig(base="heun")
    with pytest.raises(ValueError, match="either predictor"):
        sample("amed", ring.denoiser, x, sig, predictor=_predictor(ring), r=0.3)
    with pytest.raises(ValueError, match="r must lie"):
        sample("amed", ring.denoiser, x, sig, r=1.5)
    with pytest.raises(ValueError, match="3 numbers"):
        sample("amed", ring.denoiser, x, sig, r=[0.5, 0.5])
    with pytest.raises(ValueError, match="order"):
        sample("amed_plugin", ring.denoiser, x, sig, base="ipndm", order=6)
    with pytest.raises(ValueError, match="order"):
        sample("amed_plugin", ring.denoiser, x, sig, base="euler", order=2)
    with pytest.raises(TypeError, match="predictor"):
        sample("amed", ring.denoiser, x, sig, predictor="weights.pt")
    with pytest.raises(ValueError, match="multistep"):
        AMEDTrainingConfig(base="ipndm", student_input="teacher")


def test_nan_features_are_refused(ring):
    pred = _predictor(ring, kind="projection")
    sig = karras(3)
    x = starting_points(ring, 4, 80.0, seed=10)

    def broken(y, s):
        out = ring.denoiser(y, s)
        return out * float("nan") if float(torch.as_tensor(s).detach().reshape(-1)[0]) < 20 else out

    with pytest.raises(ValueError, match="NaN"):
        sample("amed", broken, x, sig, predictor=pred)
