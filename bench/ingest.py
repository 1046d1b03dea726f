"""Benchmark: `ingest_masks` on the 5 FLARE22 label maps (512 x 512 x ~100, preset flare22).

Reads ../shared/data/flare22 (development data that is never committed; nothing derived from it
is written into the repository: each run writes its bank into a fresh temporary folder that is
deleted afterwards). Each run is a fresh Python process, so the peak memory is that run's own
(max RSS of the process and its children, from wait4). Prints the median wall time of the ingest
call itself, the median including interpreter start-up and imports, and the peak RSS.

    taskset -c 0 .venv/bin/python bench/ingest.py [--runs 5] [--data DIR] [--spacing 1.5]

Targets: < 15 s for the 5 subjects, < 2 GB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "flare22"

CHILD = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
from anatomix.bank import ingest_masks
t1 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    m = ingest_masks([sys.argv[1]], sys.argv[2], labels="flare22", spacing_mm=float(sys.argv[3]))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "ingest_s": t2 - t1, "subjects": len(m.subjects),
                  "shapes": len(m.shapes)}))
"""


def one_run(data: Path, spacing: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="anatomix-bench-") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(Path(tmp) / "bank"),
                                 str(spacing)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
        _, status, usage = os.wait4(proc.pid, 0) if proc.returncode is None else (0, 0, None)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"ingest failed:\n{err.decode()}")
        res = json.loads(out.decode().strip().splitlines()[-1])
        res["total_s"] = wall
        res["maxrss_kb"] = usage.ru_maxrss if usage is not None else None
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--spacing", type=float, default=1.5)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: FLARE22 label maps not found (see ../shared/data/README.md)")
    import resource

    runs = []
    for i in range(args.runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        r = one_run(args.data, args.spacing)
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if r["maxrss_kb"] is None:  # fall back: max RSS over children so far
            r["maxrss_kb"] = max(after, before)
        runs.append(r)
        print(f"run {i + 1}/{args.runs}: ingest {r['ingest_s']:.2f} s, with start-up "
              f"{r['total_s']:.2f} s, peak RSS {r['maxrss_kb'] / 1024:.0f} MiB "
              f"({r['subjects']} subjects, {r['shapes']} shapes)", flush=True)
    ing = statistics.median(r["ingest_s"] for r in runs)
    tot = statistics.median(r["total_s"] for r in runs)
    peak = max(r["maxrss_kb"] for r in runs) / 1024
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"FLARE22 x5 ingest (spacing {args.spacing:g} mm, {cpus} CPU(s) allowed, "
          f"load avg {os.getloadavg()[0]:.1f}): median {ing:.2f} s ingest, {tot:.2f} s with "
          f"start-up, peak RSS {peak:.0f} MiB over {args.runs} runs "
          f"(targets: < 15 s, < 2048 MiB)")


if __name__ == "__main__":
    main()
