"""A user's own sampler (issue 11): register_exp_rk (validated and analysed by theory/),
register_multistep, register (any function), unregister; option ranges declared once and derived."""

import numpy as np
import pytest
import sympy
import torch

import samplerlab.solvers as solvers
from samplerlab.experiments.convergence import defect_sweep, fit_order
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import (SOLVERS, NFECounter, grids, register, register_exp_rk,
                                register_multistep, sample, unregister)
from samplerlab.theory import exp_rk
from samplerlab.theory.exp_rk import h
from samplerlab.theory.multistep import exp_adams_weights
from samplerlab.theory.phi_functions import Phi
from samplerlab.theory.single_step import MAX_LIMIT_WEIGHT, NODE_MIN, PARAM_RANGES

C2 = sympy.Rational(2, 3)
STAGE = [[0, 0], [C2 * Phi(1, -C2 * h), 0]]
RES_LIKE = [Phi(1, -h) - Phi(2, -h) / C2, Phi(2, -h) / C2]        # (2) holds: stiff order 2
DPMPP_LIKE = [Phi(1, -h) * (1 - 1 / (2 * C2)), Phi(1, -h) / (2 * C2)]  # (2) only as h -> 0


@pytest.fixture
def fresh():
    """Names registered by a test are removed afterwards."""
    before = set(SOLVERS)
    yield
    for name in set(SOLVERS) - before:
        unregister(name)


@pytest.fixture(scope="module")
def ring():
    return GaussianMixture.ring_2d()


def _x(target, n=6, sigma=20.0, seed=0):
    return target.sample(n, generator=torch.Generator().manual_seed(seed), sigma=sigma)


# --- register_exp_rk: derived orders, measured orders, compiled coefficients ------------------

def test_made_up_two_stage_methods_get_the_orders_theory_predicts(fresh):
    res_like = register_exp_rk("my_res", [0, C2], STAGE, RES_LIKE)
    dpmpp_like = register_exp_rk("my_dpmpp", [0, C2], STAGE, DPMPP_LIKE)
    assert (res_like.analysis.stiff_order, res_like.analysis.classical_order) == (2, 2)
    assert (dpmpp_like.analysis.stiff_order, dpmpp_like.analysis.classical_order) == (1, 2)
    assert res_like.order == dpmpp_like.order == 2
    assert res_like.analysis.underlying_order == 2
    violated = {c.name for c in dpmpp_like.analysis.violated()}
    assert "(2)" in violated and "(1)" not in violated
    assert not res_like.stochastic and res_like.nfe(grids.karras(5)) == 10


def test_measured_order_agrees_with_the_derived_order(fresh):
    target = GaussianMixture.two_mode_1d()
    register_exp_rk("my_res", [0, C2], STAGE, RES_LIKE)
    spec = register_exp_rk("my_dpmpp", [0, C2], STAGE, DPMPP_LIKE)
    steps = [8, 16, 32, 64]
    rows = defect_sweep(target, ["my_res", spec], steps,
                        lambda m: grids.karras(m, sigma_min=0.05, sigma_max=20.0), n=64, seed=1)
    for name in ("my_res", "my_dpmpp"):
        est = fit_order(rows, name)
        assert abs(est.order - SOLVERS[name].order) <= 0.2, (name, str(est))


def test_tableau_data_compiles_to_the_builtin_coefficients(fresh, ring):
    register_exp_rk("my_res", [0, C2], STAGE, RES_LIKE)
    sig = grids.karras(7, sigma_min=0.05, sigma_max=20.0)
    x = _x(ring)
    assert torch.equal(sample("my_res", ring.denoiser, x, sig),
                       sample("res_2s", ring.denoiser, x, sig, c2=2 / 3))
    tab = SOLVERS["my_res"].method
    from samplerlab.theory.step_form import step_coefficients
    a = step_coefficients(tab, sig[:-1].numpy(), sig[1:].numpy())
    b = step_coefficients("res_2s", sig[:-1].numpy(), sig[1:].numpy(), c2=2 / 3)
    assert np.array_equal(a.out_w, b.out_w) and np.array_equal(a.stage_w, b.stage_w)


def test_plain_numbers_and_phi_sym_are_accepted(fresh):
    from samplerlab.theory import phi_sym
    spec = register_exp_rk("my_euler", [0], [[0]], [phi_sym(1, -h)])
    assert spec.order == 1 and spec.analysis.stiff_order == 1
    spec = register_exp_rk("my_noisy", [0, C2], STAGE, RES_LIKE, noise="ancestral")
    assert spec.stochastic and spec.order == 1 and "eta" in spec.defaults


