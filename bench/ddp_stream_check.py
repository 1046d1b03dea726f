"""Check the on-the-fly stream under Lightning DDP on CPU: every rank and worker draws disjoint indices.

    .venv/bin/python bench/ddp_stream_check.py                    # 2 ranks x 2 workers, 4 steps
    .venv/bin/python bench/ddp_stream_check.py --devices 2 --workers 1 --steps 3 --out /tmp/ddp

Runs ``Trainer(strategy="ddp", accelerator="cpu", devices=N)`` on a tiny UNETR fed by the FDIF
stream (36^3 volumes, 32^3 patches), records the sample indices each rank trained on, and checks
that they are disjoint across ranks, that together they are exactly 0..(steps x batch x ranks - 1)
(nothing skipped, nothing repeated) and that rank r only holds indices of its own worker lanes
(index mod (ranks x workers) in r x workers ... r x workers + workers - 1). Exit code 0 when all
hold. Lightning's DDP launcher re-runs this script once per extra rank, so it must be run as a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FDIF = {"mode": "fdif", "shape": [36, 36, 36], "n_objects": [4, 6],
        "classes": ["sphere", "cylinder", "torus", "octahedron"]}
TINY = dict(network="unetr", img_size=(32, 32, 32), feature_size=8, vit_hidden_size=96, vit_mlp_dim=192,
            vit_heads=4, sw_batch_size=4, sw_overlap=0.25)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2, help="DDP processes (ranks)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--out", default="runs/ddp_stream_check", help="folder for rank<r>.json")
    args = ap.parse_args(argv)

    import lightning.pytorch as pl
    import torch

    from anatomix.train.data import SynthDataModule
    from anatomix.train.module import SegmentationModule

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    class Record(pl.Callback):
        def __init__(self) -> None:
            self.indices: list[int] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            self.indices += [int(i) for i in batch["index"]]

        def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(
                {"rank": trainer.global_rank, "world_size": trainer.world_size, "indices": self.indices}))
            trainer.strategy.barrier("ddp_stream_check")  # every rank's file is written when fit returns

    torch.set_num_threads(1)
    dm = SynthDataModule(synth_config=FDIF, classes=FDIF["classes"], seed=3, patch_size=(32, 32, 32),
                         batch_size=args.batch, num_workers=args.workers, val_samples=0)
    model = SegmentationModule(out_channels=dm.num_classes, lr=1e-3, warmup_steps=1, max_steps=args.steps, **TINY)
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=args.devices, max_steps=args.steps,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=str(out),
                         callbacks=[Record()])
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    if trainer.global_rank != 0:
        return 0
    return check(out, args.devices, args.workers, args.steps, args.batch, time.perf_counter() - t0)


def check(out: Path, devices: int, workers: int, steps: int, batch: int, seconds: float) -> int:
    """Print each rank's indices and whether they are disjoint and complete; 0 when they are."""
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    lanes = devices * max(1, workers)
    problems = []
    for r in ranks:
        own = {r["rank"] * max(1, workers) + w for w in range(max(1, workers))}
        foreign = [i for i in r["indices"] if i % lanes not in own]
        print(f"rank {r['rank']}/{r['world_size']}: indices {sorted(r['indices'])}")
        if r["world_size"] != devices:
            problems.append(f"rank {r['rank']} saw world size {r['world_size']}")
        if foreign:
            problems.append(f"rank {r['rank']} trained on indices of other ranks' lanes: {foreign}")
    flat = [i for r in ranks for i in r["indices"]]
    if len(set(flat)) != len(flat):
        problems.append("an index was drawn twice")
    if sorted(flat) != list(range(steps * batch * devices)):
        problems.append(f"indices are not exactly 0..{steps * batch * devices - 1}")
    print(f"{devices} ranks x {workers} workers, {steps} steps of {batch}: {len(flat)} samples in {seconds:.1f} s; "
          + ("disjoint and complete" if not problems else "PROBLEMS: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
