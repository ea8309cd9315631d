"""Sweep cells on other executors (experiments.executors): local processes and a real Dask
LocalCluster give exactly the serial numbers; bad executor settings raise naming the argument.
``reproduce --jobs 2`` against the serial CSVs of every study: tests/test_study_cells.py."""
import concurrent.futures as cf
import pytest
import torch

from samplerlab.experiments.convergence import defect_sweep
from samplerlab.experiments.executors import (CellError, SerialExecutor, cell_executor, map_calls,
                                              map_cells, use_executor)
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


def test_map_calls_mixes_functions_keeps_order_and_stops_inline_at_a_failure():
    ran = []

    def note(i, scale=1):
        ran.append(i)
        return _fail(i) * scale

    calls = [("a", abs, (-3,)), ("b", divmod, (7, 2)), ("c", note, (1,), {"scale": 10})]
    assert map_calls(calls, SerialExecutor()) == [3, (3, 1), 10]
    ran.clear()
    with pytest.raises(CellError, match="cell 'two' failed: ZeroDivisionError: boom"):
        map_calls([(n, note, (i,)) for i, n in enumerate(["zero", "one", "two", "three"])],
                  SerialExecutor())
    assert ran == [0, 1, 2]            # inline: nothing after the failing call runs
    for bad in [("x", abs), ("x", abs, [1]), (1, abs, (1,)), ("x", 3, ()), ("x", abs, (1,), [])]:
        with pytest.raises(TypeError, match="calls must be"):
            map_calls([bad], SerialExecutor())


def test_dask_local_cluster_gives_identical_rows():
    distributed = pytest.importorskip("dask.distributed")
    serial = _sweep()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with cell_executor(dask=cluster.scheduler_address) as ex, use_executor(ex):
            parallel = _sweep()
    assert parallel == serial


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