def test_reregistering_raises_unless_overwrite(fresh):
    register_exp_rk("my_res", [0, C2], STAGE, RES_LIKE)
    with pytest.raises(ValueError, match="already registered"):
        register_exp_rk("my_res", [0, C2], STAGE, DPMPP_LIKE)
    spec = register_exp_rk("my_res", [0, C2], STAGE, DPMPP_LIKE, overwrite=True)
    assert SOLVERS["my_res"] is spec and spec.analysis.stiff_order == 1
    with pytest.raises(ValueError, match="built-in"):
        register_exp_rk("res_2s", [0, C2], STAGE, RES_LIKE, overwrite=True)
    with pytest.raises(ValueError, match="built-in"):
        unregister("euler")
    unregister("my_res")
    assert "my_res" not in SOLVERS


@pytest.mark.parametrize("c,A,b,match", [
    ([0, C2], [[0, 1], [C2, 0]], [Phi(1, -h), 0], "A must be strictly lower triangular"),
    ([0, C2], [[0, 0], [C2, 0]], [Phi(1, -h)], "b must have length"),
    ([0, C2], [[0, 0]], [Phi(1, -h), 0], "A must be an s x s"),
    ([0, C2], [[0, 0], [C2, 0]], [1, 0], "b: sum_i b_i must equal phi_1"),
    ([0, C2], [[0, 0], [C2, 0]], [Phi(1, -h) - 1 / (1 - h), 1 / (1 - h)], "singular at h = 1"),
    ([0, C2], [[0, 0], [C2, 0]], [Phi(1, -h) - 1 / h, 1 / h], "not analytic at h = 0"),
    ([0, C2], [[0, 0], [1, 0]], RES_LIKE, "A: row 1 must sum to c"),
    ([0, -C2], [[0, 0], [-C2, 0]], [Phi(1, -h), 0], "c must hold real numbers >= 0"),
    ([0, sympy.Symbol("c2")], [[0, 0], [0, 0]], [Phi(1, -h), 0], "free symbols"),
    ([0, C2], [[0, 0], [C2 * sympy.Symbol("q"), 0]], RES_LIKE, "free symbols"),
    ([0, sympy.Rational(1, 4000)], [[0, 0], [sympy.Rational(1, 4000), 0]],
     [Phi(1, -h) - 2000 * Phi(1, -h), 2000 * Phi(1, -h)], "weight bound"),
])
def test_bad_tableaux_raise_at_registration(fresh, c, A, b, match):
    with pytest.raises(ValueError, match=match):
        register_exp_rk("bad", c, A, b)
    assert "bad" not in SOLVERS


def test_bad_argument_types(fresh):
    with pytest.raises(TypeError, match="c must be a sequence"):
        register_exp_rk("bad", 0.5, [[0]], [1])
    with pytest.raises(TypeError, match="A"):
        register_exp_rk("bad", [0], "A", [1])
    with pytest.raises(ValueError, match="identifier"):
        register_exp_rk("not a name", [0], [[0]], [Phi(1, -h)])


# --- register: any function ---------------------------------------------------------------------

def hand_euler(denoiser, x, sigmas, *, generator=None, callback=None):
    """Euler in sigma, written by hand."""
    for i in range(sigmas.numel() - 1):
        d = denoiser(x, sigmas[i])
        x = d + (sigmas[i + 1] / sigmas[i]) * (x - d)
    return x


def test_register_a_function(fresh, ring):
    spec = register("hand_euler", hand_euler, order=1, nfe_per_step=1)
    sig = grids.karras(6, sigma_min=0.05, sigma_max=20.0)
    x = _x(ring)
    counted = NFECounter(ring.denoiser)
    out = sample("hand_euler", counted, x, sig)
    assert counted.count == spec.nfe(sig) == 6
    assert torch.allclose(out, sample("euler", ring.denoiser, x, sig), rtol=0, atol=1e-12)
    assert solvers.sample_hand_euler(ring.denoiser, x, sig).shape == x.shape
    assert torch.equal(sample(hand_euler, ring.denoiser, x, sig), out)   # a plain callable
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):    # the registry's checks
        sample("hand_euler", ring.denoiser, x.numpy(), sig)
    with pytest.raises(ValueError, match="already registered"):
        register("hand_euler", hand_euler, order=1)


