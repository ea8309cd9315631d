"""Checks every study's test module runs, written once: import them into the module (pytest
collects an imported ``test_*`` function there, with that module's ``study``/``first_run``
fixtures from conftest)."""
from samplerlab.experiments.studies.base import Context


def _without_timing(tables):
    return {name: rows for name, rows in tables.items() if not name.endswith("_timing")}


def test_same_seed_gives_the_same_tables(study, first_run, tmp_path):
    """A second run with the same seed reproduces every data table exactly (wall-clock timing
    tables aside)."""
    _, result = first_run
    again = study.run(Context(out=tmp_path, quick=True, seed=0))
    assert _without_timing(again.tables) == _without_timing(result.tables)
