"""Seconds per FDIF volume (generation only, and with writing), one thread, and peak memory.

    taskset -c 0 .venv/bin/python bench/synth_speed.py --n 10
    .venv/bin/python bench/synth_speed.py --device cuda --n 200   # volumes per second on a GPU

Prints the median over ``--n`` volumes (after one warm-up volume). FDIF's own generator takes
5.9 s per 96^3 volume with 20 objects on one core of the reference machine; the target is 0.12 s.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10, help="volumes to time (>= 10 for the median)")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="skip the timing with NIfTI writing")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from anatomix.sdf.generator import FdifGenerator, FdifSynthConfig
    from anatomix.synth import write_dataset

    cfg = FdifSynthConfig(shape=(args.size,) * 3, n_objects=(args.objects, args.objects))
    gen = FdifGenerator(cfg, seed=args.seed, device=args.device)
    gen.sample(10_000)  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    t_all = time.perf_counter()
    for i in range(args.n):
        t = time.perf_counter()
        gen.sample(i)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - t_all
    med = statistics.median(times)
    print(f"FDIF {args.size}^3, {args.objects} objects, device={args.device}, threads={args.threads}")
    print(f"generation only: median {med:.3f} s/volume (min {min(times):.3f}, max {max(times):.3f}, "
          f"n={args.n}); {args.n / wall:.1f} volumes/s")
    if not args.no_write:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            write_dataset(gen, tmp, n=args.n, seed=args.seed, workers=1, progress=False)
            per = (time.perf_counter() - t) / args.n
        print(f"with writing (NIfTI .nii.gz image + label + record): {per:.3f} s/volume (mean)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory (whole process, incl. torch): {peak_mb:.0f} MB")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
