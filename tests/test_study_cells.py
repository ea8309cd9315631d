"""The studies' cells (experiments.executors) give the serial numbers on worker processes:
``reproduce`` with two workers writes byte-identical CSVs for every study that submits its
sweeps, references, trainings and figures as cells, and a failing cell names itself and leaves
none of its study's outputs behind.

Tiny sizes (each study's ``study_settings`` patched in this process; the settings travel to the
workers as cell arguments) and one figure (drawn as a cell and compared byte for byte; the other
figures are skipped): the identity test took 58 s at load average 2.5 on two cores, most of it
fixed costs (two workers importing torch and warming the symbolic coefficient caches, the exact
references' DOP853 solves).
"""
import filecmp

import pytest

from samplerlab.experiments.cli import main
from samplerlab.experiments.reproduce import reproduce
from samplerlab.experiments.studies import STUDIES, load_studies
from samplerlab.experiments.studies.base import draw_figures

TINY = {
    "sign-cancellation": {"steps": [8, 16], "n": 6, "n_low": 6, "lookahead_steps": [4, 8],
                          "n_lookahead": 6},
    "lagrange-order": {"T_li": [16, 32], "n": 6, "lambda_steps": [], "tv_panels": 60,
                       "tv_cases": [(2, None, [8])], "dims": [1, 2, 4], "dim_seeds": 1,
                       "dim_T": 8, "dim_n": 6, "equal_nfe": [30], "equal_nfe_n": 6},
    "res-order-conditions": {"targets": ["two_mode_1d"], "n": 6, "karras_nfe": [12, 24],
                             "alt_nfe": [48], "alt_grids": ["sigma_uniform"], "n_headline": 12,
                             "tolerance": 5e-2, "n_local": 6, "n_smooth": 2,
                             "smooth_points": 41, "n_churn": 40, "churn_steps": [4]},
    "work-precision": {"steps": [4, 8], "n": {"ring_2d": 3, "anisotropic_d64": 2}},
    "amed": {"targets": ["ring_2d"], "nfe": [4, 5], "n_train": 48, "n_eval": 12, "n_tv": 12,
             "ablation_targets": ["ring_2d"], "ablation_features": ["zeros"],
             "exact_teacher": 0, "afs_ablation": False, "search_targets": ["ring_2d"],
             "search_r": [0.3, 0.6], "search_n": 6, "search_configs": ["AMED-Solver"],
             "pca": [(4, 2, "0.01-1")], "pca_n": 4, "shell_n": 20, "shell_dims": [4, 16]},
    "high-dimension": {"dims": [2, 64], "steps": [4, 8], "n": {2: 4, 64: 2}},
}
#: module attributes read only in the parent process (they decide which cells are submitted), so
#: patching them here is seen by every cell: work-precision on five samplers instead of 21
PARENT_ONLY = {"work-precision": {"deterministic_samplers":
                                  lambda: ["euler", "heun", "dpmpp_2m", "res_2s", "unipc"]}}
TIMING = ("_timing.csv",)          # wall-clock tables: never byte-identical
#: the one figure drawn (as a cell) in these runs; the studies' other figures are skipped
FIGURE = ("sign-cancellation", "_figure_opposite")


def _tiny(monkeypatch, names, figure=FIGURE):
    load_studies()
    for name in names:
        module = __import__(STUDIES[name].run.__module__, fromlist=["study_settings"])
        monkeypatch.setattr(module, "study_settings", lambda quick, s=TINY[name]: dict(s))
        for attr, value in PARENT_ONLY.get(name, {}).items():
            monkeypatch.setattr(module, attr, value)
        keep = figure[1] if name == figure[0] else None
        monkeypatch.setattr(module, "draw_figures", lambda ctx, figs, keep=keep: draw_figures(
            ctx, [(fn, args) for fn, args in figs if fn.__name__ == keep]))


def test_jobs_2_writes_the_serial_csvs(tmp_path, monkeypatch):
    _tiny(monkeypatch, list(TINY))
    serial, jobs2 = tmp_path / "serial", tmp_path / "jobs2"
    with open(tmp_path / "log", "w") as log:
        assert reproduce(only=list(TINY), out=serial, quick=True, progress=False,
                         stream=log) == 0
        assert reproduce(only=list(TINY), out=jobs2, quick=True, progress=False, jobs=2,
                         stream=log) == 0
    names = sorted(p.name for p in serial.iterdir()
                   if p.suffix in (".csv", ".png", ".pdf") and not p.name.endswith(TIMING))
    assert sorted(p.name for p in jobs2.iterdir()
                  if p.suffix in (".csv", ".png", ".pdf") and not p.name.endswith(TIMING)) == names
    for study in TINY:                    # every study wrote its tables
        assert any(n.startswith(f"{study}__") and n.endswith(".csv") for n in names), study
    assert f"{FIGURE[0]}__opposite_signs.png" in names
    _, mismatch, errors = filecmp.cmpfiles(serial, jobs2, names, shallow=False)
    assert not mismatch and not errors, mismatch


def test_a_failing_cell_is_named_and_its_study_writes_nothing(tmp_path, monkeypatch, capsys):
    """A cell that raises (here: a grid of 0 steps in every sweep cell) stops the run with the
    first failing cell's description; no table, figure or report is written. Serial, to keep the
    suite short: on workers the same map_calls reads the exception from the cell's future."""
    monkeypatch.setitem(TINY, "high-dimension", dict(TINY["high-dimension"], steps=[0, 4]))
    _tiny(monkeypatch, ["high-dimension"])
    out = tmp_path / "out"
    assert main(["reproduce", "--only", "high-dimension", "--quick", "--no-progress",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cell 'sweep d=2 euler' failed: ValueError" in err, err
    assert "outputs of the unfinished study were not written" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("bad", ["tpu", "cuda:0"])
def test_reproduce_device_is_named(bad, tmp_path):
    with pytest.raises(ValueError, match="device must be one of"):
        reproduce(only=["high-dimension"], device=bad, out=tmp_path, progress=False)
