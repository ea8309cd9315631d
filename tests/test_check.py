"""samplerlab.experiments.check and ``samplerlab check`` (issue 11), at --quick sizes."""
import sympy
import pytest
import torch

from samplerlab.experiments import check
from samplerlab.experiments.check import AGREEMENT_TOL, load_sampler
from samplerlab.experiments.cli import main
from samplerlab.solvers import SOLVERS, register, unregister
from samplerlab.theory.exp_rk import ExpRKTableau, h
from samplerlab.theory.phi_functions import Phi

C2 = sympy.Rational(2, 3)
TABLEAU = ExpRKTableau("card_2s", (0, C2), [[0, 0], [C2 * Phi(1, -C2 * h), 0]],
                       [Phi(1, -h) * (1 - 1 / (2 * C2)), Phi(1, -h) / (2 * C2)])  # DPM-Solver++ style

MODULE = '''
from samplerlab.theory.exp_rk import ExpRKTableau, h
from samplerlab.theory.phi_functions import Phi

exp_euler = ExpRKTableau("mod_euler", (0,), [[0]], [Phi(1, -h)])
not_a_sampler = 3


def hand_euler(denoiser, x, sigmas, *, generator=None, callback=None):
    for i in range(sigmas.numel() - 1):
        d = denoiser(x, sigmas[i])
        x = d + (sigmas[i + 1] / sigmas[i]) * (x - d)
    return x
'''


def hand_euler(denoiser, x, sigmas, *, generator=None, callback=None):
    for i in range(sigmas.numel() - 1):
        d = denoiser(x, sigmas[i])
        x = d + (sigmas[i + 1] / sigmas[i]) * (x - d)
    return x


def test_card_of_a_tableau(tmp_path):
    report = check(TABLEAU, quick=True)
    a = report.symbolic
    assert (a.stiff_order, a.classical_order, a.underlying_order) == (1, 2, 2)
    assert "(2)" in {c.name for c in a.violated()}
    assert report.declared == 2 and report.nfe_per_step == 2 and report.nfe_declared_ok
    measured = [o for o in report.orders if o.get("order") is not None]
    assert {o["target"] for o in measured} == {"two_mode_1d", "ring_2d", "aniso_64d"}
    for o in measured:
        assert abs(o["order"] - 2) <= AGREEMENT_TOL, o
    assert not any("DISAGREE" in v for v in report.verdicts)
    assert {r["sampler"] for r in report.defects} >= {"card_2s", "heun", "res_2s"}
    paths = report.write(tmp_path)
    text = paths["md"].read_text()
    assert "stiff order 1" in text and "sum_i b_i c_i = phi_2(-h)" in text
    assert paths["csv"].read_text().startswith("section,")
    assert paths["png"].stat().st_size > 1000


def test_plain_callable_gets_order_one_and_the_ledger_nfe():
    report = check(hand_euler, quick=True, against=["euler"])
    assert report.declared is None and report.nfe_per_step == 1
    for o in report.orders:
        assert abs(o["order"] - 1) <= AGREEMENT_TOL, o
    assert any("no claim to compare" in v for v in report.verdicts)


def test_disagreement_is_reported_never_hidden():
    register("liar", hand_euler, order=3, nfe_per_step=2)
    try:
        report = check("liar", quick=True, against=["euler"])
    finally:
        unregister("liar")
    assert report.nfe_per_step == 1 and report.nfe_declared_ok is False
    assert any("DIFFERS" in v for v in report.verdicts)
    bad = [v for v in report.verdicts if "DISAGREES" in v]
    assert len(bad) == 3 and all("declared 3, measured " in v for v in bad)
    for o in report.orders:                          # the measurement itself: order 1
        assert abs(o["order"] - 1) <= AGREEMENT_TOL, o


def test_cli_on_a_file_and_on_a_module(tmp_path, monkeypatch, capsys):
    (tmp_path / "cardmod.py").write_text(MODULE)
    out = tmp_path / "out"
    assert main(["check", f"{tmp_path / 'cardmod.py'}:hand_euler", "--quick", "--no-progress",
                 "--against", "euler", "--out", str(out), "--device", "cpu"]) == 0
    assert "Order card: hand_euler" in capsys.readouterr().out
    assert (out / "check_hand_euler.md").is_file() and (out / "check_hand_euler.csv").is_file()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "cardmod:exp_euler", "--quick", "--no-progress", "--against", "euler",
                 "--out", str(out)]) == 0
    text = (out / "check_mod_euler.md").read_text()
    assert "classical order 1, stiff order 1" in text
    assert "mod_euler" not in SOLVERS          # checked, not registered


@pytest.mark.parametrize("arg,match", [
    ("nope.py:x", "no file"),
    ("samplerlab.solvers:nope", "has no attribute"),
    ("samplerlab.solvers.registry:PAPERS", "expected an ExpRKTableau"),
    ("no_such_sampler", "unknown sampler"),
    ("a.py:1x", "must be a Python name"),
])
def test_cli_bad_input_is_a_clear_error(arg, match, capsys):
    assert main(["check", arg, "--quick", "--no-progress"]) == 2
    assert match in capsys.readouterr().err


def test_device_is_checked_and_named(capsys):
    """``device=`` / ``--device``: anything but cpu/cuda, or CUDA where there is none, is a
    ValueError (exit 2 on the command line) naming the argument, before any work."""
    with pytest.raises(ValueError, match="device must be one of 'cpu', 'cuda', got 'tpu'"):
        check("euler", quick=True, device="tpu")
    with pytest.raises(TypeError, match="device"):
        check("euler", quick=True, device=0)
    with pytest.raises(SystemExit):             # argparse: not one of the choices
        main(["check", "euler", "--quick", "--device", "tpu"])
    assert "argument --device: invalid choice: 'tpu'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' requested but CUDA is not available"):
            check("euler", quick=True, device="cuda")
        assert main(["check", "euler", "--quick", "--no-progress", "--device", "cuda"]) == 2
        assert "--device 'cuda' requested" in capsys.readouterr().err


def test_load_sampler_returns_names_unchanged():
    assert load_sampler("res_2s") == "res_2s"


def test_readme_example_runs(capsys):
    """The README "Add your own sampler" snippet, as written, registers and prints a card."""
    from pathlib import Path
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Add your own sampler", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 12
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        if "my_2s" in SOLVERS:
            unregister("my_2s")
    out = capsys.readouterr().out
    assert "Order card: my_2s" in out and "classical order 2, stiff order 2" in out
