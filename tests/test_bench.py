"""Smoke test of ``samplerlab bench`` at minimal sizes (no timing assertions)."""
import argparse
import csv
import io
import math

import pytest
import torch

from samplerlab.experiments.bench import add_parser, run_bench


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_bench_quick_writes_tables(tmp_path):
    stream = io.StringIO()
    res = run_bench(quick=True, out=tmp_path, samplers=["euler", "dpmpp_2m", "heun"],
                    dtypes=("float32",), threads=1, stream=stream)
    text = stream.getvalue()
    assert "overhead" in text and "throughput" in text and "reference" in text
    rows = _rows(tmp_path / "overhead.csv")
    ours = [r for r in rows if not r["sampler"].startswith(("diffusers:", "floor:"))
            and not r["sampler"].endswith(":unguarded")]
    # the guard-off rows (finite-value guard cost): dpmpp_2m again, with the same NFE
    unguarded = [r for r in rows if r["sampler"].endswith(":unguarded")]
    assert {(r["model"], r["sampler"]) for r in unguarded} == {
        (m, "dpmpp_2m:unguarded") for m in ("cheap", "expensive", "null")}
    assert all(int(r["nfe"]) == int(r["steps"]) for r in unguarded)
    assert "guard cost dpmpp_2m" in text
    floors = [r for r in rows if r["sampler"].startswith("floor:")]
    # the floor rows: one model call per step on the same grid, in every (model, dtype)
    assert {(r["model"], r["sampler"]) for r in floors} == {
        (m, s) for m in ("cheap", "expensive", "null") for s in ("floor:update", "floor:update+noise")}
    assert all(int(r["nfe"]) == int(r["steps"]) and float(r["model_s"]) > 0 for r in floors)
    # every (model, sampler) pair, with the NFE the registry declares on the shared grid
    assert {(r["model"], r["sampler"]) for r in ours} == {
        (m, s) for m in ("cheap", "expensive", "null") for s in ("euler", "dpmpp_2m", "heun")}
    for r in ours:
        steps, nfe = int(r["steps"]), int(r["nfe"])
        assert nfe == (2 * steps - 1 if r["sampler"] == "heun" else steps)
        assert float(r["model_s"]) > 0 and math.isfinite(float(r["overhead_ratio"]))
        assert float(r["total_over_model"]) == pytest.approx(1 + float(r["overhead_ratio"]))
    assert len(res["overhead"]) == len(rows)
    thr = _rows(tmp_path / "throughput.csv")
    assert {r["model"] for r in thr} == {"cheap", "expensive"}
    assert all(float(r["denoiser_samples_components_per_s"]) > 0 for r in thr)
    ref = _rows(tmp_path / "reference.csv")
    assert len(ref) == 1 and float(ref[0]["wall_s"]) > 0
    assert (tmp_path / "settings.json").exists()


def test_bench_diffusers_rows(tmp_path):
    pytest.importorskip("diffusers")
    run_bench(quick=True, out=tmp_path, samplers=["dpmpp_2m"], dtypes=("float64",),
              sections=("overhead",), threads=1, stream=io.StringIO())
    rows = _rows(tmp_path / "overhead.csv")
    labels = {r["sampler"] for r in rows}
    assert {"diffusers:DPMSolverMultistep", "diffusers:UniPCMultistep"} <= labels
    for r in rows:  # same NFE as samplerlab's dpmpp_2m on the same grid
        assert int(r["nfe"]) == int(r["steps"])
        if r["sampler"] == "diffusers:DPMSolverMultistep":
            assert float(r["vs_dpmsolver"]) == 1.0


def test_bench_cli_and_bad_input(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--quick", "--samplers", "euler", "--dtype", "float64",
                              "--sections", "reference", "--threads", "1", "--out", str(tmp_path),
                              "--device", "cpu"])
    assert args.func(args) == 0
    assert (tmp_path / "reference.csv").exists()
    args = parser.parse_args(["bench", "--quick", "--samplers", "fv_ideal", "--out", str(tmp_path)])
    assert args.func(args) == 2
    assert "fv_ideal" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dtypes"):
        run_bench(quick=True, out=tmp_path, dtypes=("float16",))
    with pytest.raises(ValueError, match="threads"):
        run_bench(quick=True, out=tmp_path, threads=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        run_bench(quick=True, out=tmp_path, samplers=["dpmpp_9m"])
    with pytest.raises(ValueError, match="device must be one of 'cpu', 'cuda', got 'tpu'"):
        run_bench(quick=True, out=tmp_path, device="tpu")
    if not torch.cuda.is_available():  # CUDA asked for where there is none: named, not a crash
        args = parser.parse_args(["bench", "--quick", "--device", "cuda", "--out", str(tmp_path)])
        assert args.func(args) == 2
        assert "--device 'cuda' requested but CUDA is not available" in capsys.readouterr().err
