"""``samplerlab reproduce``: run the registered studies and write REPORT.md.

Each study writes its CSV tables, a JSON of its settings and its figures into the output folder
(``figures/`` by default); this module runs them in order with a one-line summary each, builds the
order card from the work-precision study, and writes ``REPORT.md`` from the stored results of
every study in the output folder (``<study>__result.json``), so ``--only NAME`` refreshes one
study's part of the report and keeps the others.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from samplerlab.solvers.progress import Progress

from .io import write_csv, write_json
from .report import write_report
from .studies import STUDIES, load_studies
from .studies.base import Claim, Context, StudyResult

__all__ = ["reproduce", "default_output_dir"]


def default_output_dir() -> Path:
    """``figures/`` of the source checkout when running from one, else ``./figures``."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists() and (here / "figures").is_dir():
        return here / "figures"
    return Path.cwd() / "figures"


def _dtype(name) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    table = {"float64": torch.float64, "float32": torch.float32}
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]


def _result_record(result: StudyResult, *, quick: bool, seed: int) -> dict:
    """What REPORT.md needs of a study, stored beside its tables."""
    return {"name": result.name, "quick": quick, "seed": seed, "summary": result.summary,
            "claims": [dataclasses.asdict(c) for c in result.claims],
            "figures": result.figures,
            "order_card": result.extra.get("order_card")}


def _stored_results(out: Path) -> List[StudyResult]:
    """The results stored in ``out`` for the registered studies, in registry order."""
    results = []
    for name in STUDIES:
        path = out / f"{name}__result.json"
        if not path.exists():
            continue
        rec = json.loads(path.read_text())
        extra = {"order_card": rec["order_card"]} if rec.get("order_card") else {}
        results.append(StudyResult(name=rec["name"], tables={},
                                   claims=[Claim(**c) for c in rec["claims"]],
                                   figures=rec["figures"], summary=rec["summary"], extra=extra))
    return results


def reproduce(only: Optional[Sequence[str]] = None, quick: bool = False, device: str = "cpu",
              dtype="float64", out=None, seed: int = 0, progress: bool = True,
              stream=None, report_only: bool = False) -> int:
    """Run the studies (all, or those named in ``only``); returns 0 on success.

    ``report_only`` runs nothing and rewrites REPORT.md from the results stored in ``out``.

    Raises ``ValueError`` for an unknown study name (listing the known ones), an unknown dtype, or
    ``device='cuda'`` without CUDA.
    """
    stream = stream if stream is not None else sys.stdout
    load_studies()
    names = list(STUDIES) if not only else list(dict.fromkeys(only))
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        raise ValueError(f"unknown study name(s) {unknown}; known studies: {', '.join(STUDIES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    out = Path(out) if out is not None else default_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    if report_only:
        names = []
    ctx = Context(out=out, quick=quick, device=device, dtype=_dtype(dtype), seed=seed,
                  progress=progress)
    bar = Progress(len(names), "studies", enabled=progress and bool(names))
    bar.__enter__()
    for name in names:
        study = STUDIES[name]
        start = time.perf_counter()
        result = study.run(ctx)
        bar.update()
        for table, rows in result.tables.items():
            write_csv(out / f"{name}__{table}.csv", rows)
        write_json(out / f"{name}__settings.json",
                   {"study": name, "title": study.title, "quick": quick, "device": device,
                    "dtype": str(ctx.dtype), "seed": seed, "versions": ctx.versions(),
                    **result.extra.get("settings", {})})
        write_json(out / f"{name}__result.json", _result_record(result, quick=quick, seed=seed))
        verdicts = ", ".join(f"{c.verdict}" for c in result.claims)
        print(f"[{name}] {time.perf_counter() - start:6.1f}s  {result.summary.splitlines()[0]}"
              f"  ({len(result.claims)} claims: {verdicts})", file=stream, flush=True)
    bar.__exit__(None, None, None)
    # REPORT.md covers every study whose results are in ``out`` (this run's and earlier ones'),
    # so `--only NAME` refreshes one study without dropping the others from the report.
    results = _stored_results(out)
    order_card = None
    for r in results:
        if "order_card" in r.extra:
            order_card = r.extra["order_card"]
    mode = "quick" if quick else "full"
    header = (f"Generated by `samplerlab reproduce{' --quick' if quick else ''}` ({mode} run, "
              f"seed {seed}, {ctx.dtype}, {device}). Every number below is measured on exact "
              "Gaussian-mixture targets against a reference solution (DOP853, error < 1e-10); "
              "each verdict follows one of the written rules below, and paper claims are "
              "tallied apart from internal checks.")
    write_report(out / "REPORT.md", results, header=header, order_card=order_card)
    print(f"wrote {out / 'REPORT.md'}", file=stream)
    return 0