@pytest.mark.parametrize("fn,err,match", [
    (lambda d, x, s, **k: x[:1], ValueError, "returned shape"),
    (lambda d, x, s, **k: x.float(), TypeError, "returned torch.float32"),
    (lambda d, x, s, **k: x.numpy(), TypeError, "returned ndarray"),
    (lambda d, x, s, **k: x * float("nan"), ValueError, "NaN"),
])
def test_function_output_is_checked(fn, err, match, ring):
    with pytest.raises(err, match=match):
        sample(fn, ring.denoiser, _x(ring), grids.karras(3, sigma_min=0.05, sigma_max=20.0))


def test_register_rejects_bad_metadata(fresh):
    with pytest.raises(TypeError, match="fn must be callable"):
        register("bad", 3, order=1)
    with pytest.raises(ValueError, match="order"):
        register("bad", hand_euler, order=-1)
    with pytest.raises(ValueError, match="nfe_per_step"):
        register("bad", hand_euler, order=1, nfe_per_step=0)


# --- register_multistep --------------------------------------------------------------------------

def test_register_multistep_from_a_weight_set_and_from_a_function(fresh, ring):
    register_multistep("my_res2m", "res", prediction="data", order=2)

    def weights(sigmas, orders):        # theory's exact exponential Adams weights, as a function
        return sigmas[1:] / sigmas[:-1], exp_adams_weights(sigmas, orders, "data")

    spec = register_multistep("my_res2m_fn", weights, prediction="data", order=2)
    assert spec.order == 2 and spec.family == "multistep"
    sig = grids.karras(7, sigma_min=0.05, sigma_max=20.0)
    x = _x(ring)
    want = sample("res_2m", ring.denoiser, x, sig)
    assert torch.equal(sample("my_res2m", ring.denoiser, x, sig), want)
    assert torch.equal(sample("my_res2m_fn", ring.denoiser, x, sig), want)
    three = register_multistep("my_res3m", "res", prediction="data", order=3)
    assert three.order == 2 and three.order_for(warmup="single_step") == 3
    counted = NFECounter(ring.denoiser)
    sample("my_res3m", counted, x, sig, warmup="single_step")
    assert counted.count == three.nfe(sig, warmup="single_step")


def test_register_multistep_bad_input(fresh, ring):
    with pytest.raises(ValueError, match="prediction"):
        register_multistep("bad", "res", prediction="score", order=2)
    with pytest.raises(ValueError, match="weights must be a callable or one of"):
        register_multistep("bad", "nope", order=2)
    register_multistep("bad_shape", lambda s, o: (s[1:] / s[:-1], np.ones((3, 1))), order=2)
    with pytest.raises(ValueError, match="must return out_x"):
        sample("bad_shape", ring.denoiser, _x(ring), grids.karras(6, sigma_min=0.05))
    register_multistep("bad_form", "deis", prediction="data", order=2)
    with pytest.raises(ValueError, match="noise form"):
        sample("bad_form", ring.denoiser, _x(ring), grids.karras(6, sigma_min=0.05))


# --- option ranges: declared once, derived from theory ---------------------------------------

@pytest.mark.parametrize("method,param", [("res_2s", "c2"), ("dpmpp_2s", "r"),
                                          ("dpm_solver_2", "r")])
def test_node_minimum_is_where_the_limit_tableau_reaches_the_weight_bound(method, param):
    """The closed form NODE_MIN = 1/(2W) equals the derivation: at the minimum the largest entry
    of the h -> 0 limit tableau is exactly W, just below it exceeds W."""
    low = sympy.Rational(1, int(round(1 / NODE_MIN)))
    assert PARAM_RANGES[method][param] == (NODE_MIN, 1.0)
    for value, within in ((low, True), (low * sympy.Rational(999, 1000), False)):
        A0, b0 = exp_rk.limit_tableau(exp_rk.get_tableau(method, **{param: value}))
        biggest = max(abs(v) for v in list(A0) + list(b0))
        assert (biggest <= MAX_LIMIT_WEIGHT) == within
    A0, b0 = exp_rk.limit_tableau(exp_rk.get_tableau(method, **{param: low}))
    assert float(max(abs(v) for v in list(A0) + list(b0))) == MAX_LIMIT_WEIGHT


def test_dpm_solver_3_minimum_keeps_the_limit_tableau_bounded():
    low = sympy.Rational(1, int(round(1 / NODE_MIN)))
    for r1, r2 in ((low, 1), (low, 2 * low), (sympy.Rational(1, 2), 1)):
        A0, b0 = exp_rk.limit_tableau(exp_rk.get_tableau("dpm_solver_3", r1=r1, r2=r2))
        assert max(abs(v) for v in list(A0) + list(b0)) <= MAX_LIMIT_WEIGHT


@pytest.mark.parametrize("name,opt", [("res_2s", "c2"), ("dpmpp_2s", "r"), ("dpm_solver_2", "r"),
                                      ("res_sde", "c2")])
