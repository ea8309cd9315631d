"""Deterministic, atomic output: CSV tables, JSON settings and figures.

Every file is written to a temporary file in the destination folder and then renamed over the
target (``os.replace`` is atomic on POSIX), so an interrupted run never leaves a half-written
table or figure. CSV floats are written with ``repr`` (shortest round-trip form), so the same data
always gives the same bytes.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

__all__ = ["atomic_write_bytes", "write_csv", "write_json", "save_figure"]


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _cell(v):
    if isinstance(v, float):
        return repr(v)
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
        v = v.item()
        return repr(v) if isinstance(v, float) else str(v)
    return "" if v is None else str(v)


def write_csv(path, rows: Sequence[Mapping], columns: Sequence[str] = None) -> Path:
    """Write tidy rows (dicts) as CSV with a fixed column order (first row's keys by default)."""
    rows = list(rows)
    if columns is None:
        columns = list(rows[0].keys()) if rows else []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return atomic_write_bytes(path, buf.getvalue().encode())


def write_json(path, obj) -> Path:
    """Write ``obj`` as sorted, indented JSON."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write_bytes(path, text.encode())


def save_figure(fig, path_stem, formats: Iterable[str] = ("png", "pdf"), dpi: int = 150):
    """Save a matplotlib figure as ``path_stem.png`` and ``.pdf`` atomically; returns the paths."""
    out = []
    stem = Path(path_stem)
    for fmt in formats:
        buf = io.BytesIO()
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
        out.append(atomic_write_bytes(stem.with_suffix(f".{fmt}"), buf.getvalue()))
    return out
