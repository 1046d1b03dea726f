"""Digest of the first N structure-aware cases (labels and images, bytes) of the shipped graph with
the embedded bank: the check that a refactor leaves outputs byte-identical.

    python bench/case_digest.py [-n 20] [--seed 0] [--fov window|whole]
    python bench/case_digest.py -n 10 --save /tmp/ref        # on the base checkout: keep the arrays
    python bench/case_digest.py -n 10 --compare /tmp/ref     # on the new one: how far from them
    python bench/case_digest.py --records 200                # placement refactors: records only (fast)

Prints one line per case (label digest, image digest) and a digest over all of them. ``--save``
keeps each case's label, [0, 1] image and int16 HU image (``DIR/case_NNN.npz``); ``--compare``
reads them back and prints, per case and over all, whether the labels are byte-identical, the
largest difference of the [0, 1] image and how many int16 HU voxels differ (issue 14's check for
speed-ups that are not bit-exact: labels identical, images within 1e-4). ``--records N`` digests
the JSON records of the first N cases instead (placement and every draw, nothing rendered: 0.15-0.25 s
a case on the 2-core development host, so a placement change can be checked on hundreds of scenes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fov", choices=["window", "whole"], default="window")
    parser.add_argument("--save", type=Path, default=None, help="keep the arrays of every case in this folder")
    parser.add_argument("--compare", type=Path, default=None, help="compare with the arrays --save kept there")
    parser.add_argument("--records", type=int, default=0, help="digest the records of this many cases instead")
    args = parser.parse_args()

    import torch

    from anatomix.config import anatomy_config
    from anatomix.synth import build_generator, image_to_write

    torch.set_num_threads(1)
    config = anatomy_config(ROOT / "configs" / "synth.yaml", graph=str(ROOT / "graphs" / "abdomen.yaml"),
                            fov=args.fov)
    generator = build_generator(config, seed=args.seed)
    total = hashlib.sha256()
    if args.records:
        for i in range(args.records):
            total.update(json.dumps(generator.sample_record(i), sort_keys=True, default=str).encode())
        print(f"records of {args.records} cases ({args.fov}, seed {args.seed}): {total.hexdigest()[:24]}")
        return
    worst = {"labels_differ": 0, "image_max_diff": 0.0, "hu_voxels_differ": 0}
    for i in range(args.n):
        sample = generator.sample(i)
        lab = hashlib.sha256(sample.label.tobytes()).hexdigest()[:16]
        img = hashlib.sha256(sample.image.tobytes()).hexdigest()[:16]
        total.update(lab.encode() + img.encode())
        hu = image_to_write(sample)
        line = f"case {i:3d}  label {lab}  image {img}"
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez(args.save / f"case_{i:03d}.npz", label=sample.label, image=sample.image, hu=hu)
        if args.compare is not None:
            ref = np.load(args.compare / f"case_{i:03d}.npz")
            same = ref["label"].shape == sample.label.shape and np.array_equal(ref["label"], sample.label)
            diff = float(np.abs(ref["image"] - sample.image).max()) if same else float("nan")
            n_hu = int(np.count_nonzero(ref["hu"] != hu)) if same else -1
            worst["labels_differ"] += int(not same)
            worst["image_max_diff"] = max(worst["image_max_diff"], diff) if same else worst["image_max_diff"]
            worst["hu_voxels_differ"] += max(n_hu, 0)
            line += f"  labels {'identical' if same else 'DIFFER'}  image max diff {diff:.2e}  HU voxels differ {n_hu}"
        print(line, flush=True)
    print(f"all {args.n} cases ({args.fov}, seed {args.seed}): {total.hexdigest()[:24]}")
    if args.compare is not None:
        print(f"against {args.compare}: {worst['labels_differ']} case(s) with different labels; image max diff "
              f"{worst['image_max_diff']:.2e}; {worst['hu_voxels_differ']} int16 HU voxel(s) differ")


if __name__ == "__main__":
    main()
