"""Does synthetic pre-training help? A small CPU experiment with the tiny config.

    .venv/bin/python bench/pretrain_experiment.py --pretrain-steps 300 --finetune-steps 100
    .venv/bin/python bench/pretrain_experiment.py --pretrain-minutes 30 --finetune-steps 200 --mode fdif

1. Pre-train ``configs/tiny.yaml``'s network (UNETR, 32^3 patches at 4 mm) on the on-the-fly
   structure-aware stream (labels mapped to liver, spleen, kidney_left, kidney_right, stomach) for a
   fixed budget (steps, or minutes).
2. Zero-shot: Dice of that network on the real TotalSegmentator CT committed as a test fixture
   (``tests/fixtures/totalsegmentator/example_ct.nii.gz``, labels from
   ``example_seg_fast_force_split.nii.gz``, TotalSegmentator predictions, not manual).
3. Fine-tune the pre-trained network and the same network from scratch (same initial seed,
   same steps, same data order) on that CT; Dice after fine-tuning.

With a single real subject, the fine-tune Dice is measured on the subject it was tuned on: it says
how fast each start fits real anatomy, not how it generalises. ``--holdout`` adds the 30-slice
excerpt ``../shared/data/totalsegmentator/example_ct_sm.nii.gz`` + ``example_seg.nii.gz`` (a
different excerpt of TotalSegmentator's example data, probably the same patient) when present.
Results go to ``--out``/results.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TS = REPO / "tests" / "fixtures" / "totalsegmentator"
SHARED_TS = REPO.parent / "shared" / "data" / "totalsegmentator"
ORGANS = ["liver", "spleen", "kidney_left", "kidney_right", "stomach"]


def tiny_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())


def make_model(cfg: dict[str, Any], **over: Any):
    from anatomix.train.module import SegmentationModule

    kw = {**cfg["model"], **over}
    kw["img_size"] = tuple(kw["img_size"])
    return SegmentationModule(**kw)


def trainer(out: Path, steps: int, minutes: float | None = None):
    import lightning.pytorch as pl

    return pl.Trainer(accelerator="cpu", devices=1, max_steps=steps,
                      max_time={"minutes": minutes} if minutes else None, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(out))


def real_dm(image: Path, label: Path, out: Path, seed: int):
    from anatomix.train.data import RealDataModule

    dl = out / f"datalist_{image.name.split('.')[0]}.json"
    dl.write_text(json.dumps({"training": [{"image": str(image), "label": str(label)}]}))
    return RealDataModule(datalist=str(dl), classes=ORGANS, source_labels="totalsegmentator", patch_size=(32, 32, 32),
                          spacing_mm=(4.0, 4.0, 4.0), num_samples=2, num_workers=0, seed=seed)


@torch.no_grad()
def dice(model, dm) -> dict[str, float]:
    """Per-organ Dice of sliding-window predictions on the whole (preprocessed) volume."""
    dm.setup("validate")
    item = dm.val_ds[0]
    image = item["image"].as_tensor()[None]
    label = item["label"].as_tensor()[None].long()
    model.eval()
    pred = model.infer(image).argmax(1, keepdim=True)
    out = {}
    for c, name in enumerate(ORGANS, start=1):
        p, g = pred == c, label == c
        denom = int(p.sum() + g.sum())
        out[name] = float(2 * (p & g).sum() / denom) if denom else float("nan")
    out["mean"] = sum(out[n] for n in ORGANS) / len(ORGANS)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--pretrain-minutes", type=float, default=None, help="wall-clock cap on pre-training")
    ap.add_argument("--finetune-steps", type=int, default=100)
    ap.add_argument("--mode", choices=["anatomy", "fdif"], default="anatomy",
                    help="anatomy: structure-aware stream (labels = organs); fdif: primitives (zero-shot n/a)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout", action="store_true", help="also evaluate on ../shared/data example_ct_sm")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "pretrain_experiment")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from anatomix.train.data import SynthDataModule

    cfg = tiny_config()
    data = dict(cfg["data"]["init_args"])
    data["synth_config"] = str(REPO / "configs" / "synth.yaml")
    data["overrides"] = {**data.get("overrides", {}), "graph": str(REPO / "graphs" / "abdomen.yaml")}
    if args.mode == "fdif":  # primitives: labels are shape classes, so no organ head to test zero-shot
        data.update(synth_config=str(REPO / "configs" / "fdif.yaml"), classes=None, num_classes=110,
                    overrides={"shape": [48, 48, 48]})
    data.update(seed=args.seed, num_workers=args.workers, val_samples=0)
    synth = SynthDataModule(**data)

    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "torch_threads": torch.get_num_threads()}
    evals = {"example_ct (fine-tune subject)": (TS / "example_ct.nii.gz", TS / "example_seg_fast_force_split.nii.gz")}
    if args.holdout and (SHARED_TS / "example_ct_sm.nii.gz").is_file():
        evals["example_ct_sm (excerpt)"] = (SHARED_TS / "example_ct_sm.nii.gz", SHARED_TS / "example_seg.nii.gz")
    eval_dms = {k: real_dm(i, lab, args.out, args.seed) for k, (i, lab) in evals.items()}

    # 1. pre-train
    pre = make_model(cfg, out_channels=synth.num_classes, class_names=None, init_seed=args.seed,
                     max_steps=args.pretrain_steps)
    t = time.perf_counter()
    tr = trainer(args.out, args.pretrain_steps, args.pretrain_minutes)
    tr.fit(pre, synth)
    results["pretrain"] = {"steps": int(tr.global_step), "seconds": round(time.perf_counter() - t, 1),
                           "samples": int(tr.global_step) * synth.batch_size,
                           "final_loss": float(tr.callback_metrics.get("train/loss", float("nan")))}
    ckpt = args.out / "pretrained.ckpt"
    tr.save_checkpoint(ckpt)
    print(f"pre-trained {results['pretrain']}")

    # 2. zero-shot
    if args.mode == "anatomy":
        results["zero_shot"] = {k: dice(pre, dm) for k, dm in eval_dms.items()}

    # 3. fine-tune from the pre-trained checkpoint and from scratch (same seed, same steps)
    ft_dm = real_dm(*evals["example_ct (fine-tune subject)"], args.out, args.seed)
    for name, pretrained in (("finetuned_from_pretrain", str(ckpt)), ("from_scratch", None)):
        model = make_model(cfg, init_seed=args.seed + 1, pretrained=pretrained, max_steps=args.finetune_steps,
                           warmup_steps=min(10, args.finetune_steps // 5))
        t = time.perf_counter()
        tr = trainer(args.out, args.finetune_steps)
        tr.fit(model, real_dm(*evals["example_ct (fine-tune subject)"], args.out, args.seed))
        results[name] = {k: dice(model, dm) for k, dm in eval_dms.items()}
        results[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(name, results[name])
    del ft_dm

    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    rows = [("zero-shot (pre-trained)", results.get("zero_shot")),
            ("fine-tuned from pre-training", results["finetuned_from_pretrain"]),
            ("from scratch", results["from_scratch"])]
    for ev in evals:
        print(f"\nDice on {ev} ({args.finetune_steps} fine-tune steps, {results['pretrain']['steps']} pre-train steps)")
        print(f"{'start':32s}" + "".join(f"{o:>14s}" for o in [*ORGANS, "mean"]))
        for label, res in rows:
            if res is None:
                continue
            print(f"{label:32s}" + "".join(f"{res[ev][o]:14.3f}" for o in [*ORGANS, "mean"]))
    print(f"\nresults: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
