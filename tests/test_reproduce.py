"""The `samplerlab reproduce` machinery: study registry, atomic deterministic output, REPORT.md."""
import json

import pytest

from samplerlab.experiments import reproduce as reproduce_mod
from samplerlab.experiments.cli import main
from samplerlab.experiments.io import write_csv
from samplerlab.experiments.studies import STUDIES, load_studies
from samplerlab.experiments.studies.base import Claim, StudyResult, register_study

REQUIRED = {"sign-cancellation", "lagrange-order", "provable-acceleration",
            "res-order-conditions", "work-precision", "amed"}


@pytest.fixture(scope="module")
def toy_study():
    name = "toy-study-for-tests"
    if name not in STUDIES:
        @register_study(name, "toy", "none")
        def _toy(ctx):
            g = ctx.generator(1)
            import torch
            vals = torch.randn(5, generator=g, dtype=torch.float64).tolist()
            rows = [{"i": i, "value": v, "label": f"x{i}"} for i, v in enumerate(vals)]
            claim = Claim(study=name, paper="toy", statement="values are finite",
                          paper_value="finite", measured=f"{len(vals)} finite values",
                          verdict="reproduced", reason="toy")
            return StudyResult(name=name, tables={"values": rows}, claims=[claim], figures=[],
                               summary="toy summary\nsecond line",
                               extra={"settings": {"n": 5}})
    yield name
    STUDIES.pop(name, None)


def test_all_required_studies_are_registered():
    assert REQUIRED <= set(load_studies())


def test_unknown_study_name_fails_with_the_known_ones(tmp_path, capsys):
    with pytest.raises(ValueError, match="sign-cancellation"):
        reproduce_mod.reproduce(only=["no-such-study"], out=tmp_path, progress=False)
    assert main(["reproduce", "--only", "no-such-study", "--out", str(tmp_path)]) == 2
    assert "known studies" in capsys.readouterr().err


def test_same_seed_gives_identical_bytes_and_report_lists_claims(tmp_path, toy_study):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert reproduce_mod.reproduce(only=[toy_study], out=out, seed=3, progress=False) == 0
    csv = f"{toy_study}__values.csv"
    assert (a / csv).read_bytes() == (b / csv).read_bytes()
    settings = json.loads((a / f"{toy_study}__settings.json").read_text())
    assert settings["seed"] == 3 and settings["n"] == 5
    report = (a / "REPORT.md").read_text()
    assert "values are finite" in report and "**reproduced**" in report
    reproduce_mod.reproduce(only=[toy_study], out=b, seed=4, progress=False)
    assert (a / csv).read_bytes() != (b / csv).read_bytes()


def test_report_keeps_studies_from_earlier_runs(tmp_path, toy_study):
    reproduce_mod.reproduce(only=[toy_study], out=tmp_path, progress=False)
    stored = json.loads((tmp_path / f"{toy_study}__result.json").read_text())
    stored["name"] = "work-precision"
    stored["claims"][0]["statement"] = "a claim from an earlier run"
    (tmp_path / "work-precision__result.json").write_text(json.dumps(stored))
    reproduce_mod.reproduce(only=[toy_study], out=tmp_path, progress=False)
    report = (tmp_path / "REPORT.md").read_text()
    assert "a claim from an earlier run" in report and "values are finite" in report


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    write_csv(path, [{"a": 1.0}])
    before = path.read_bytes()

    class Boom(Exception):
        pass

    def explode(*args, **kwargs):
        raise Boom()

    monkeypatch.setattr("samplerlab.experiments.io.os.replace", explode)
    with pytest.raises(Boom):
        write_csv(path, [{"a": 2.0}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_bad_dtype_and_device(tmp_path, toy_study):
    with pytest.raises(ValueError, match="dtype"):
        reproduce_mod.reproduce(only=[toy_study], out=tmp_path, dtype="float16", progress=False)
    with pytest.raises(ValueError, match="device"):
        reproduce_mod.reproduce(only=[toy_study], out=tmp_path, device="tpu", progress=False)
