"""Study ``lagrange-order`` in quick mode: slopes K, NFE ledger, figures, determinism."""
import pytest

from samplerlab.experiments.studies import STUDIES, load_studies
from samplerlab.experiments.studies.base import StudyResult, VERDICTS

from _study_checks import test_same_seed_gives_the_same_tables  # noqa: E402,F401


STUDY_NAME = "lagrange-order"  # fixtures `study` and `first_run`: tests/conftest.py


def _fit(result, quantity, sampler):
    return next(r for r in result.tables["orders"]
                if r["quantity"] == quantity and r["sampler"] == sampler)


def test_registered_as_seed_001(study):
    assert study.name == "lagrange-order" and study.seed_paper == "001"


@pytest.mark.parametrize("K", [2, 3, 4])
def test_defect_slope_is_K_against_inverse_step(first_run, K):
    """On the papers' schedule the median defect decays like h^K, h = c1 log T / T."""
    _, result = first_run
    fit = _fit(result, "defect_median vs 1/h", f"Lagrange K={K}")
    assert fit["expected"] == K
    assert fit["order"] is not None and abs(fit["order"] - K) <= 0.2, fit


def test_slope_against_T_is_lowered_by_the_log_factor(first_run):
    """Against T itself the slope is smaller than against 1/h (the schedule's log T factor)."""
    _, result = first_run
    for K in (2, 3, 4):
        vs_t = _fit(result, "defect_median vs T", f"Lagrange K={K}")["order"]
        vs_h = _fit(result, "defect_median vs 1/h", f"Lagrange K={K}")["order"]
        assert vs_t < vs_h


def test_nfe_ledger_matches_the_cost_formula(first_run):
    _, result = first_run
    rows = result.tables["defect"]
    assert rows and all(r["nfe"] == r["nfe_formula"] == r["steps"] * (1 + r["R"] * (r["K"] - 1))
                        for r in rows)


def test_tv_is_a_probability_distance_and_claims_are_complete(first_run):
    _, result = first_run
    assert isinstance(result, StudyResult)
    assert all(0.0 <= r["tv"] <= 1.0 for r in result.tables["tv"])
    assert all(c.verdict in VERDICTS for c in result.claims)
    assert len(result.claims) >= 6


def test_figures_written(first_run):
    out, result = first_run
    assert len(result.figures) == 3
    for fig in result.figures:
        assert (out / fig["path"]).stat().st_size > 0
        assert (out / fig["path"]).with_suffix(".pdf").exists()
        assert fig["caption"]



def test_equal_nfe_rows_spend_the_budget_and_checks_are_marked(first_run):
    """Every sampler of the equal-NFE comparison spends exactly each budget (ledger count), and the
    reconstruction's parity rule and the cost formula are checks, not paper claims."""
    _, result = first_run
    rows = result.tables["equal_nfe"]
    budgets = sorted({r["nfe"] for r in rows})
    assert budgets == [30, 60, 120]
    for r in rows:
        assert r["steps"] * r["nfe_per_step"] == r["nfe"], r
    assert {r["nfe_per_step"] for r in rows} == {1, 2, 3, 5, 10}
    kinds = {c.statement.split(":")[0]: c.kind for c in result.claims}
    assert kinds["parity rule"] == "check" and kinds["cost"] == "check"
    assert any("iterations" in c.paper_value for c in result.claims if c.kind == "claim")
