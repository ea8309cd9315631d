"""The written verdict rules of REPORT.md (studies.base) and the report's claims/checks split."""
import pytest

from samplerlab.experiments.report import render_report, tally
from samplerlab.experiments.studies.base import (CHECK_VERDICTS, CLAIM_VERDICTS, VERDICT_RULES,
                                                 Claim, StudyResult, check_verdict,
                                                 fraction_verdict, interval_of_difference,
                                                 order_verdict, separation_verdict,
                                                 worst_verdict)


def test_order_rule_interval_or_five_percent():
    assert order_verdict((0.94, 0.89, 0.99), 1.0) == "pre-asymptotic"   # F-DDIM (issue 15)
    assert order_verdict((0.99, 0.98, 0.999), 1.0) == "reproduced"     # within 5 %
    assert order_verdict((0.90, 0.75, 1.04), 1.0) == "reproduced"      # interval contains 1
    assert order_verdict((3.12, 3.10, 3.14), 3.0) == "reproduced"      # 4 % of 3
    assert order_verdict((1.84, 1.74, 1.94), 2.0) == "pre-asymptotic"
    assert order_verdict((1.2, 1.1, 1.3), 2.0) == "not reproduced"
    assert order_verdict(None, 2.0) == "not measured"
    with pytest.raises(ValueError, match="finite"):
        order_verdict((float("nan"), 0.0, 1.0), 1.0)


def test_fraction_rule():
    assert fraction_verdict(6, 6) == "reproduced"
    assert fraction_verdict(3, 6) == "partly"
    assert fraction_verdict(1, 6) == "not reproduced"     # RES schedule robustness (issue 15)
    assert fraction_verdict(0, 0) == "not measured"
    with pytest.raises(ValueError, match="successes"):
        fraction_verdict(3, 2)
    with pytest.raises(TypeError, match="int"):
        fraction_verdict(0.5, 2)


def test_separation_rule_and_difference_interval():
    assert separation_verdict(0.02, 0.25) == "no separation"    # SDE exponent gain (issue 15)
    assert separation_verdict(0.9, 0.25, (-0.1, 1.9)) == "no separation"
    assert separation_verdict(0.9, 0.25, (0.8, 1.0)) is None
    assert interval_of_difference((2.0, 1.9, 2.1), (1.0, 0.95, 1.05)) == pytest.approx((0.85, 1.15))
    with pytest.raises(ValueError, match="threshold"):
        separation_verdict(1.0, -1.0)


def test_checks_and_worst():
    assert check_verdict(True) == "passed" and check_verdict(False) == "failed"
    assert check_verdict("reproduced") == "passed" and check_verdict("partly") == "partly"
    with pytest.raises(ValueError, match="check verdict"):
        check_verdict("no separation")
    assert worst_verdict(["reproduced", "pre-asymptotic"]) == "pre-asymptotic"
    assert worst_verdict(["reproduced", "not reproduced", "partly"]) == "not reproduced"
    assert worst_verdict([]) == "not measured"


def test_every_verdict_has_a_written_rule_and_kinds_are_enforced():
    assert set(CLAIM_VERDICTS) == set(VERDICT_RULES)
    assert set(CHECK_VERDICTS) <= set(VERDICT_RULES) | {"passed", "failed"}
    with pytest.raises(ValueError, match="verdict of a check"):
        Claim("s", "p", "x", "-", "m", "reproduced", "r", kind="check")
    with pytest.raises(ValueError, match="kind"):
        Claim("s", "p", "x", "-", "m", "reproduced", "r", kind="guess")
    with pytest.raises(ValueError, match="verdict of a claim"):
        Claim("s", "p", "x", "-", "m", "passed", "r")


def test_report_states_the_rules_and_tallies_claims_and_checks_apart():
    claims = [Claim("s", "paper", "a claim", "1", "1.0", "reproduced", "r"),
              Claim("s", "paper", "another", "1", "0.9", "pre-asymptotic", "r"),
              Claim("s", "notes", "a check", "-", "ok", "passed", "r", kind="check")]
    text = render_report([StudyResult("s", {}, claims, [], "summary")], header="h")
    assert "Paper claims (2): reproduced: 1, pre-asymptotic: 1." in text
    assert "Internal checks (1): passed: 1." in text
    for rule in VERDICT_RULES.values():
        assert rule in text
    claims_part, checks_part = text.split("## Internal checks")
    assert "a claim" in claims_part and "a check" in checks_part
    assert "a check" not in claims_part.split("## Paper claims")[1]
    assert tally(claims).count("\n") == 1
