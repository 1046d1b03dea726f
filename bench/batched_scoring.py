"""Placement's candidate checks, sequential against batched (prints; not a test; issue 14).

    taskset -c 1 .venv/bin/python bench/batched_scoring.py [--cases 3]

Records every candidate translation placement checks in ``--cases`` window cases of the shipped
graph (embedded bank), grouped by organ draw. For each (organ draw, placed partner) it computes
the intersection count and surface gap of every candidate two ways, on one core:

- sequential: :func:`anatomix.placement._lattice.pair_values` per candidate (what placement does,
  here without its early exits, which only make it cheaper);
- batched: the partner's mask and outside-SDF padded by the candidate lattice's shape, every
  candidate's window gathered at once (``sliding_window_view`` and one fancy index), then one
  count and one min over the stack.

Checks that both give the same counts, and prints the medians and totals of the two timings.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    import anatomix.placement._solver as solver
    from anatomix.config import anatomy_config
    from anatomix.placement._lattice import pair_values
    from anatomix.synth import build_generator

    gen = build_generator(anatomy_config(None, graph="graphs/abdomen.yaml", bank=None), seed=0)
    draws: dict[int, tuple] = {}
    check = solver.check_candidate

    def record(ctx, info, lat, m, rels, *a, **k):  # type: ignore[no-untyped-def]
        partners = [ctx.placed[r.b if r.a == info.name else r.a] for r in rels if r.type != "direction"]
        draws.setdefault(id(lat), (lat, partners, []))[2].append(m.copy())
        return check(ctx, info, lat, m, rels, *a, **k)

    solver.check_candidate = record
    for i in range(args.cases):
        gen.sample(i)
    solver.check_candidate = check
    seq, bat, same, total = [], [], 0, 0
    for lat, partners, ms in draws.values():
        starts = np.array([m + lat.k0 for m in ms])
        for p in partners:
            t = time.perf_counter()
            ref = [pair_values(tuple(int(v) for v in s), lat, p.start_t, p.lat, need_gap=True) for s in starts]
            seq.append(time.perf_counter() - t)
            t = time.perf_counter()
            shape = np.asarray(lat.sdf.shape)
            mask = np.zeros(tuple(np.asarray(p.lat.mask.shape) + 2 * shape), bool)
            out = np.full(mask.shape, np.float32(np.inf))
            inner = tuple(slice(int(a), int(a) + n) for a, n in zip(shape, p.lat.mask.shape))
            mask[inner], out[inner] = p.lat.mask, p.lat.outside_sdf
            off = starts - np.asarray(p.start_t) + shape  # each candidate's window origin
            meet = np.all((off >= 0) & (off + shape <= mask.shape), axis=1)
            o = off[meet]
            inter = np.zeros(len(off), int)
            gap = np.full(len(off), np.inf)
            inter[meet] = np.count_nonzero(
                sliding_window_view(mask, tuple(shape))[o[:, 0], o[:, 1], o[:, 2]] & lat.mask, axis=(1, 2, 3))
            gap[meet] = (sliding_window_view(out, tuple(shape))[o[:, 0], o[:, 1], o[:, 2]]
                         + lat.outside_sdf).min(axis=(1, 2, 3))
            bat.append(time.perf_counter() - t)
            same += sum(int(inter[k]) == r[0] for k, r in enumerate(ref))
            total += len(ref)
    print(f"{len(seq)} (organ draw, partner) pairs, {sum(len(d[2]) for d in draws.values())} candidates, "
          f"{args.cases} window cases")
    print(f"sequential pair_values: median {1e3 * statistics.median(seq):.3f} ms per pair, "
          f"total {1e3 * sum(seq):.1f} ms")
    print(f"batched windows:        median {1e3 * statistics.median(bat):.3f} ms per pair, "
          f"total {1e3 * sum(bat):.1f} ms")
    print(f"intersection counts equal: {same} of {total}")


if __name__ == "__main__":
    main()
