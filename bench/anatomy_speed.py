"""Speed and constraint figures of structure-aware synthesis (prints; not a test).

    taskset -c 0 .venv/bin/python bench/anatomy_speed.py [--n 20] [--scenes 200] [--bank DIR]

- seconds per 96^3 sample (1.5 x 1.5 x 2.0 mm; placement + rendering + appearance), median,
  one thread; and with writing (write_dataset, NIfTI .nii.gz);
- seconds per whole-abdomen label map at 1.5 mm (placement + rendering, fov whole);
- peak resident memory;
  (wall and CPU time are both printed: on a shared, loaded machine the process CPU time is the
  better estimate of the one-core cost on a quiet one)
- constraint summary over --scenes scenes (graphs/abdomen.yaml with the embedded bank, or --bank:
  e.g. a bank ingested from ../shared/data/flare22 into /tmp; never commit such a bank).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graph", default="graphs/abdomen.yaml")
    ap.add_argument("--bank", default=None)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--scenes", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from anatomix.anatomy import AnatomyGenerator, format_summary, summarize_records, _constraints
    from anatomix.config import anatomy_config
    from anatomix.render import render_scene, scene_grid
    from anatomix.synth import write_dataset

    gen = AnatomyGenerator(anatomy_config(None, graph=args.graph, bank=args.bank), seed=0)
    # Steady state: every bank SDF is computed once up front (a long run amortises it), then a
    # few samples fill the per-shape lattice caches. The cold cost is printed separately.
    t0 = time.perf_counter()
    for organ in gen.bank.organs:
        for rec in gen.bank.shapes(organ):
            gen.bank.sdf(rec.shape_id)
    print(f"bank warm-up (signed distance of every shape, once per process): {time.perf_counter() - t0:.2f} s")
    for i in range(3):
        gen.sample(10_000 + i)
    t, c = [], []
    for i in range(args.n):
        t0, c0 = time.perf_counter(), time.process_time()
        gen.sample(i)
        t.append(time.perf_counter() - t0)
        c.append(time.process_time() - c0)
    print(f"96^3 sample, generation only: median {statistics.median(t):.3f} s wall, "
          f"{statistics.median(c):.3f} s CPU (n={args.n})")
    with tempfile.TemporaryDirectory() as tmp:
        res = write_dataset(gen, tmp, n=args.n, progress=False)
        print(f"96^3 sample, with writing:    {res['seconds'] / args.n:.3f} s per case (mean)")
    tw, cw = [], []
    for i in range(max(5, args.n // 2)):
        t0, c0 = time.perf_counter(), time.process_time()
        scene = gen.scene(i)
        grid = scene_grid(scene, (1.5, 1.5, 1.5))
        render_scene(scene, gen.bank, grid, cache=gen._cache)
        tw.append(time.perf_counter() - t0)
        cw.append(time.process_time() - c0)
    print(f"whole-abdomen label map at 1.5 mm (last {'x'.join(map(str, grid.shape))}): "
          f"median {statistics.median(tw):.3f} s wall, {statistics.median(cw):.3f} s CPU")
    tp, cp, recs = [], [], []
    for i in range(args.scenes):
        t0, c0 = time.perf_counter(), time.process_time()
        scene = gen.scene(i)
        tp.append(time.perf_counter() - t0)
        cp.append(time.process_time() - c0)
        recs.append({"constraints": _constraints(scene)})
    print(f"placement only: median {1000 * statistics.median(tp):.0f} ms wall, "
          f"{1000 * statistics.median(cp):.0f} ms CPU per scene (n={args.scenes})")
    print(format_summary(summarize_records(recs)))
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
