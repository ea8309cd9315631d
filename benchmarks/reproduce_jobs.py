"""Wall time of ``samplerlab reproduce --quick`` (every study) with ``--jobs 1`` and ``--jobs 2``
(issue 14), and whether the runs wrote the same CSVs. Run by hand, never as a timed test:

    python benchmarks/reproduce_jobs.py [--jobs 1 2] [--repeats 1] [--out benchmarks/results]

Each run is a fresh interpreter (``python -m samplerlab.experiments.cli reproduce --quick
--no-progress --jobs N --out <temporary folder>``), so its time includes the imports, the worker
processes' start-up and their one-off symbolic derivations, as a user sees them. The CSVs of
every run are compared byte for byte with those of the first ``--jobs`` value (the reference,
``--jobs 1`` by default), leaving out the wall-clock tables (``*_timing.csv``: per-cell and
per-phase seconds, never reproducible); ``identical`` is True when every other CSV matches and
the same files were written. The load average at the start of each run is recorded: other
processes on the machine inflate the times, and with two workers on two cores they take a share
of both.

Repeats are interleaved (1, 2, 1, 2, ...), so a load that drifts during the benchmark lands on
both worker counts. Writes ``reproduce_jobs.csv`` (jobs, wall_s = median over the repeats,
wall_min_s, cpu_s = median CPU seconds of the run and its workers, repeats, identical,
load_average = mean 1-minute load at the runs' starts, cores) and
``reproduce_jobs_studies.csv`` (the per-study seconds ``reproduce`` prints, median over the
repeats), atomically (experiments.io.write_csv).
"""
from __future__ import annotations

import argparse
import filecmp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY_LINE = re.compile(r"^\[(?P<study>[^\]]+)\]\s+(?P<seconds>[0-9.]+)s\b")


def data_csvs(folder: Path):
    """The CSV names in ``folder`` whose bytes must not depend on the executor (timing tables
    left out)."""
    return sorted(p.name for p in folder.glob("*.csv") if not p.name.endswith("_timing.csv"))


def same_csvs(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` hold the same data CSVs with the same bytes."""
    names = data_csvs(a)
    if not names or names != data_csvs(b):
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


def run_once(jobs: int, out: Path, threads: int) -> dict:
    """One ``reproduce --quick`` in a fresh interpreter: wall seconds, CPU seconds of it and its
    worker processes, the load average at the start and the seconds printed per study."""
    cmd = [sys.executable, "-m", "samplerlab.experiments.cli", "reproduce", "--quick",
           "--no-progress", "--jobs", str(jobs), "--threads", str(threads), "--out", str(out)]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    studies = {}
    for line in done.stdout.splitlines():
        m = STUDY_LINE.match(line)
        if m:
            studies[m["study"]] = float(m["seconds"])
    return {"wall": wall, "cpu": cpu, "load": load, "studies": studies}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2],
                        help="worker counts to time; the first is the reference (default 1 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per worker count")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results")),
                        help="folder of the two CSVs (default benchmarks/results)")
    args = parser.parse_args(argv)
    if not args.jobs or any(j < 1 for j in args.jobs):
        parser.error(f"--jobs must be integers >= 1, got {args.jobs}")
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    runs = {jobs: [] for jobs in args.jobs}
    with tempfile.TemporaryDirectory(prefix="reproduce_jobs_") as tmp:
        reference = None
        for rep in range(args.repeats):      # interleaved, so a drifting load hits all alike
            for jobs in args.jobs:
                out = Path(tmp) / f"jobs{jobs}_run{rep}"
                run = run_once(jobs, out, args.threads)
                if reference is None:
                    reference = out
                run["identical"] = same_csvs(reference, out)
                runs[jobs].append(run)
                print(f"--jobs {jobs} run {rep + 1}: {run['wall']:6.1f} s wall, "
                      f"{run['cpu']:6.1f} CPU-s (load {run['load']:.2f}); CSVs "
                      f"{'identical' if run['identical'] else 'DIFFER'}", flush=True)
    rows, study_rows = [], []
    for jobs, done in runs.items():
        rows.append({"jobs": jobs, "wall_s": statistics.median(r["wall"] for r in done),
                     "wall_min_s": min(r["wall"] for r in done),
                     "cpu_s": statistics.median(r["cpu"] for r in done), "repeats": len(done),
                     "identical": all(r["identical"] for r in done),
                     "load_average": statistics.mean(r["load"] for r in done),
                     "cores": os.cpu_count()})
        names = list(dict.fromkeys(n for r in done for n in r["studies"]))
        study_rows += [{"jobs": jobs, "study": n,
                        "seconds": statistics.median(r["studies"][n] for r in done
                                                     if n in r["studies"])} for n in names]
    from samplerlab.experiments.io import write_csv
    write_csv(Path(args.out) / "reproduce_jobs.csv", rows)
    write_csv(Path(args.out) / "reproduce_jobs_studies.csv", study_rows)
    for r in rows:
        print(f"jobs {r['jobs']}: median {r['wall_s']:.1f} s (min {r['wall_min_s']:.1f} s, "
              f"{r['cpu_s']:.1f} CPU-s), identical {r['identical']}, load "
              f"{r['load_average']:.2f}, {r['cores']} cores")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
