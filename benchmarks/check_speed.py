"""Wall time of ``samplerlab check`` (issue 11 targets: a 2-stage method in <= 15 s by default,
<= 5 s with --quick, on 2 cores). Run by hand, never as a timed test:

    python benchmarks/check_speed.py [--threads 1] [--repeats 3] [--out benchmarks/results]

Measured on the 2-core CI-class machine with 3 other jobs running (load ~3), --threads 1:
res_2s default 7.3 s, --quick 4.0 s; dpmpp_2m default 5.7 s, --quick 3.7 s. With --threads 2 on
that loaded machine the same default run took 169 s (intra-op threads of tiny tensors
contending with the other jobs), which is why the CLI defaults to one thread.

Each case runs in a fresh interpreter (``samplerlab check ... --no-progress``), so the time
includes the imports and the one-off symbolic derivation, as a user sees it; the median of
``--repeats`` runs is reported with the machine's load average (other processes inflate it).
Writes ``check_speed.csv``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [("res_2s", []), ("res_2s", ["--quick"]), ("dpmpp_2m", []), ("dpmpp_2m", ["--quick"])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results")))
    args = parser.parse_args(argv)
    exe = [sys.executable, "-m", "samplerlab.experiments.cli"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in CASES:
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                subprocess.run(exe + ["check", name, "--no-progress", "--out", tmp,
                                      "--threads", str(args.threads)] + flags,
                               check=True, stdout=subprocess.DEVNULL)
                times.append(time.perf_counter() - start)
            row = {"sampler": name, "mode": "quick" if flags else "default",
                   "median_s": statistics.median(times), "min_s": min(times),
                   "load_avg_1min": os.getloadavg()[0], "threads": args.threads}
            rows.append(row)
            print(f"{name:<10} {row['mode']:<8} median {row['median_s']:6.2f} s  "
                  f"min {row['min_s']:6.2f} s  (load {row['load_avg_1min']:.1f})")
    from samplerlab.experiments.io import write_csv
    write_csv(Path(args.out) / "check_speed.csv", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