def test_node_range_both_sides_of_the_boundary(name, opt, ring):
    sig = grids.karras(4, sigma_min=0.05, sigma_max=20.0)
    x = _x(ring)
    out = sample(name, ring.denoiser, x, sig, generator=0, **{opt: NODE_MIN})
    assert torch.isfinite(out).all()
    for bad in (NODE_MIN * (1 - 1e-6), 1e-30, 1e-300, 0.0, 1.5):
        with pytest.raises(ValueError, match=rf"{opt} must lie in \[0.0005, 1(\.0)?\]"):
            sample(name, ring.denoiser, x, sig, generator=0, **{opt: bad})


def test_res_3s_near_singular_nodes_are_rejected_by_the_weight_bound(ring):
    sig = grids.karras(4, sigma_min=0.05, sigma_max=20.0)
    with pytest.raises(ValueError, match="exceeds the weight bound"):
        sample("res_3s", ring.denoiser, _x(ring), sig, c2=0.5, c3=0.5000001)


@pytest.mark.parametrize("name,opts,match", [
    ("ddpm", {"eta": 1.5}, r"eta must lie in \[0.0, 1.0\]"),
    ("res_sde", {"s_churn": -1.0}, "s_churn must lie in"),
    ("fv_ideal", {"tol": 0.0}, "tol must lie in"),
    ("fv_ideal", {"max_iter": 0}, "max_iter must be an integer >= 1"),
    ("lagrange", {"K": 0}, "K must be an integer >= 1"),
    ("lagrange", {"R": -1}, "R must be an integer >= 0"),
    ("amed", {"r": 1e-5}, r"r must lie in \[0.0005, 1.0\)"),
    ("amed_plugin", {"c": [1.0, -1.0, 1.0]}, r"c must lie in \(0.0, inf\]"),
])
def test_declared_ranges_name_the_option(name, opts, match, ring):
    with pytest.raises(ValueError, match=match):
        SOLVERS[name].options(**opts)


def test_option_schema_lists_defaults_and_ranges():
    schema = SOLVERS["res_sde"].option_schema()
    assert "0.0005" in schema["c2"] and "default 0.5" in schema["c2"]
    assert "[0, 1]" in schema["eta"]
    assert SOLVERS["dpm_solver_3"].ranges["r1"].low == NODE_MIN


# --- a family in named parameters ------------------------------------------------------------

def test_parametrised_tableau_has_a_declared_range_and_derived_orders(fresh, ring):
    c2 = sympy.Symbol("c2", positive=True)
    stage = [[0, 0], [c2 * Phi(1, -c2 * h), 0]]
    res_family = [Phi(1, -h) - Phi(2, -h) / c2, Phi(2, -h) / c2]
    spec = register_exp_rk("my_family", [0, c2], stage, res_family, params={"c2": (0.5, 0.01, 1)})
    assert spec.defaults == {"c2": 0.5} and "[0.01, 1]" in spec.option_schema()["c2"]
    assert spec.order == 2 and spec.order_for(c2=0.25) == 2
    sig = grids.karras(5, sigma_min=0.05, sigma_max=20.0)
    x = _x(ring)
    for v in (0.5, 0.3):     # the family at c2 is the built-in RES-2S at c2, bitwise
        assert torch.equal(sample("my_family", ring.denoiser, x, sig, c2=v),
                           sample("res_2s", ring.denoiser, x, sig, c2=v))
    with pytest.raises(ValueError, match=r"c2 must lie in \[0.01, 1"):
        sample("my_family", ring.denoiser, x, sig, c2=0.005)


def test_parametrised_tableau_bad_params(fresh):
    c2 = sympy.Symbol("c2", positive=True)
    stage = [[0, 0], [c2 * Phi(1, -c2 * h), 0]]
    b = [Phi(1, -h) - Phi(2, -h) / c2, Phi(2, -h) / c2]
    with pytest.raises(ValueError, match="at its low end"):
        register_exp_rk("bad", [0, c2], stage, b, params={"c2": (0.5, 1e-5, 1)})
    with pytest.raises(ValueError, match="does not declare"):
        register_exp_rk("bad", [0, c2], stage, b, params={"r": (0.5, 0.1, 1)})
    with pytest.raises(ValueError, match="low <= default <= high"):
        register_exp_rk("bad", [0, c2], stage, b, params={"c2": (2, 0.1, 1)})
    with pytest.raises(ValueError, match="free symbols"):
        register_exp_rk("bad", [0, c2], stage, b)
    assert "bad" not in SOLVERS
