"""FDIF's own generator and anatomix's FDIF mode side by side: CPU seconds per 96^3 volume.

    taskset -c 0 .venv/bin/python bench/fdif_compare.py --fdif-src /tmp/fdif_src \\
        --fdif-python /tmp/fdif_venv/bin/python --n 10

Getting FDIF's source (it is never vendored into anatomix): clone the public repository
``yamanoko/FDIF`` (``git clone https://github.com/yamanoko/FDIF``) and pass its root as
``--fdif-src`` (the directory holding ``src/fdslxsdf4seg``). Make it its own environment:
``python3 -m venv /tmp/fdif_venv && /tmp/fdif_venv/bin/pip install torch==2.13.0 numpy nibabel
plotly`` (what ``src/fdslxsdf4seg/generate_sdf_dataset.py`` imports for generation and saving);
``--fdif-python`` is that environment's python.

What runs: FDIF's ``SDFSegmentationDataset`` (``generate_sdf_dataset.py``) in a subprocess with
that python, configured as the README's paper command: 96^3, ``--min_objects 20 --max_objects
20 --num_classes 109``, all 10 ``--sdf_mappers`` and all 9 ``--displacement_functions``,
``--mapper_as_augmentation --displacement_as_augmentation``; one volume is ``dataset[i]``
(generation), plus FDIF's saving step of ``generate_and_save`` (``y.astype(int32)``,
``nib.save(Nifti1Image(x, eye(4)))`` of image and label as .nii.gz) for "with writing".
anatomix runs in this process: ``FdifGenerator(configs/fdif.yaml's settings, 20 objects)
.sample(i)`` (generation, arrays on the host), and with writing the NIfTI image + label +
record of one ``write_dataset`` case (:func:`anatomix.synth._write_case`).

Both are pinned to one core (``--core``; the parent sets its affinity, the child inherits it)
with one torch thread, and run interleaved: each round generates (and writes) one FDIF volume,
then ``--per-round`` anatomix volumes, then the same cases again with writing, so machine
load hits both alike (several anatomix volumes a round: the first one after FDIF's 5 s on the
same core runs on cold caches). Times are CPU seconds of the process doing the work
(``time.process_time``), medians over ``--n`` rounds (anatomix: over all its volumes) after one
warm-up round. Prints one table with the ratios.
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

# Runs inside FDIF's environment: reads "gen I" / "write I" lines, answers one JSON line each.
_DRIVER = r"""
import json, os, random, sys, tempfile, time
sys.path.insert(0, os.path.join(sys.argv[1], "src"))
import numpy as np, torch, nibabel as nib
torch.set_num_threads(1)
from fdslxsdf4seg.generate_sdf_dataset import SDFSegmentationDataset
size, seed = int(sys.argv[2]), int(sys.argv[3])
mappers = ("exponential_base_1.5 exponential_base_2.0 floor_width_0.5 floor_width_1.0 inverse_cube "
           "linear_slope_10.0 modular_10 modular_5 sinusoidal_wavelength_1.0 sinusoidal_wavelength_3.0").split()
disps = ("perlin_more_fine perlin_fine turbulence ridge ridge_coarse sharpmax sharpmax_fine twisted_x "
         "sawtooth").split()
random.seed(seed); torch.manual_seed(seed)
ds = SDFSegmentationDataset(grid_size=[size] * 3, num_volumes=10**6, min_objects=20, max_objects=20,
                            device=torch.device("cpu"), num_classes=109, sdf_mappers=mappers,
                            displacement_functions=disps, mapper_as_augmentation=True,
                            displacement_as_augmentation=True)
out = tempfile.mkdtemp()
print(json.dumps({"ready": True, "classes": len(ds.primitive_classes), "torch": torch.__version__}), flush=True)
for line in sys.stdin:
    cmd, i = line.split()
    i = int(i)
    t = time.process_time()
    x, y = ds[i]
    gen = time.process_time() - t
    res = {"gen": gen, "dtype": str(x.dtype)}
    if cmd == "write":
        y = y.astype(np.int32)
        nib.save(nib.Nifti1Image(x, affine=np.eye(4)), os.path.join(out, f"sample_{i:05d}_x.nii.gz"))
        nib.save(nib.Nifti1Image(y, affine=np.eye(4)), os.path.join(out, f"sample_{i:05d}_y.nii.gz"))
        res["total"] = time.process_time() - t
    print(json.dumps(res), flush=True)
