"""The batched FDIF renderer against the per-volume one: torch operations per volume (on a GPU,
kernel launches: what bounds the per-volume renderer there), host syncs per volume, seconds per
volume, and agreement. Runs on any device; the operation counts are the same on every device.

    taskset -c 1 .venv/bin/python bench/fdif_batch.py                  # 96^3, batches of 1, 8, 32
    .venv/bin/python bench/fdif_batch.py --device cuda --batches 1 16 64 256

Operations are counted with a ``TorchDispatchMode`` over the first batch: ``kernels`` are the
aten calls that compute (views, reshapes and dtype no-ops left out); ``copies`` the tensors made
from host data (``torch.tensor``: on a GPU, one host-to-device copy each); ``syncs`` the calls that
need a device value on the host (``.item()``, ``bool()``, ``nonzero``, boolean-mask indexing and
``masked_select``, whose output size is data-dependent). Copies to the host (``.cpu()``) are not
counted, as on the CPU they copy nothing: the per-volume renderer makes two per volume (image and
label), the batched one two per batch and two per part (kept blocks' counts, volumes). Times are medians over ``--rounds``
batches of distinct volumes (the per-volume renderer renders the same volumes one by one, in
the same run, alternating).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_SYNCS = {"aten._local_scalar_dense", "aten.is_nonzero", "aten.nonzero", "aten.item", "aten.masked_select"}
_NO_KERNEL = {"aten.select", "aten.slice", "aten.view", "aten.reshape", "aten.unsqueeze", "aten.squeeze",
              "aten.expand", "aten.permute", "aten.t", "aten.transpose", "aten.numpy_T", "aten.alias",
              "aten.detach", "aten.detach_", "aten.lift_fresh", "aten.as_strided", "aten.unbind", "aten.split",
              "aten.movedim", "aten._reshape_alias", "aten._unsafe_view", "aten.to", "aten._to_copy",
              "aten.contiguous", "aten.view_as", "aten.expand_as", "aten.split_with_sizes", "aten.chunk",
              "aten._local_scalar_dense", "aten.is_nonzero", "aten.item", "aten.empty", "aten.empty_like"}


class _Count(TorchDispatchMode):
    """Counts the aten calls that launch kernels, the tensors made from host data, and the calls
    that bring a device value to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.kernels = self.copies = self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.ops[name] += 1
        self.kernels += name not in _NO_KERNEL
        self.copies += name == "aten.lift_fresh"
        masks = name in ("aten.index", "aten.index_put", "aten.index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()))
        self.syncs += name in _SYNCS or masks
        return func(*args, **(kwargs or {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=96, help="grid side (default 96)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="batch sizes (default 1 8 32)")
    ap.add_argument("--rounds", type=int, default=3, help="timed batches per size (default 3)")
    ap.add_argument("--chunk", type=int, default=None,
                    help="points per step of the batched renderer (default: its device default)")
    ap.add_argument("--max-points", type=int, default=None,
                    help="box voxels per part of the batched renderer (default: its MAX_POINTS)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from anatomix.config import load_synth_config
    from anatomix.device import resolve_device
    from anatomix.sdf.generator import FdifGenerator

    dev = resolve_device(args.device)
    cfg = load_synth_config(REPO / "configs" / "fdif.yaml")
    cfg = type(cfg).model_validate({**cfg.model_dump(), "shape": [args.size] * 3})
    gen = FdifGenerator(cfg, seed=0, device=str(dev))

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def batched(records):
        return gen.render_records(records, chunk_points=args.chunk, max_points=args.max_points)

    def per_volume(records):
        return [gen.render_record(r) for r in records]

    batched([gen.sample_record(10**6)])  # warm-up (first-call costs)
    per_volume([gen.sample_record(10**6)])
    print(f"bench/fdif_batch.py  {args.size}^3, device {dev}, {torch.get_num_threads()} torch thread(s), "
          f"{args.rounds} rounds; medians per volume")
    head = ("renderer", "batch", "kernels/vol", "copies/vol", "syncs/vol", "s/vol", "label voxels differ", "image voxels differ")
    rows = []
    start = 0
    for nb in args.batches:
        records = [[gen.sample_record(start + r * nb + k) for k in range(nb)] for r in range(args.rounds)]
        start += args.rounds * nb
        counts = {}
        for name, fn in (("per volume", per_volume), ("batched", batched)):
            mode = _Count()
            with mode:
                fn(records[0])
            counts[name] = (mode.kernels / nb, mode.copies / nb, mode.syncs / nb)
        times: dict[str, list[float]] = {"per volume": [], "batched": []}
        flips = changed = voxels = 0
        for r in range(args.rounds):
            outs = {}
            for name, fn in ((("per volume", per_volume), ("batched", batched)) if r % 2 == 0
                             else (("batched", batched), ("per volume", per_volume))):
                sync()
                t = time.perf_counter()
                outs[name] = fn(records[r])
                sync()
                times[name].append((time.perf_counter() - t) / nb)
            for a, b in zip(outs["per volume"], outs["batched"]):
                flips += int((a.label != b.label).sum())
                changed += int((a.image != b.image).sum())
                voxels += a.label.size
        for name in ("per volume", "batched"):
            kernels, copies, syncs = counts[name]
            agree = ("-", "-") if name == "per volume" else (f"{flips} of {voxels}", f"{changed} of {voxels}")
            rows.append((name, str(nb), f"{kernels:.0f}", f"{copies:.0f}", f"{syncs:.2f}", f"{statistics.median(times[name]):.3f}", *agree))
    widths = [max(len(r[k]) for r in rows + [head]) for k in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()
