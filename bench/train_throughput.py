"""Data throughput of the on-the-fly stream against training step time (CPU; GPU if present).

    .venv/bin/python bench/train_throughput.py                       # anatomy stream, 2 workers, 96^3
    .venv/bin/python bench/train_throughput.py --mode fdif --samples 20
    .venv/bin/python bench/train_throughput.py --skip-real           # no SwinUNETR-48 step (21 s each on CPU)
    taskset -c 1 .venv/bin/python bench/train_throughput.py --tiny-per-core 12   # issue 14's tiny-scale arithmetic

Prints: samples/s of the stream (DataLoader with ``--workers`` processes, one thread each, 96^3
patches), the tiny UNETR step time (32^3, batch 2) and the real-size SwinUNETR step time
(feature 48, 96^3, batch 1), and how many samples/s each step rate consumes. The generator
is not the bottleneck when the stream's samples/s exceeds the consumption.

``--tiny-per-core N``: configs/tiny.yaml as it trains, on one core and one thread: the CPU time of
one stream sample (its data module in the main process, batches of 2 drawn and cropped as in
training) and of one step of its UNETR on such a batch, interleaved (batch, step, batch, ...) for
``N`` rounds; medians, and samples/s made and consumed per core. ``--num-samples K`` crops K
patches from each generated sample (``data.num_samples``; the step then trains on batch_size * K
patches), and the rates are in patches.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def stream_rate(mode: str, workers: int, samples: int, shape: int) -> float:
    from anatomix.train.data import SynthDataModule

    if mode == "anatomy":
        cfg, over = str(REPO / "configs" / "synth.yaml"), {
            "graph": str(REPO / "graphs" / "abdomen.yaml"), "grid": {"shape": [shape] * 3}}
    else:
        cfg, over = str(REPO / "configs" / "fdif.yaml"), {"shape": [shape] * 3}
    dm = SynthDataModule(synth_config=cfg, overrides=over, seed=0, patch_size=(shape,) * 3, batch_size=1,
                         num_workers=workers, val_samples=0)
    it = iter(dm.train_dataloader())
    for _ in range(workers):  # warm-up: worker start, first sample each
        next(it)
    t = time.perf_counter()
    for _ in range(samples):
        next(it)
    dt = time.perf_counter() - t
    del it
    return samples / dt


def step_time(device: str, network: str, size: int, batch: int, steps: int, **kw) -> float:
    from anatomix.train.module import SegmentationModule

    m = SegmentationModule(network=network, out_channels=14, img_size=(size,) * 3, **kw).to(device)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    x = torch.rand(batch, 1, size, size, size, device=device)
    y = torch.randint(0, 14, (batch, 1, size, size, size), device=device)
    times = []
    amp = device == "cuda"
    for i in range(steps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            loss = m.loss_fn(m(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step is warm-up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def tiny_per_core(rounds: int, num_samples: int = 1) -> None:
    import yaml

    from anatomix.train.data import SynthDataModule
    from anatomix.train.module import SegmentationModule

    torch.set_num_threads(1)
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    data = dict(cfg["data"]["init_args"])
    data["synth_config"] = str(REPO / "configs" / data["synth_config"])
    data["overrides"] = dict(data["overrides"], graph=str(REPO / "graphs" / "abdomen.yaml"))
    data.update(num_workers=0, val_samples=0, num_samples=num_samples)
    dm = SynthDataModule(**data)
    model = SegmentationModule(**cfg["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    it = iter(dm.train_dataloader())
    sample_s, step_s = [], []
    for i in range(rounds + 1):
        c = time.process_time()
        batch = next(it)
        made = time.process_time() - c
        c = time.process_time()
        loss = model.loss_fn(model(batch["image"]), batch["label"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        took = time.process_time() - c
        b = int(batch["image"].shape[0])  # batch_size * num_samples patches
        if i:  # the first round is warm-up
            sample_s.append(made / b)
            step_s.append(took)
    per_patch, per_step = statistics.median(sample_s), statistics.median(step_s)
    what, unit = ("sample", "samples") if num_samples == 1 else (
        f"patch ({num_samples} patches per generated sample)", "patches")
    print(f"tiny stream (configs/tiny.yaml, one core, one thread, medians of {rounds}): {per_patch:.3f} s CPU "
          f"per {what} -> {1 / per_patch:.1f} {unit}/s per core")
    print(f"tiny UNETR step (batch {b}, same core): {per_step:.3f} s CPU -> consumes {b / per_step:.1f} {unit}/s")
    print("per core, the stream is " + ("faster than" if 1 / per_patch > b / per_step else "SLOWER than")
          + " the network it feeds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["anatomy", "fdif"], default="anatomy")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--shape", type=int, default=96)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--tiny-per-core", type=int, default=0, metavar="N",
                    help="only configs/tiny.yaml's stream against its network, one core, N rounds")
    ap.add_argument("--num-samples", type=int, default=1, metavar="K",
                    help="with --tiny-per-core: patches cropped from each generated sample")
    args = ap.parse_args()
    if args.tiny_per_core:
        tiny_per_core(args.tiny_per_core, args.num_samples)
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    rate = stream_rate(args.mode, args.workers, args.samples, args.shape)
    print(f"stream ({args.mode}, {args.shape}^3, {args.workers} workers): {rate:.2f} samples/s")
    tiny = step_time(device, "unetr", 32, 2, args.steps, feature_size=8, vit_hidden_size=96, vit_mlp_dim=192,
                     vit_heads=4)
    print(f"tiny UNETR 32^3 batch 2: {tiny:.3f} s/step -> consumes {2 / tiny:.2f} samples/s")
    if not args.skip_real:
        real = step_time(device, "swinunetr", 96, 1, max(1, args.steps - 1), feature_size=48, use_v2=True,
                         use_checkpoint=device == "cuda")
        print(f"SwinUNETR feature 48 96^3 batch 1: {real:.2f} s/step -> consumes {1 / real:.2f} samples/s")
        print("generator keeps up with the real-size step" if rate >= 1 / real else
              "generator is the bottleneck for the real-size step: add workers")


if __name__ == "__main__":
    main()
