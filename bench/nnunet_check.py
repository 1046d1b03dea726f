"""Does nnU-Net v2 read `anatomix synth` output as written? (prints; not a test: nnU-Net is not a dependency)

    python3 -m venv /tmp/nnunet_venv && /tmp/nnunet_venv/bin/pip install torch==2.13.0 \\
        && echo torch==2.13.0 > /tmp/c.txt && /tmp/nnunet_venv/bin/pip install -c /tmp/c.txt nnunetv2
    .venv/bin/python bench/nnunet_check.py --nnunet-bin /tmp/nnunet_venv/bin [--n 3]

Writes three small datasets into a temporary ``nnUNet_raw`` with this checkout's generators: the
default structure-aware config, FDIF mode, and ``context: {labels: ignore}``. Then runs nnU-Net's
``nnUNetv2_plan_and_preprocess -c 3d_fullres --verify_dataset_integrity`` on each (one process).
Prints per dataset whether it passed, the normalisation nnU-Net chose, the planned spacing and
patch, and the label values with the ignore label.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path


def _datasets(raw: Path, n: int) -> dict[int, str]:
    from anatomix.api import synth_config
    from anatomix.synth import build_generator, write_dataset

    warnings.simplefilter("ignore")
    anatomy = synth_config(graph="abdomen")
    ignore = anatomy.model_copy(update={"context": anatomy.context.model_copy(update={"labels": "ignore"})})
    configs = {601: ("abdomen", anatomy), 602: ("fdif", synth_config(config="fdif")), 603: ("ignore", ignore)}
    for did, (name, cfg) in configs.items():
        write_dataset(build_generator(cfg, seed=0), raw / f"Dataset{did}_{name}", n=n, seed=0, workers=1,
                      progress=False)
    return {did: name for did, (name, _) in configs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nnunet-bin", required=True, help="bin/ folder of a venv with nnunetv2 installed")
    ap.add_argument("--n", type=int, default=3, help="cases per dataset")
    args = ap.parse_args()
    tool = Path(args.nnunet_bin) / "nnUNetv2_plan_and_preprocess"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
                   nnUNet_results=str(root / "res"))
        names = _datasets(root / "raw", args.n)
        print(f"| dataset | nnU-Net verify + plan + preprocess | normalisation | spacing (z, y, x) | patch | labels |")
        print("|---|---|---|---|---|---|")
        for did, name in names.items():
            t = time.perf_counter()
            r = subprocess.run([str(tool), "-d", str(did), "-c", "3d_fullres", "--verify_dataset_integrity",
                                "-np", "1", "-npfp", "1"], env=env, capture_output=True, text=True)
            took = time.perf_counter() - t
            labels = json.loads((root / "raw" / f"Dataset{did}_{name}" / "dataset.json").read_text())["labels"]
            shown = f"0..{max(labels.values())}" + (f", ignore {labels['ignore']}" if "ignore" in labels else "")
            if r.returncode != 0:
                err = (r.stderr or r.stdout).strip().splitlines()[-1:]
                print(f"| {name} | **failed** (rc {r.returncode}): {' '.join(err)} | | | | {shown} |")
                continue
            plans = json.loads((root / "pre" / f"Dataset{did}_{name}" / "nnUNetPlans.json").read_text())
            full = plans["configurations"]["3d_fullres"]
            print(f"| {name} | passed ({took:.0f} s) | {', '.join(full['normalization_schemes'])} | "
                  f"{[round(s, 2) for s in full['spacing']]} | {full['patch_size']} | {shown} |")


if __name__ == "__main__":
    main()
