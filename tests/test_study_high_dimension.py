"""Study ``high-dimension`` in quick mode: orders at d = 2, 64, 3072 on the image-like low-rank
family, NFE-to-tolerance, ranking, determinism; and its interpolation helpers."""
import math

import pytest

from samplerlab.experiments.studies.high_dimension import (SAMPLERS, interpolate_loglog,
                                                           _nfe_to_tol)

from _study_checks import test_same_seed_gives_the_same_tables  # noqa: E402,F401

STUDY_NAME = "high-dimension"  # fixtures `study` and `first_run`: tests/conftest.py


def test_interpolation_helpers():
    assert interpolate_loglog([10, 100], [1.0, 0.01], 10 ** 1.5) == pytest.approx(0.1)
    assert interpolate_loglog([10, 100], [1.0, 0.01], 5) is None
    rows = [{"nfe": 10, "rms_defect_median": 1e-2}, {"nfe": 100, "rms_defect_median": 1e-4}]
    assert _nfe_to_tol(rows, 1e-3) == pytest.approx(math.sqrt(10) * 10)
    assert _nfe_to_tol(rows, 1e-5) is None


def test_tables_cover_every_dimension_and_sampler(first_run):
    _, result = first_run
    dims = sorted({r["d"] for r in result.tables["defect"]})
    assert dims == [2, 64, 3072]
    assert {r["sampler"] for r in result.tables["orders"]} == set(SAMPLERS)
    assert len(result.claims) == 3


@pytest.mark.parametrize("name", ["euler", "heun", "res_2s", "dpmpp_2m"])
def test_order_at_image_size(first_run, name):
    """At d = 3072 the measured order is the declared one (within 0.2)."""
    _, result = first_run
    row = next(r for r in result.tables["orders"] if r["d"] == 3072 and r["sampler"] == name)
    assert row["order"] is not None and abs(row["order"] - row["declared"]) <= 0.2, row
