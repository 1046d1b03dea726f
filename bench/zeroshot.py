"""Zero-shot on real CT: pre-train only on the on-the-fly synthetic stream, segment a real CT.

    .venv/bin/python bench/zeroshot.py --minutes 30                       # default run + 4 ablations
    .venv/bin/python bench/zeroshot.py --minutes 5 --variants default --json out.json
    .venv/bin/python bench/zeroshot.py --minutes 120 --stop-steps 4543 --variants default   # a fixed number of steps
    .venv/bin/python bench/zeroshot.py --image CT.nii.gz --label LABELS.nii.gz --labels btcv --minutes 30

For each variant: a MONAI BasicUNet (a CNN that learns on CPU; 48^3 patches at 4 mm) is trained
for ``--minutes`` of wall-clock time on the structure-aware stream (``configs/synth.yaml`` with the
variant's overrides, ``--window`` (48) voxels per axis at 4 mm), then the real image goes through the product's own
predict path (``RealDataModule(predict_files=...)`` + ``NiftiPredictionWriter``: RAS, 4 mm, CT
window, sliding window, label map written in the input's geometry), and the written prediction
is scored against the reference label map (read through ``anatomix.io``, names by ``--labels``).

Variants (same budget each, same seed):
- ``default``: context anatomy + CT tissue model / learned prior + randomised appearance (the product default);
- ``no_context``: the same appearance without context anatomy (organs in a body ellipse);
- ``ct_prior_only``: context, every case CT-like (``ct_probability: 1``);
- ``random_only``: context, every case randomised (per-label Gaussian mixtures; ``ct_probability: 0``);
- ``today``: no context, the appearance before issue 13 (legacy).

Default test pair: ``tests/fixtures/totalsegmentator/example_ct.nii.gz`` with
``example_seg_fast_force_split.nii.gz`` (TotalSegmentator predictions, Apache-2.0). The shipped
appearance prior is fitted on a different scan (``example_ct_sm``); nothing here reads the test
scan's intensities or labels before the prediction is scored. Note that the embedded shape bank's
whole-abdomen subject is the label map of this same scan (the only whole-abdomen Apache-2.0 label
map there is), so shapes are not held out: on a new scan expect lower figures; use
``--image/--label`` on your own CT, and a bank built from other subjects (``--bank``), to measure that.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TS = REPO / "tests" / "fixtures" / "totalsegmentator"
ORGANS = ["liver", "spleen", "kidney_left", "kidney_right", "stomach"]
CORE = ["liver", "spleen", "kidney_left", "kidney_right"]

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_context": {"context": {"enabled": False}},
    "ct_prior_only": {"appearance": {"ct_probability": 1.0}},
    "random_only": {"appearance": {"ct_probability": 0.0}},
    "today": {"context": {"enabled": False}, "appearance": {"legacy": True}},
}


def overrides(variant: str, bank: str | None, window: int = 48) -> dict[str, Any]:
    ov: dict[str, Any] = {"graph": str(REPO / "graphs" / "abdomen.yaml"),
                          "grid": {"shape": [window] * 3, "spacing_mm": [4.0, 4.0, 4.0], "foreground_bias": 0.9}}
    if bank:
        ov["bank"] = bank
    v = json.loads(json.dumps(VARIANTS[variant]))
    app = v.get("appearance", {})
    if app.pop("legacy", False):
        pass  # no context => sample_appearance draws exactly as before issue 13
    # every variant: at most 2 FDIF distractors per case (they cost ~0.1 s each on CPU)
    ov["appearance"] = {"distractors": [0, 2], **app}
    if "context" in v:
        ov["context"] = v["context"]
    return ov


def train(variant: str, minutes: float, out: Path, args: argparse.Namespace) -> Path:
    import lightning.pytorch as pl

    from anatomix.train.data import SynthDataModule
    from anatomix.train.module import SegmentationModule

    dm = SynthDataModule(synth_config=str(REPO / "configs" / "synth.yaml"),
                         overrides=overrides(variant, args.bank, args.window),
                         seed=args.seed, patch_size=(48, 48, 48), batch_size=2, num_workers=args.workers,
                         classes=ORGANS, val_samples=1)
    model = SegmentationModule(network="basicunet", out_channels=len(ORGANS) + 1, img_size=(48, 48, 48),
                               feature_size=args.features, class_names=ORGANS, lr=args.lr, warmup_steps=20,
                               max_steps=args.max_steps, sw_batch_size=2, sw_overlap=0.25, init_seed=args.seed)
    # --stop-steps ends training early without changing the schedule (a run comparable step for step
    # with a time-limited one whose schedule spans --max-steps)
    stop = args.stop_steps if args.stop_steps else args.max_steps
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=stop, max_time={"minutes": minutes},
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                         default_root_dir=str(out))
    t0 = time.time()
    trainer.fit(model, datamodule=dm)
    ckpt = out / f"{variant}.ckpt"
    trainer.save_checkpoint(str(ckpt))
    print(f"[{variant}] trained {trainer.global_step} steps in {time.time() - t0:.0f} s", flush=True)
    return ckpt


def predict(ckpt: Path, image: Path, out: Path, args: argparse.Namespace) -> Path:
    """The product's predict path (what ``anatomix predict`` runs), on one image."""
    import lightning.pytorch as pl
    import torch

    from anatomix.train.data import RealDataModule
    from anatomix.train.module import SegmentationModule
    from anatomix.train.writer import NiftiPredictionWriter

    model = SegmentationModule(network="basicunet", out_channels=len(ORGANS) + 1, img_size=(48, 48, 48),
                               feature_size=args.features, class_names=ORGANS, sw_batch_size=2, sw_overlap=0.25)
    state = torch.load(str(ckpt), map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    dm = RealDataModule(predict_files=[str(image)], classes=ORGANS, patch_size=(48, 48, 48),
                        spacing_mm=(4.0, 4.0, 4.0), num_workers=0)
    writer = NiftiPredictionWriter(output_dir=str(out / ckpt.stem))
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[writer], default_root_dir=str(out))
    trainer.predict(model, datamodule=dm, return_predictions=False)
    files = sorted((out / ckpt.stem).glob("*"))
    if not files:
        raise RuntimeError(f"no prediction written under {out / ckpt.stem}")
    return files[0]


