"""Contacts met with and without contact closing, side by side on the same seeds (placement only).

    .venv/bin/python bench/contact_closing.py --n 10            # shipped graph, embedded bank
    .venv/bin/python bench/contact_closing.py --graph my.yaml --bank banks/mine --n 40

For each setting (``placement.contact_closing`` off / on, everything else default) the same scenes
(seed, index) are placed and their placement reports summed: contact relations met, hard
relations violated, bulges made, and CPU seconds per scene (median). The open contacts left with
closing on are listed, most frequent first, with their gaps (mm) and the two organs' summed
``max_bulge_mm``: a gap above that sum is left for placement to fix, not for closing.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import numpy as np

from anatomix.bank import ShapeBank
from anatomix.config import PlacementConfig
from anatomix.graph import OrganGraph
from anatomix.placement import sample_scene
from anatomix.resources import resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", default="abdomen")
    ap.add_argument("--bank", default="default")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    graph = OrganGraph.load(resolve("graph", args.graph))
    bank = ShapeBank.load(resolve("bank", args.bank))
    open_left: collections.Counter[tuple[str, str]] = collections.Counter()
    gaps: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    print(f"{args.n} scenes, graph {args.graph}, bank {args.bank}, seed {args.seed}")
    print("contact_closing  contacts met   hard violations  bulges  s/scene (median CPU)")
    for closing in (False, True):
        cfg = PlacementConfig(contact_closing=closing)
        met = total = hard_bad = bulges = 0
        times = []
        for i in range(args.n):
            t0 = time.process_time()
            scene = sample_scene(graph, bank, np.random.default_rng([args.seed, i]), cfg, cache={})
            times.append(time.process_time() - t0)
            bulges += sum(len(o.bulges) for o in scene.organs)
            for r in scene.report:
                hard_bad += r.hard and not r.holds
                if r.kind == "contact":
                    total += 1
                    met += r.holds
                    if closing and not r.holds:
                        open_left[(r.a, r.b)] += 1
                        gaps[(r.a, r.b)].append(float("nan") if r.value is None else r.value)
        print(f"{'on' if closing else 'off':<16} {met:>4} / {total:<4} {100 * met / max(1, total):5.1f} %"
              f"   {hard_bad:>6}        {bulges:>5}   {statistics.median(times):.3f}")
    print("\nopen with closing on (pair: cases, gaps mm, summed max_bulge_mm):")
    for (a, b), k in open_left.most_common(12):
        cap = graph.organ(a).max_bulge_mm + graph.organ(b).max_bulge_mm
        print(f"  {a}-{b}: {k}, {', '.join(f'{g:.1f}' for g in gaps[(a, b)])}; {cap:.0f}")


if __name__ == "__main__":
    main()
