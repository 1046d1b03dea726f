"""FDIF-mode outputs before and after a renderer change: labels byte-identical, images within 1e-4.

    .venv/bin/python bench/fdif_equality.py --save /tmp/fdif_ref.npz    # with the old code
    .venv/bin/python bench/fdif_equality.py --check /tmp/fdif_ref.npz   # with the new code

Renders ``--cases`` volumes of the paper configuration (96^3, 20 objects, configs/fdif.yaml's
settings) for each of ``--seeds``, twice per case: quantised (what is written, FDIF's uint8
steps) and unquantised (the float sum of the mapped SDFs, which shows rounding differences the
integer steps hide). ``--save`` stores labels, both images and the per-object inside volumes;
``--check`` re-renders and exits 1 unless every label map and volume list is identical and
every image is within ``--atol`` (default 1e-4) of the stored one.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _render(seeds: list[int], cases: int, size: int) -> dict[str, np.ndarray]:
    import torch

    torch.set_num_threads(1)
    from anatomix.config import FdifSynthConfig
    from anatomix.sdf.generator import FdifGenerator

    out: dict[str, np.ndarray] = {}
    for quantize in (True, False):
        cfg = FdifSynthConfig(shape=(size,) * 3, n_objects=(20, 20), quantize=quantize)
        for seed in seeds:
            gen = FdifGenerator(cfg, seed=seed)
            for i in range(cases):
                s = gen.sample(i)
                key = f"s{seed}_i{i}_q{int(quantize)}"
                out[key + "_image"] = s.image.astype(np.float32)
                out[key + "_label"] = s.label
                out[key + "_volumes"] = np.asarray(s.record["volumes_vox"], dtype=np.int64)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", help="write the reference .npz")
    g.add_argument("--check", help="compare against a reference .npz")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 7])
    ap.add_argument("--cases", type=int, default=4, help="cases per seed")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    now = _render(args.seeds, args.cases, args.size)
    if args.save:
        np.savez_compressed(args.save, **now)
        print(f"saved {len(now) // 3} renders to {args.save}")
        return
    ref = np.load(args.check)
    bad = 0
    worst = 0.0
    for key in sorted(k for k in ref.files if k.endswith("_label")):
        base = key[: -len("_label")]
        if base + "_image" not in now:
            print(f"{base}: not rendered now (different --seeds/--cases/--size than the reference)")
            bad += 1
            continue
        same_label = np.array_equal(ref[key], now[key]) and ref[key].dtype == now[key].dtype
        same_vol = np.array_equal(ref[base + "_volumes"], now[base + "_volumes"])
        diff = float(np.abs(ref[base + "_image"] - now[base + "_image"]).max())
        worst = max(worst, diff)
        ok = same_label and same_vol and diff <= args.atol
        bad += not ok
        if not ok:
            print(f"{base}: labels {'identical' if same_label else 'DIFFER'}, volumes "
                  f"{'identical' if same_vol else 'DIFFER'}, image max |diff| {diff:.3g}")
    n = sum(k.endswith("_label") for k in ref.files)
    print(f"{n - bad}/{n} renders match (labels byte-identical, images within {args.atol:g}; "
          f"largest image difference {worst:.3g})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
