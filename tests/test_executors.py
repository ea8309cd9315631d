"""Sweep cells on other executors (experiments.executors): local processes and a real Dask
LocalCluster give exactly the serial numbers; bad executor settings raise naming the argument."""
import concurrent.futures as cf
import filecmp

import pytest
import torch

from samplerlab.experiments.convergence import defect_sweep
from samplerlab.experiments.executors import (CellError, SerialExecutor, cell_executor, map_cells,
                                              use_executor)
from samplerlab.experiments.reproduce import reproduce
from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import grids

SAMPLERS = ["euler", "res_2s", ("dpmpp_2m_lo", "dpmpp_2m", {"lower_order_final": False})]


def _sweep():
    target = GaussianMixture.random_anisotropic(3, 3, seed=1)
    return defect_sweep(target, SAMPLERS, [4, 8, 16],
                        lambda m: grids.karras(m, sigma_min=0.01, sigma_max=20.0), n=32, seed=3)


def _fail(i):
    if i == 2:
        raise ZeroDivisionError("boom")
    return i


def test_serial_executor_and_cell_errors():
    assert map_cells(abs, [("a", (-1,)), ("b", (2,))], SerialExecutor()) == [1, 2]
    with pytest.raises(CellError, match="cell 'c2' failed: ZeroDivisionError: boom"):
        map_cells(_fail, [(f"c{i}", (i,)) for i in range(4)], SerialExecutor())


def test_dask_local_cluster_gives_identical_rows():
    distributed = pytest.importorskip("dask.distributed")
    serial = _sweep()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with cell_executor(dask=cluster.scheduler_address) as ex, use_executor(ex):
            parallel = _sweep()
    assert parallel == serial


def _tiny_study(ctx):
    from samplerlab.experiments.studies.base import StudyResult
    return StudyResult(name="tiny-sweep", tables={"defect": _sweep()}, claims=[], figures=[],
                       summary="tiny sweep")


def test_reproduce_jobs_2_writes_the_same_csvs(tmp_path, monkeypatch):
    """`reproduce --jobs 2` (two spawned worker processes with the parent's torch thread count)
    and the serial run write byte-identical CSVs (a tiny registered
    study, so the test stays cheap; the real studies use the same defect_sweep cells)."""
    from samplerlab.experiments.studies import STUDIES, load_studies
    from samplerlab.experiments.studies.base import Study
    load_studies()
    monkeypatch.setitem(STUDIES, "tiny-sweep", Study("tiny-sweep", "tiny", "-", _tiny_study))
    a, b = tmp_path / "serial", tmp_path / "jobs2"
    with open(tmp_path / "log", "w") as log:
        assert reproduce(only=["tiny-sweep"], out=a, progress=False, stream=log) == 0
        assert reproduce(only=["tiny-sweep"], out=b, progress=False, jobs=2, stream=log) == 0
    csvs = sorted(p.name for p in a.glob("*.csv"))
    assert csvs == ["tiny-sweep__defect.csv"] == sorted(p.name for p in b.glob("*.csv"))
    _, mismatch, errors = filecmp.cmpfiles(a, b, csvs, shallow=False)
    assert not mismatch and not errors


def test_cli_jobs_below_one_is_an_error(capsys):
    from samplerlab.experiments.cli import main
    assert main(["reproduce", "--jobs", "0", "--only", "high-dimension"]) == 2
    assert "jobs must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(jobs=0), ValueError, "jobs must be an integer >= 1"),
    (dict(jobs=1.5), TypeError, "jobs"),
    (dict(jobs=2, dask="tcp://127.0.0.1:1"), ValueError, "not both"),
    (dict(dask=""), TypeError, "dask"),
])
def test_bad_settings(kwargs, err, match):
    with pytest.raises(err, match=match):
        with cell_executor(**kwargs):
            pass


def test_unreachable_dask_address():
    pytest.importorskip("dask.distributed")
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        with cell_executor(dask="tcp://127.0.0.1:9", timeout=1.0):
            pass


def test_use_executor_needs_an_executor():
    with pytest.raises(TypeError, match="executor"):
        with use_executor(object()):
            pass
