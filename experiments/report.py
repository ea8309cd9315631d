"""REPORT.md: every claim checked by ``samplerlab reproduce``, the order card and the figures."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Sequence

from .io import atomic_write_bytes
from .studies.base import (CHECK_VERDICTS, CLAIM_VERDICTS, VERDICT_RULES, Claim,
                           StudyResult)

__all__ = ["render_report", "write_report", "tally", "verdict_rules_text"]


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _claims_table(claims: Sequence[Claim]) -> List[str]:
    lines = ["| study | paper | claim | paper's number | measured | verdict | why |",
             "|---|---|---|---|---|---|---|"]
    for c in claims:
        lines.append("| " + " | ".join(_md_escape(v) for v in (
            c.study, c.paper, c.statement, c.paper_value, c.measured, f"**{c.verdict}**",
            c.reason)) + " |")
    return lines


def tally(claims: Sequence[Claim]) -> str:
    """One line per kind: how many paper claims and internal checks got each verdict."""
    out = []
    for kind, order, title in (("claim", CLAIM_VERDICTS, "Paper claims"),
                               ("check", CHECK_VERDICTS, "Internal checks")):
        sel = [c for c in claims if c.kind == kind]
        counts = [(v, sum(c.verdict == v for c in sel)) for v in order]
        out.append(f"{title} ({len(sel)}): "
                   + (", ".join(f"{v}: {n}" for v, n in counts if n) or "none") + ".")
    return "\n".join(out)


def verdict_rules_text() -> List[str]:
    """The written verdict rules, as Markdown lines."""
    lines = ["Verdict rules (applied by the pure functions in experiments/studies/base.py; every "
             "row's verdict follows from one of them):", ""]
    lines += [f"* **{v}**: {rule}" for v, rule in VERDICT_RULES.items()]
    lines += ["* Internal checks (a reconstruction's rule, a cost formula, a cross-check of two "
              "measurements, an identity) are not paper claims: they read **passed** / "
              "**failed** under the rules of reproduced / not reproduced (pre-asymptotic and "
              "partly as above), and are tallied and tabled separately."]
    return lines


def render_report(results: Iterable[StudyResult], *, header: str, order_card: List[dict] = None) -> str:
    results = list(results)
    lines = ["# samplerlab — claims report", "", header, ""]
    all_rows = [c for r in results for c in r.claims]
    claims = [c for c in all_rows if c.kind == "claim"]
    checks = [c for c in all_rows if c.kind == "check"]
    for line in tally(all_rows).split("\n"):
        lines += [line, ""]
    lines += verdict_rules_text()
    lines += ["", "## Paper claims", ""] + _claims_table(claims) + [""]
    if checks:
        lines += ["## Internal checks", ""] + _claims_table(checks) + [""]
    if order_card:
        lines += ["## Order card", "",
                  "Declared order (registry), order from theory/'s conditions, and the measured "
                  "order (least-squares slope of the median defect vs number of steps, 95% "
                  "interval, pre-asymptotic points and round-off floor dropped).", "",
                  "Declared orders are the *asymptotic* orders the samplers deliver with their "
                  "default options. Where lower-order warm-up steps (deis, lms, res_3m) or "
                  "UniPC's corrector-free order-1 last step cap the order at 2, the cap is a "
                  "fixed number of steps whose error only dominates at large M: on this grid, "
                  "which starts at sigma = 80 where the denoiser is nearly constant, the measured "
                  "slopes over M <= 256 are the nominal ones. tests/test_solvers_convergence.py "
                  "measures both regimes (a grid starting at sigma = 2, and the M^-2 gap to the "
                  "order-preserving variants). The seed-002 samplers (li_*) converge towards 2 "
                  "from below on this grid; their rates are the provable-acceleration study's "
                  "subject.", "",
                  "| sampler | family | declared | theory | measured | interval | points |",
                  "|---|---|---|---|---|---|---|"]
        for row in order_card:
            lines.append("| " + " | ".join(_md_escape(row.get(k, "")) for k in (
                "sampler", "family", "declared", "theory", "measured", "interval", "points")) + " |")
        lines.append("")
    for r in results:
        lines += [f"## Study `{r.name}`", "", r.summary, ""]
        for fig in r.figures:
            lines += [f"![{_md_escape(fig['caption'])}]({fig['path']})", "",
                      f"*{fig['caption']}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(path, results, *, header: str, order_card=None) -> Path:
    text = render_report(results, header=header, order_card=order_card)
    return atomic_write_bytes(Path(path), text.encode())
