"""Study ``amed`` in quick mode: equivalence, training gain at NFE 5, NFE ledger, 2-D subspace,
figures and determinism."""
import pytest
import torch

import samplerlab.experiments.studies.amed as amed_study
from samplerlab.experiments.studies import STUDIES
from samplerlab.experiments.studies.base import Context, StudyResult, VERDICTS


STUDY_NAME = "amed"  # fixtures `study` and `first_run`: tests/conftest.py


def test_registered_as_seed_004(study):
    assert study.name == "amed" and study.seed_paper == "004"


def test_r_half_c_one_is_dpm_solver_2(first_run):
    _, result = first_run
    claim = next(c for c in result.claims if "DPM-Solver-2 (Table 1)" in c.statement)
    assert claim.kind == "check" and claim.verdict == "passed", claim.measured


def test_training_lowers_the_held_out_defect_at_nfe_5(first_run):
    """Every trained configuration beats its own untrained version (r = 1/2, c = 1, same grid,
    same AFS) on the held-out starting points at NFE 5."""
    _, result = first_run
    rows = [r for r in result.tables["defect"] if r["nfe_target"] == 5]
    trained = [r for r in rows if r["kind"] == "trained"]
    assert len(trained) == len(amed_study.CONFIGS)
    for r in trained:
        before = next(b for b in rows if b["sampler"] == r["sampler"] + " r=1/2, c=1")
        assert r["defect_median"] < before["defect_median"], (r["sampler"], before, r)


def test_nfe_ledger_and_probability_distances(first_run):
    _, result = first_run
    rows = result.tables["defect"]
    assert rows and all(r["nfe"] == r["nfe_target"] for r in rows)
    assert all(0.0 <= r["tv"] <= 1.0 for r in rows if r["tv"] is not None)
    assert all(0.0 < r["r_mean"] < 1.0 and 0.99 <= r["c_mean"] <= 1.01
               for r in result.tables["learned_coefficients"])


def test_pca_reports_the_papers_number_and_a_line_for_one_isotropic_gaussian(first_run):
    _, result = first_run
    pca = result.tables["pca"]
    assert all(r["paper_rel_err_max"] == 0.08 for r in pca)
    line = next(r for r in pca if r["K"] == 1 and r["anisotropy"] == "isotropic")
    assert line["rel_err_max_max"] < 1e-10      # the exact trajectory is a straight line
    assert all(0.0 <= r["rel_err_max_median"] <= r["rel_err_max_max"] < 1.0 for r in pca)
    assert all(r["cumvar_k1_median"] <= r["cumvar_k2_median"] <= 1.0 + 1e-12 for r in pca)
    claim = next(c for c in result.claims if "2-D subspace" in c.statement)
    assert "0.08" in claim.paper_value or "8 %" in claim.paper_value


def test_pca_helper_on_a_planar_curve():
    t = torch.linspace(0, 1, 30, dtype=torch.float64)
    plane = torch.stack([t, t ** 2, torch.zeros_like(t)], 1) + 1.0
    bent = plane.clone()
    bent[:, 2] = 0.1 * t ** 3
    rel, disp, cum = amed_study.pca_subspace(torch.stack([plane, bent]))
    assert rel[0].max() < 1e-14 and rel[1].max() > 1e-4
    assert torch.allclose(cum[0, 1], torch.tensor(1.0, dtype=torch.float64))


def test_claims_and_figures(first_run):
    out, result = first_run
    assert isinstance(result, StudyResult)
    assert len(result.claims) >= 6 and all(c.verdict in VERDICTS for c in result.claims)
    assert len(result.figures) == 4
    for fig in result.figures:
        assert (out / fig["path"]).is_file() and fig["caption"]


def test_rerun_is_identical(study, first_run, tmp_path):
    _, a = first_run
    b = study.run(Context(out=tmp_path, quick=True, seed=0))
    for name, rows in a.tables.items():
        if name.endswith("_timing"):
            continue
        assert rows == b.tables[name], name


def test_thin_shell_width_falls_with_dimension():
    """Lemma 1 measurement: at sigma = 80 the noise dominates, the rms radius is sqrt(E|x0|^2/d +
    sigma^2) and the relative width halves (within sampling error) per factor 4 in d."""
    rows = amed_study.thin_shell_rows(Context(out=None, quick=True), 2000, dims=(16, 64, 256),
                                      sigmas=(80.0,))
    widths = [r["relative_width"] for r in rows]
    assert all(0.4 < b / a < 0.6 for a, b in zip(widths, widths[1:])), widths
    assert all(abs(r["radius_rms"] / r["radius_rms_expected"] - 1) < 0.01 for r in rows)


def test_plugin_vs_base_rows_and_cannot_fail_rows(first_run):
    """Each trained configuration is compared with its own base at the same NFE (median, mean,
    TV); the statements that hold by construction say so."""
    _, result = first_run
    rows = result.tables["vs_base"]
    assert len(rows) == len(amed_study.CONFIGS) * sum(1 for n in (4, 5, 6) if n % 2)
    for r in rows:
        assert r["better_in_all"] == all(r[f"{k}_better"] is not False
                                         for k in ("defect_median", "defect_mean", "tv"))
    by = {c.statement.split(" (")[0]: c for c in result.claims}
    assert by["The learned c_n sit below DPM-Solver-2's 1 on average"].verdict == "cannot fail here"
    grid = next(c for c in result.claims if c.statement.startswith("Grid-searched"))
    assert "held-out" in grid.measured
    assert all("relative_alignment_held_out" in r for r in result.tables["grid_search_alignment"])
