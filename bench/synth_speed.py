"""Seconds per FDIF volume (generation only, and with writing), one thread, and peak memory.

    taskset -c 0 .venv/bin/python bench/synth_speed.py --n 10
    .venv/bin/python bench/synth_speed.py --device cuda --n 200   # volumes per second on a GPU

Prints medians over ``--n`` volumes (after one warm-up volume): generation only
(``FdifGenerator.sample``: draw + render + copy to host), and with writing (generation plus
the NIfTI image, label and record of :func:`anatomix.synth.write_dataset`, one worker, timed
per case). FDIF's own generator takes 5.9 s per 96^3 volume with 20 objects on one core of the
reference machine; the target is 0.12 s. On a GPU it also prints volumes per second (target:
over 500 at 96^3, generation only).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from typing import Any


def _rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _TimedGenerator:
    """Delegates to a generator and stamps each ``sample`` call: with one worker, write_dataset
    writes case i between sample(i) and sample(i + 1), so the stamps give per-case times."""

    def __init__(self, generator: Any) -> None:
        self._generator = generator
        self.stamps: list[float] = []

    def sample(self, index: int) -> Any:
        self.stamps.append(time.perf_counter())
        return self._generator.sample(index)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._generator, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10, help="volumes to time (>= 10 for the median)")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the target is for 1)")
    ap.add_argument("--no-write", action="store_true", help="skip the timing with NIfTI writing")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: this torch build or machine has no CUDA device")
    from anatomix.config import FdifSynthConfig
    from anatomix.sdf.generator import FdifGenerator
    from anatomix.synth import write_dataset

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(args.device)

    cfg = FdifSynthConfig(shape=(args.size,) * 3, n_objects=(args.objects, args.objects))
    gen = FdifGenerator(cfg, seed=args.seed, device=args.device)
    rss_start = _rss_mb()
    gen.sample(10_000)  # warm-up (allocator, lazy imports, CUDA context)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(args.device)
    times = []
    t_all = time.perf_counter()
    for i in range(args.n):
        t = time.perf_counter()
        gen.sample(i)  # returns numpy arrays: the copy to the host is included
        sync()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - t_all
    rss_gen = _rss_mb()
    print(f"FDIF {args.size}^3, {args.objects} objects, device={args.device}, threads={args.threads}")
    print(f"generation only: median {statistics.median(times):.3f} s/volume (min {min(times):.3f}, "
          f"max {max(times):.3f}, n={args.n}); {args.n / wall:.1f} volumes/s")
    if not args.no_write:
        timed = _TimedGenerator(gen)
        with tempfile.TemporaryDirectory() as tmp:
            write_dataset(timed, tmp, n=args.n, seed=args.seed, workers=1, progress=False)
            end = time.perf_counter()
        per_case = [b - a for a, b in zip(timed.stamps, timed.stamps[1:])]
        per_case.append(end - timed.stamps[-1])  # the last case also rewrites dataset.json
        print(f"with writing (NIfTI .nii.gz image + label + record): median "
              f"{statistics.median(per_case):.3f} s/volume (min {min(per_case):.3f}, max {max(per_case):.3f})")
    print(f"peak resident memory: {rss_gen:.0f} MB after generation, {_rss_mb():.0f} MB at the end "
          f"(whole process; {rss_start:.0f} MB after importing torch and anatomix)")
    if cuda:
        print(f"peak GPU memory allocated (generation): {torch.cuda.max_memory_allocated(args.device) / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
