"""`samplerlab theory` weight-set entries: consistency residuals and printing."""
import pytest

from samplerlab.experiments.cli import main
from samplerlab.theory.cli import THEORY_ENTRIES
from samplerlab.theory.weight_sets import _ENTRIES


def _holds(name):
    title, symbols, weights, (stiff, classical, rows) = THEORY_ENTRIES[name].build()
    return {row["k"]: row["holds"] for row in rows}


@pytest.mark.parametrize("name, exact_degree", [("res_2m", 1), ("res_3m", 2), ("dpmpp_2m", 0),
                                                ("dpmpp_3m", 1), ("lms_4", 3), ("ipndm_4", 3)])
def test_weights_integrate_exactly_up_to_their_degree(name, exact_degree):
    holds = _holds(name)
    assert all(holds[k] for k in range(exact_degree + 1))
    assert not holds[exact_degree + 1]


@pytest.mark.parametrize("name", sorted(THEORY_ENTRIES))
def test_every_entry_prints(name, capsys):
    assert main(["theory", "show", name]) == 0
    out = capsys.readouterr().out
    assert out.strip()


def test_weight_sets_are_listed(capsys):
    assert main(["theory", "list"]) == 0
    out = capsys.readouterr().out
    for name in _ENTRIES:
        assert name in out


def test_unknown_name_lists_known_ones(capsys):
    assert main(["theory", "show", "no_such_method"]) == 2
    assert "res_2s" in capsys.readouterr().err
