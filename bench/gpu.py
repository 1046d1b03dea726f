"""GPU throughput in one short call: generation on the device for both modes, and the SwinUNETR-48
training step with and without the on-the-fly stream feeding it. Prints ONE table.

    python bench/gpu.py                        # --device cuda, 15 s per row, rows stop after --budget 240 s
    python bench/gpu.py --device cpu --tiny --seconds 2     # smoke run of the script itself

Rows (each timed for ``--seconds`` after one warm-up, at least 2 repetitions):

- ``fdif 96^3``: FDIF-mode volumes/s, generation only (parameter draw on the CPU, rendering on
  the device, image and label copied back to numpy; nothing written);
- ``fdif 96^3 batch B``: the same, ``B`` volumes per call (``FdifGenerator.sample_batch``, the
  batched renderer :mod:`anatomix.sdf.batch`: one pass per primitive class over the whole batch);
- ``anatomy 96^3`` / ``anatomy whole``: structure-aware cases/s (window 96^3 at 1.5x1.5x2 mm, and
  the whole abdomen); organ SDFs and labels on the device, placement, lesions and appearance on
  the CPU (numpy);
- ``swin synthetic``: SwinUNETR (feature_size 48, v2, gradient checkpointing, bf16 autocast on
  CUDA; as configs/pretrain.yaml) train step on 96^3 batch 1 of random tensors already on the device;
- ``swin + stream W workers``: the same step fed by ``anatomix.train.data.SynthDataModule``
  (structure-aware 96^3, W CPU worker processes); ``wait`` is the share of wall time the loop
  spends waiting for the next batch (0 %: the GPU never waits on the stream);
- ``swin + stream main``: the stream generating on ``--device`` in the main process (no workers);
- ``swin + fdif stream main``: the FDIF stream in the main process, ``--batch`` samples per
  batched call (``data.samples_per_call``);
- ``agreement``: CPU against ``--device`` on the first cases of both modes (label voxels that
  differ, largest image difference; tolerances in tests/test_cuda.py).

Peak GPU memory is per row (``torch.cuda.max_memory_allocated``). Nothing is downloaded or written.
A row that fails prints its error in the table and the others still run; rows are skipped once
``--budget`` seconds have passed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _repeat(fn: Callable[[int], Any], seconds: float, dev: torch.device) -> list[float]:
    """Times of fn(i) for i = 1, 2, ... until ``seconds`` have passed (fn(0) is the warm-up)."""
    fn(0)
    _sync(dev)
    times: list[float] = []
    start = time.perf_counter()
    i = 1
    while len(times) < 2 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn(i)
        _sync(dev)
        times.append(time.perf_counter() - t)
        i += 1
    return times


def _sizes(tiny: bool) -> dict[str, Any]:
    if tiny:  # SwinUNETR: 64^3 is its smallest trainable patch (32^3 leaves 1 voxel at the bottom)
        return {"fdif": 32, "window": 32, "window_mm": [4.0, 4.0, 4.0], "whole_mm": [6.0, 6.0, 6.0],
                "swin": 64, "feature": 12}
    return {"fdif": 96, "window": 96, "window_mm": [1.5, 1.5, 2.0], "whole_mm": [1.5, 1.5, 2.0],
            "swin": 96, "feature": 48}


def _fdif_generator(size: int, device: str):
    from anatomix.config import load_synth_config
    from anatomix.sdf.generator import FdifGenerator

    cfg = load_synth_config(REPO / "configs" / "fdif.yaml")
    cfg = type(cfg).model_validate({**cfg.model_dump(), "shape": [size] * 3})
    return FdifGenerator(cfg, seed=0, device=device)


def _anatomy_generator(fov: str, shape: int, spacing: list[float], device: str):
    from anatomix.config import AnatomySynthConfig, anatomy_config
    from anatomix.synth import build_generator

    cfg = anatomy_config(REPO / "configs" / "synth.yaml", graph=str(REPO / "graphs" / "abdomen.yaml"), fov=fov)
    dumped = cfg.model_dump()
    dumped["grid"] = {**dumped["grid"], "shape": [shape] * 3, "spacing_mm": spacing}
    return build_generator(AnatomySynthConfig.model_validate(dumped), seed=0, device=device)


def _swin(size: int, feature: int, out_channels: int, dev: torch.device):
    from anatomix.train.module import SegmentationModule

    m = SegmentationModule(network="swinunetr", out_channels=out_channels, img_size=(size,) * 3,
                           feature_size=feature, use_v2=True, use_checkpoint=dev.type == "cuda").to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = m.loss_fn(m(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _stream(size: int, spacing: list[float], workers: int, device: str, fdif_per_call: int = 0):
    """The structure-aware stream, or (``fdif_per_call`` > 0) the FDIF stream rendering that many
    samples per batched call."""
    from anatomix.train.data import SynthDataModule

    if fdif_per_call:
        dm = SynthDataModule(synth_config=str(REPO / "configs" / "fdif.yaml"), overrides={"shape": [size] * 3},
                             seed=0, patch_size=(size,) * 3, batch_size=1, num_workers=workers, val_samples=0,
                             device=device, samples_per_call=fdif_per_call)
        return dm, iter(dm.train_dataloader())
    over = {"graph": str(REPO / "graphs" / "abdomen.yaml"), "grid": {"shape": [size] * 3, "spacing_mm": spacing}}
    dm = SynthDataModule(synth_config=str(REPO / "configs" / "synth.yaml"), overrides=over, seed=0,
                         patch_size=(size,) * 3, batch_size=1, num_workers=workers, val_samples=0, device=device)
    return dm, iter(dm.train_dataloader())


def _fed_steps(step, it, dev: torch.device, seconds: float, warmup: int,
               min_steps: int = 2) -> tuple[list[float], float, int]:
    """Step times when the stream feeds the step; returns (times, wait share of wall time, steps)."""
    def one() -> tuple[float, float]:
        t0 = time.perf_counter()
        batch = next(it)
        x = batch["image"].to(dev, non_blocking=True)
        y = batch["label"].to(dev, non_blocking=True)
        _sync(dev)
        t1 = time.perf_counter()
        step(x, y)
        _sync(dev)
        return t1 - t0, time.perf_counter() - t1

    for _ in range(warmup):  # worker start-up, first samples, kernel autotuning
        one()
    waits, steps = [], []
    start = time.perf_counter()
    while len(steps) < min_steps or time.perf_counter() - start < seconds:
        w, s = one()
        waits.append(w)
        steps.append(s)
    wall = time.perf_counter() - start
    return [w + s for w, s in zip(waits, steps)], sum(waits) / wall, len(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="torch device of generation and training (default cuda)")
    ap.add_argument("--seconds", type=float, default=15.0, help="timed seconds per row (default 15)")
    ap.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)),
                    help="CPU worker processes of the stream row (default: cores - 2, at most 12)")
    ap.add_argument("--tiny", action="store_true", help="shrink every size (a smoke run, not a figure)")
    ap.add_argument("--batch", type=int, default=64, help="volumes per call of the batched FDIF row (default 64)")
    ap.add_argument("--budget", type=float, default=240.0, help="skip the remaining rows after this many seconds")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="the embedded shape bank has no shape")

    from anatomix.device import resolve_device
    from anatomix.errors import AnatomixError

    try:
        dev = resolve_device(args.device)
    except AnatomixError as err:
        sys.exit(f"bench/gpu.py: {err}")
    device = str(dev)
    z = _sizes(args.tiny)
    t_begin = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []  # name, rate, detail, peak memory

    def peak() -> str:
        if dev.type != "cuda":
            return "-"
        return f"{torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB"

    def row(name: str, fn: Callable[[], tuple[str, str]]) -> None:
        if time.perf_counter() - t_begin > args.budget:
            rows.append((name, "skipped", f"budget of {args.budget:.0f} s spent", "-"))
            return
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        try:
            rate, detail = fn()
            rows.append((name, rate, detail, peak()))
        except Exception as err:  # one failed row must not cost the whole (single) GPU run
            traceback.print_exc(file=sys.stderr)
            rows.append((name, "error", f"{type(err).__name__}: {str(err).splitlines()[0][:80]}", peak()))

    def gen_row(make: Callable[[], Any], unit: str) -> Callable[[], tuple[str, str]]:
        def run() -> tuple[str, str]:
            gen = make()
            times = _repeat(lambda i: gen.sample(i), args.seconds, dev)
            med = statistics.median(times)
            return f"{1.0 / med:.1f} {unit}/s", f"median {med * 1e3:.1f} ms, {len(times)} {unit}"
        return run

    def batch_row() -> tuple[str, str]:
        gen = _fdif_generator(z["fdif"], device)
        nb = args.batch
        times = _repeat(lambda i: gen.sample_batch(range(i * nb, (i + 1) * nb)), args.seconds, dev)
        med = statistics.median(times)
        return f"{nb / med:.1f} volumes/s", f"median {med * 1e3:.0f} ms per {nb}, {len(times)} calls"

    s = z["window"]
    row(f"fdif {z['fdif']}^3", gen_row(lambda: _fdif_generator(z["fdif"], device), "volumes"))
    row(f"fdif {z['fdif']}^3 batch {args.batch}", batch_row)
    row(f"anatomy {s}^3", gen_row(lambda: _anatomy_generator("window", s, z["window_mm"], device), "cases"))
    row("anatomy whole", gen_row(lambda: _anatomy_generator("whole", s, z["whole_mm"], device), "cases"))

    def agreement() -> tuple[str, str]:
        flips, worst, n = 0, 0.0, 0
        for make in (lambda d: _fdif_generator(z["fdif"], d),
                     lambda d: _anatomy_generator("window", s, z["window_mm"], d)):
            a_gen, b_gen = make("cpu"), make(device)
            for i in range(2):
                a, b = a_gen.sample(i), b_gen.sample(i)
                flips += int((a.label != b.label).sum())
                n += a.label.size
                if np.array_equal(a.label, b.label):
                    worst = max(worst, float(np.abs(a.image.astype(np.float64) - b.image).max()))
        # the batched renderer on the device against the per-volume one on the CPU
        cpu_gen, dev_gen = _fdif_generator(z["fdif"], "cpu"), _fdif_generator(z["fdif"], device)
        batch_flips = changed = batch_n = 0
        for a, b in zip((cpu_gen.sample(i) for i in range(2)), dev_gen.sample_batch(range(2))):
            batch_flips += int((a.label != b.label).sum())
            changed += int((a.image != b.image).sum())
            batch_n += a.label.size
        return (f"{flips} label voxels differ",
                f"of {n}; max image diff {worst:.2e} (cases with equal labels); batched on the device "
                f"against per volume on the CPU: {batch_flips} label, {changed} image voxels of {batch_n} differ")

    row(f"agreement cpu vs {dev.type}", agreement)

    classes = 14
    sw = z["swin"]

    def swin_synthetic() -> tuple[str, str]:
        step = _swin(sw, z["feature"], classes, dev)
        x = torch.rand(1, 1, sw, sw, sw, device=dev)
        y = torch.randint(0, classes, (1, 1, sw, sw, sw), device=dev)
        times = _repeat(lambda i: step(x, y), args.seconds, dev)
        med = statistics.median(times)
        return f"{med * 1e3:.0f} ms/step", f"{1.0 / med:.2f} steps/s, {len(times)} steps"

    def swin_stream(workers: int, gen_device: str, fdif_per_call: int = 0) -> Callable[[], tuple[str, str]]:
        def run() -> tuple[str, str]:
            dm, it = _stream(sw, z["window_mm"], workers, gen_device, fdif_per_call)
            step = _swin(sw, z["feature"], dm.num_classes, dev)
            # a batched stream renders one call per fdif_per_call steps: warm up over one whole call and
            # time at least one more, so the wait share includes a render
            warmup = fdif_per_call if fdif_per_call else (1 if args.tiny else max(3, workers))
            times, wait, n = _fed_steps(step, it, dev, args.seconds, warmup=warmup,
                                        min_steps=max(2, fdif_per_call))
            del it
            med = statistics.median(times)
            return f"{med * 1e3:.0f} ms/step", f"wait {100 * wait:.0f} % of wall, {n} steps"
        return run

    row(f"swin{z['feature']} {sw}^3 synthetic", swin_synthetic)
    row(f"swin + stream {args.workers} workers", swin_stream(args.workers, "cpu"))
    row(f"swin + stream main ({dev.type})", swin_stream(0, device))
    row(f"swin + fdif stream main ({dev.type}, {args.batch} per call)", swin_stream(0, device, args.batch))


    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"\nbench/gpu.py  device {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores"
          f"{', TINY sizes (not a figure)' if args.tiny else ''}, {args.seconds:g} s per row, "
          f"total {time.perf_counter() - t_begin:.0f} s")
    widths = [max(len(r[k]) for r in rows + [("row", "rate", "detail", "peak GPU mem")]) for k in range(4)]
    for r in [("row", "rate", "detail", "peak GPU mem")] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()
