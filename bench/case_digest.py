"""Digest of the first N structure-aware cases (labels and images, bytes) of the shipped graph with
the embedded bank: the check that a refactor leaves outputs byte-identical.

    python bench/case_digest.py [-n 20] [--seed 0] [--fov window|whole]

Prints one line per case (label digest, image digest) and a digest over all of them.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fov", choices=["window", "whole"], default="window")
    args = parser.parse_args()

    import torch

    from anatomix.config import anatomy_config
    from anatomix.synth import build_generator

    torch.set_num_threads(1)
    config = anatomy_config(ROOT / "configs" / "synth.yaml", graph=str(ROOT / "graphs" / "abdomen.yaml"),
                            fov=args.fov)
    generator = build_generator(config, seed=args.seed)
    total = hashlib.sha256()
    for i in range(args.n):
        sample = generator.sample(i)
        lab = hashlib.sha256(sample.label.tobytes()).hexdigest()[:16]
        img = hashlib.sha256(sample.image.tobytes()).hexdigest()[:16]
        total.update(lab.encode() + img.encode())
        print(f"case {i:3d}  label {lab}  image {img}")
    print(f"all {args.n} cases ({args.fov}, seed {args.seed}): {total.hexdigest()[:24]}")


if __name__ == "__main__":
    main()
