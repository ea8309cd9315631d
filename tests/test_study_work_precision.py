"""Study ``work-precision`` in quick mode: orders, order card, timing table, figures,
determinism."""
import pytest

from samplerlab.experiments.studies import STUDIES, load_studies
from samplerlab.experiments.studies.work_precision import deterministic_samplers
from samplerlab.solvers import SOLVERS

from _study_checks import test_same_seed_gives_the_same_tables  # noqa: E402,F401

CARD_KEYS = {"sampler", "family", "declared", "theory", "measured", "interval", "points"}


STUDY_NAME = "work-precision"  # fixtures `study` and `first_run`: tests/conftest.py


def test_covers_every_deterministic_sampler(first_run):
    _, result = first_run
    names = deterministic_samplers()
    assert "fv_ideal" not in names and all(not SOLVERS[n].stochastic for n in names)
    assert {r["name"] for r in result.tables["defect"]} == set(names)
    assert len(result.tables["defect"]) == len(result.tables["defect_timing"])


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_solver_2", "dpmpp_2s", "res_2s",
                                  "lagrange", "dpmpp_2m"])
def test_measured_order_on_the_64_dimensional_target(first_run, name):
    _, result = first_run
    row = next(r for r in result.tables["orders"]
               if r["name"] == name and r["target"].startswith("anisotropic"))
    assert row["order"] is not None and abs(row["order"] - row["declared"]) <= 0.2, row


def test_order_card(first_run):
    _, result = first_run
    card = result.extra["order_card"]
    assert [r["sampler"] for r in card] == deterministic_samplers()
    assert all(set(r) == CARD_KEYS for r in card)
    by = {r["sampler"]: r for r in card}
    assert by["res_2s"]["theory"] == "2 (stiff 2)"
    assert by["dpmpp_2s"]["theory"] == "2 (stiff 1)"
    assert by["dpmpp_3m"]["theory"].startswith("2 (stiff 2")
    assert by["lagrange"]["theory"] == "\u2014"
    assert all(r["declared"] == SOLVERS[r["sampler"]].order_for() for r in card)


def test_figures_and_timing_table_name(first_run):
    out, result = first_run
    assert any(k.endswith("_timing") for k in result.tables)
    assert not any("seconds" in r for r in result.tables["defect"])
    assert len(result.figures) == 2
    for fig in result.figures:
        assert (out / fig["path"]).stat().st_size > 0