"""


class _Fdif:
    """FDIF's generator in its own python, one request at a time."""

    def __init__(self, python: str, src: str, size: int, seed: int) -> None:
        if not (Path(src) / "src" / "fdslxsdf4seg" / "generate_sdf_dataset.py").is_file():
            raise SystemExit(f"--fdif-src {src}: no src/fdslxsdf4seg/generate_sdf_dataset.py there; pass the "
                             "root of a yamanoko/FDIF checkout (see this script's docstring)")
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen([python, "-c", _DRIVER, src, str(size), str(seed)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        while True:  # FDIF prints its own messages on stdout: skip to the driver's JSON line
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"FDIF's driver exited (code {self.proc.wait()}); see its error above")
            if line.startswith("{"):
                return json.loads(line)

    def run(self, cmd: str, index: int) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{cmd} {index}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fdif-src", required=True, help="root of a yamanoko/FDIF checkout")
    ap.add_argument("--fdif-python", required=True, help="python of FDIF's own environment")
    ap.add_argument("--n", type=int, default=10, help="rounds timed (after one warm-up round)")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--core", type=int, default=0, help="CPU core both run on")
    ap.add_argument("--per-round", type=int, default=5, help="anatomix volumes (each way) per FDIF volume")
    args = ap.parse_args()

    os.sched_setaffinity(0, {args.core})  # inherited by FDIF's subprocess
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from anatomix.config import FdifSynthConfig
    from anatomix.sdf.generator import FdifGenerator
    from anatomix.synth import _write_case

    fdif = _Fdif(args.fdif_python, args.fdif_src, args.size, args.seed)
    cfg = FdifSynthConfig(shape=(args.size,) * 3, n_objects=(20, 20))
    gen = FdifGenerator(cfg, seed=args.seed)
    t_fg, t_fw, t_ag, t_aw = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for sub in ("imagesTr", "labelsTr", "records"):
            (out / sub).mkdir()
        for r in range(args.n + 1):  # round 0 warms both up
            f = fdif.run("write", r)
            ag, aw = [], []
            for j in range(args.per_round):
                t = time.process_time()
                gen.sample(r * args.per_round + j)
                ag.append(time.process_time() - t)
            for j in range(args.per_round):
                t = time.process_time()
                _write_case(gen, out, r * args.per_round + j)  # the same cases as generated above
                aw.append(time.process_time() - t)
            if r:
                t_fg.append(f["gen"])
                t_fw.append(f["total"])
                t_ag += ag
                t_aw += aw
            print(f"round {r}: FDIF {f['gen']:.3f} s ({f['total']:.3f} with writing), anatomix "
                  f"{statistics.median(ag):.3f} s ({statistics.median(aw):.3f} with writing)", file=sys.stderr,
                  flush=True)
    fdif.close()
    fg, fw, ag, aw = (statistics.median(v) for v in (t_fg, t_fw, t_ag, t_aw))
    print(f"\n{args.size}^3, 20 objects, one core (#{args.core}), one torch thread; CPU s/volume, medians of "
          f"{args.n} interleaved rounds ({len(t_ag)} anatomix volumes each way)")
    print(f"FDIF: yamanoko/FDIF SDFSegmentationDataset, paper configuration ({fdif.info['classes']} classes, "
          f"torch {fdif.info['torch']}); anatomix {__import__('anatomix').__version__}, torch {torch.__version__}\n")
    print("| | FDIF | anatomix | FDIF / anatomix |")
    print("|---|---:|---:|---:|")
    print(f"| generation only | {fg:.3f} | {ag:.3f} | {fg / ag:.1f}x |")
    print(f"| with writing (NIfTI .nii.gz: FDIF image + label, anatomix image + label + record) | {fw:.3f} | "
          f"{aw:.3f} | {fw / aw:.1f}x |")
    print(f"| anatomix with writing vs FDIF generation only | {fg:.3f} | {aw:.3f} | {fg / aw:.1f}x |")


if __name__ == "__main__":
    main()