def score(pred_path: Path, label_path: Path, labels: str) -> dict[str, float]:
    from anatomix.io import read_label_map
    from anatomix.label_tables import load_label_table

    pred = read_label_map(pred_path).array
    ref = read_label_map(label_path)
    table = {int(k): str(v) for k, v in load_label_table(labels).items()}
    value = {n: k for k, n in table.items()}
    if pred.shape != ref.array.shape:
        raise RuntimeError(f"prediction {pred.shape} and reference {ref.array.shape} are on different grids")
    out: dict[str, float] = {}
    for c, name in enumerate(ORGANS, start=1):
        p = pred == c
        g = ref.array == value.get(name, -1)
        den = int(p.sum() + g.sum())
        out[name] = round(float(2 * (p & g).sum() / den), 4) if den else float("nan")
    out["mean_core"] = round(float(np.mean([out[n] for n in CORE])), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, default=TS / "example_ct.nii.gz")
    ap.add_argument("--label", type=Path, default=TS / "example_seg_fast_force_split.nii.gz")
    ap.add_argument("--labels", default="totalsegmentator", help="label preset or JSON/YAML value: organ file")
    ap.add_argument("--minutes", type=float, default=30.0, help="pre-training wall-clock budget per variant")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ",".join(VARIANTS))
    ap.add_argument("--json", type=Path, default=None, help="write per-organ Dice and mean_core of every variant")
    ap.add_argument("--bank", default=None, help="shape bank (default: the embedded one)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--features", type=int, default=8, help="BasicUNet first width")
    ap.add_argument("--window", type=int, default=48,
                    help="synthetic window (voxels per axis at 4 mm) the 48^3 patch is cropped from")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--max-steps", type=int, default=100000,
                    help="steps of the learning-rate schedule (and the most trained)")
    ap.add_argument("--stop-steps", type=int, default=0,
                    help="stop after this many steps, the schedule unchanged (0: --max-steps / --minutes decide)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "zeroshot")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, args.threads))
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"image": str(args.image), "label": str(args.label), "minutes": args.minutes,
                               "network": f"basicunet f{args.features} 48^3 @ 4 mm", "variants": {}}
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        ckpt = train(variant, args.minutes, args.out, args)
        pred = predict(ckpt, args.image, args.out, args)
        results["variants"][variant] = score(pred, args.label, args.labels)
        print(f"[{variant}] {results['variants'][variant]}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    cols = ORGANS + ["mean_core"]
    print("| variant | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for v, r in results["variants"].items():
        print(f"| {v} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
