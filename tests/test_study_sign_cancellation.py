"""Study ``sign-cancellation`` (seed 000) in quick mode: opposite signs, cancellation order,
F-DDIM vs the ideal forward value, the equal-NFE rule, figures, determinism."""
import pytest

from samplerlab.experiments.studies import STUDIES, load_studies
from samplerlab.experiments.studies.base import VERDICTS, Context
from samplerlab.experiments.studies.sign_cancellation import (LOW_NFE_SAMPLERS, slope_verdict,
                                                              steps_for_nfe)
from samplerlab.experiments.order import estimate_order

from _study_checks import test_same_seed_gives_the_same_tables  # noqa: E402,F401


STUDY_NAME = "sign-cancellation"  # fixtures `study` and `first_run`: tests/conftest.py


def _slope(result, target, quantity):
    return next(r for r in result.tables["slopes"]
                if r["target"] == target and r["quantity"] == quantity)


def test_forward_value_error_opposes_ddim(first_run):
    """Notes §3: opposite signs for > 99 % of the samples once M >= 16. The quick run has 100
    samples per target, so one sample is 1 %: M >= 32 must be unanimous-ish (>= 0.99), M = 16
    within two samples."""
    _, result = first_run
    for r in result.tables["signed_errors"]:
        if r["steps"] >= 32:
            assert r["opposite_fraction"] >= 0.99, r
        elif r["steps"] == 16:
            assert r["opposite_fraction"] >= 0.98, r
        assert r["median_e_ddim"] > 0 and r["median_e_fv"] < 0, r
        assert r["nfe_ddim"] == r["nfe_fddim"] == r["steps"]


def test_errors_are_first_order_and_their_sum_second_order(first_run):
    _, result = first_run
    for target in ("1-D two-mode", "2-D anisotropic"):
        for quantity, expected in (("e_DDIM", 1.0), ("e_FV", 1.0), ("e_DDIM + e_FV", 2.0)):
            r = _slope(result, target, quantity)
            assert r["order"] is not None
            assert abs(r["order"] - expected) <= 0.15 or r["ci_low"] <= expected <= r["ci_high"], r
        # F-DDIM approaches the ideal forward value at second order (pre-asymptotic at M <= 256
        # in the quick run: local slopes rise towards 2, the full run fits 1.91)
        assert _slope(result, target, "F-DDIM - FV")["order"] >= 1.7
        same_c = [r["constant_ratio_fv_to_ddim"] for r in result.tables["signed_errors"]
                  if r["target"] == target and r["steps"] >= 64]
        assert all(0.9 < c < 1.1 for c in same_c), same_c


def test_sum_shrinks_fourfold_per_doubling_from_the_raw_rows(first_run):
    """Independent of the fit: |e_DDIM + e_FV| ratio between M and 2M is close to 4 at M >= 32."""
    _, result = first_run
    for target in ("1-D two-mode", "2-D anisotropic"):
        rows = sorted((r for r in result.tables["signed_errors"] if r["target"] == target),
                      key=lambda r: r["steps"])
        est = estimate_order([r["steps"] for r in rows if r["steps"] >= 32],
                             [r["median_sum_norm"] for r in rows if r["steps"] >= 32])
        assert est.contains(2.0) or abs(est.order - 2.0) < 0.1, est


def test_low_nfe_uses_equal_nfe(first_run):
    _, result = first_run
    rows = result.tables["low_nfe"]
    assert {r["sampler"] for r in rows} == set(LOW_NFE_SAMPLERS)
    for r in rows:
        assert 4 <= r["nfe"] <= 10
        stages = {"dpm_solver_2": 2, "dpm_solver_3": 3}.get(r["sampler"], 1)
        assert r["steps"] * stages == r["nfe"], r
    assert not any(r["sampler"] == "dpm_solver_2" and r["nfe"] % 2 for r in rows)
    assert {r["nfe"] for r in rows if r["sampler"] == "dpm_solver_3"} == {6, 9}
    ctx = Context(out=None, quick=True)
    assert steps_for_nfe("dpm_solver_2", 5, ctx) is None
    assert steps_for_nfe("dpm_solver_2", 6, ctx) == 3
    assert steps_for_nfe("f_ddim", 7, ctx) == 7


def test_claims_and_figures(first_run):
    out, result = first_run
    assert len(result.claims) == 15
    assert all(c.verdict in VERDICTS for c in result.claims)
    # one low-NFE row per comparator the seed names, and the checks marked as checks
    low = [c.statement for c in result.claims if c.statement.startswith("at low NFE F-DDIM")]
    assert len(low) == 4 and any("DPM-Solver-3" in t for t in low)
    assert sum(c.kind == "check" for c in result.claims) == 2
    assert len(result.figures) == 3
    for fig in result.figures:
        assert (out / fig["path"]).stat().st_size > 0
        assert (out / fig["path"]).with_suffix(".pdf").exists()


def test_slope_verdict_rule():
    est = estimate_order([16, 32, 64, 128], [1.0, 0.25, 0.0625, 0.015625])
    assert slope_verdict(est, 2.0) == "reproduced"
    assert slope_verdict(est, 1.7) == "pre-asymptotic"
    assert slope_verdict(est, 1.0) == "not reproduced"
    assert slope_verdict(None, 1.0) == "not measured"


def test_lookahead_replica_is_f_ddim_and_the_ablation_is_measured(first_run):
    """The ablation's DDIM-lookahead replica reproduces the registry's F-DDIM to round-off (so
    the ablation varies only the lookahead), 'none' is DDIM, and 'random' is worse than the DDIM
    lookahead at few steps on both targets."""
    _, result = first_run
    rows = result.tables["lookahead"]
    assert {r["lookahead"] for r in rows} == {"none", "random", "ddim"}
    assert all(r["distance_to_registry_f_ddim"] < 1e-10 for r in rows if r["lookahead"] == "ddim")
    for target in ("1-D two-mode", "2-D anisotropic"):
        at4 = {r["lookahead"]: r for r in rows if r["target"] == target and r["steps"] == 4}
        assert at4["random"]["defect_median"] > at4["ddim"]["defect_median"]


def test_lookahead_none_is_ddim_and_bad_input():
    import torch
    from samplerlab.experiments.studies.sign_cancellation import forward_value_lookahead
    from samplerlab.experiments.targets import GaussianMixture
    from samplerlab.solvers import SOLVERS, grids
    t = GaussianMixture.two_mode_1d()
    x = t.sample(16, generator=torch.Generator().manual_seed(0), sigma=80.0)
    sig = grids.karras(6, 0.002, 80.0, 7.0)
    out, err = forward_value_lookahead(t.denoiser, x, sig, "none")
    assert torch.allclose(out, SOLVERS["euler"](t.denoiser, x, sig), rtol=0, atol=1e-12)
    assert err.shape == (6, 16) and float(err.abs().max()) == 0.0
    with pytest.raises(ValueError, match="lookahead"):
        forward_value_lookahead(t.denoiser, x, sig, "sideways")
    with pytest.raises(ValueError, match="generator"):
        forward_value_lookahead(t.denoiser, x, sig, "random")
    with pytest.raises(ValueError, match="sigmas"):
        forward_value_lookahead(t.denoiser, x, torch.cat([sig, torch.zeros(1)]), "ddim")

