"""Every built-in sampler reproduces, bitwise, the outputs recorded before the registry refactor
of issue 11 (tests/_builtin_outputs.py; fixed grid, seed and float64)."""
import json

import pytest
import torch

from _builtin_outputs import PATH, cases, run_case  # noqa: E402
from samplerlab.solvers import SOLVERS

RECORDED = json.loads(PATH.read_text())


def test_every_builtin_was_recorded():
    recorded = {k.split("|")[0] for k in RECORDED}
    builtin = {n for n, s in SOLVERS.items() if getattr(s, "builtin", True)}
    assert builtin <= recorded


@pytest.mark.parametrize("label,name,opts", cases(), ids=[c[0] for c in cases()])
def test_bitwise_as_recorded(label, name, opts):
    for final_zero in (False, True):
        out = run_case(name, opts, final_zero)
        want = torch.tensor([float.fromhex(v) for v in RECORDED[f"{label}|zero={final_zero}"]],
                            dtype=torch.float64).reshape(out.shape)
        assert torch.equal(out, want), (label, final_zero)
