"""Speed and constraint figures of structure-aware synthesis (prints; not a test).

    taskset -c 1 .venv/bin/python bench/anatomy_speed.py [--n 12] [--n-whole 6] [--scenes 200] [--bank DIR]
    taskset -c 1 .venv/bin/python bench/anatomy_speed.py --against /tmp/wt-base --rounds 3   # before/after

Per case, one torch thread, CPU-time medians (wall printed too: on a shared, loaded machine the
process CPU time is the better estimate of the one-core cost on a quiet one), in the steady state
of a long run (``AnatomyGenerator.warm_up`` first: bank crops and blend levels cached):

- 96^3 window (1.5 x 1.5 x 2.0 mm) and the whole abdomen (fov whole, 1.5 x 1.5 x 2.0 mm): a case
  is placement + organ rendering + context anatomy + appearance (``generator.sample``);
  "with writing" adds ``synth._write_case``'s writing (image int16 HU and label as .nii.gz, the
  record as JSON) of that same sample;
- where the time goes (``--profile``: cProfile of a few cases, top functions);
- whole-abdomen label map at 1.5 mm (placement + rendering only), placement only, the constraint
  summary over ``--scenes`` scenes (graphs/abdomen.yaml with the embedded bank, or ``--bank``:
  e.g. a bank ingested from ../shared/data/flare22 into /tmp; never commit such a bank), peak memory.

``--against DIR``: the case timings of this checkout and of the anatomix checkout at DIR (e.g. a
detached worktree of the base commit), in subprocesses on the same core, interleaved for
``--rounds`` rounds, side by side (``--cases-only`` is what each subprocess runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


class _OneSample:
    """A generator whose ``sample`` returns an already generated sample (times the writing alone)."""

    def __init__(self, generator: Any, sample: Any) -> None:
        self._generator = generator
        self._sample = sample

    def sample(self, index: int) -> Any:
        return self._sample

    def __getattr__(self, name: str) -> Any:
        return getattr(self._generator, name)


def _config(fov: str, graph: str, bank: str | None) -> Any:
    """The default config with ``fov`` window or whole, or ``tiny``: the grid configs/tiny.yaml's
    stream draws (48^3 at 4 mm, the window field of view)."""
    from anatomix.config import anatomy_config

    if fov != "tiny":
        return anatomy_config(None, graph=graph, bank=bank, fov=fov)
    import yaml

    tiny = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())["data"]["init_args"]["overrides"]["grid"]
    cfg = anatomy_config(None, graph=graph, bank=bank)
    return cfg.model_copy(update={"grid": cfg.grid.model_copy(update={"shape": tuple(tiny["shape"]),
                                                                        "spacing_mm": tuple(tiny["spacing_mm"])})})


def case_times(fov: str, n: int, graph: str, bank: str | None, first: int = 0) -> dict[str, list[float]]:
    """CPU and wall seconds of ``n`` cases of ``fov``: generation, and generation plus writing."""
    from anatomix.synth import _write_case, build_generator

    gen = build_generator(_config(fov, graph, bank), seed=0)
    # steady state: every bank SDF and every blend level once up front (a long run amortises
    # them: the embedded bank has 18 blendable pairs), a few cases to fill the other caches
    if hasattr(gen, "warm_up"):
        gen.warm_up()
    else:  # an older checkout (--against): the same caches, filled by hand
        from anatomix.shape_field import organ_field

        for organ in gen.bank.organs:
            recs = list(gen.bank.shapes(organ))
            for a in recs:
                gen.bank.sdf(a.shape_id)
                for b in recs:
                    if b.subject_id != a.subject_id:
                        organ_field(gen.bank, str(a.shape_id), str(b.shape_id), 0.5, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                                    (0.0, 0.0, 0.0), cache=gen._cache)
    for i in range(2):
        gen.sample(10_000 + i)
    out: dict[str, list[float]] = {"gen_cpu": [], "gen_wall": [], "all_cpu": [], "all_wall": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(first, first + n):
            t0, c0 = time.perf_counter(), time.process_time()
            sample = gen.sample(i)
            t1, c1 = time.perf_counter(), time.process_time()
            _write_case(_OneSample(gen, sample), Path(tmp), i)
            t2, c2 = time.perf_counter(), time.process_time()
            out["gen_cpu"].append(c1 - c0)
            out["gen_wall"].append(t1 - t0)
            out["all_cpu"].append(c2 - c0)
            out["all_wall"].append(t2 - t0)
    return out


def _median(v: list[float]) -> float:
    return statistics.median(v) if v else float("nan")


def print_cases(label: str, fov: str, t: dict[str, list[float]]) -> None:
    n = len(t["gen_cpu"])
    print(f"{label}{fov:>6} case, generation only: median {_median(t['gen_cpu']):.3f} s CPU "
          f"({_median(t['gen_wall']):.3f} s wall); with writing: {_median(t['all_cpu']):.3f} s CPU "
          f"({_median(t['all_wall']):.3f} s wall) (n={n})")


def profile(fov: str, n: int, graph: str, bank: str | None, top: int = 25) -> None:
    import cProfile
    import pstats

    from anatomix.synth import build_generator

    gen = build_generator(_config(fov, graph, bank), seed=0)
    gen.sample(10_000)
    pr = cProfile.Profile()
    pr.enable()
    for i in range(n):
        gen.sample(i)
    pr.disable()
    print(f"--- cProfile, {n} {fov} cases, cumulative")
    pstats.Stats(pr).sort_stats("cumulative").print_stats(top)


def against(other: str, rounds: int, n: int, n_whole: int, n_tiny: int, graph: str, core: int | None) -> None:
    """Interleaved subprocess runs of this checkout and ``other``; medians over all rounds."""
    runs: dict[str, dict[str, dict[str, list[float]]]] = {}
    trees = {"before": str(Path(other).resolve()), "after": str(ROOT)}
    for r in range(rounds):
        for name, tree in trees.items():
            cmd = [sys.executable, str(ROOT / "bench" / "anatomy_speed.py"), "--cases-only", "--graph", graph,
                   "--n", str(n), "--n-whole", str(n_whole), "--n-tiny", str(n_tiny),
                   "--first", str(r * max(n, n_whole, n_tiny))]
            if core is not None:
                cmd = ["taskset", "-c", str(core), *cmd]
            env = dict(os.environ, PYTHONPATH=tree)
            res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
            line = [s for s in res.stdout.splitlines() if s.startswith("{")][-1]
            for fov, t in json.loads(line).items():
                acc = runs.setdefault(name, {}).setdefault(fov, {k: [] for k in t})
                for k, v in t.items():
                    acc[k].extend(v)
            print(f"round {r + 1}/{rounds}: {name} done", flush=True)
    print(f"side by side, CPU-time medians over {rounds} interleaved rounds:")
    print("| case | before | after | before / after |")
    print("|---|---:|---:|---:|")
    for fov in ("window", "whole", "tiny"):
        if fov not in runs["after"]:
            continue
        for key, what in (("gen_cpu", "generation only"), ("all_cpu", "with writing")):
            b, a = _median(runs["before"][fov][key]), _median(runs["after"][fov][key])
            print(f"| {fov} {what} | {b:.3f} s | {a:.3f} s | {b / a:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graph", default=str(ROOT / "graphs" / "abdomen.yaml"))
    ap.add_argument("--bank", default=None)
    ap.add_argument("--n", type=int, default=12, help="96^3 window cases")
    ap.add_argument("--n-whole", type=int, default=6, help="whole-abdomen cases")
    ap.add_argument("--n-tiny", type=int, default=0, help="tiny-config cases (48^3 at 4 mm)")
    ap.add_argument("--first", type=int, default=0, help="index of the first timed case")
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--profile", type=int, default=0, help="cProfile this many cases of each fov")
    ap.add_argument("--cases-only", action="store_true", help="only the case timings, as one JSON line")
    ap.add_argument("--against", default=None, help="another anatomix checkout: before/after side by side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--core", type=int, default=None, help="taskset core of the --against subprocesses")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.against:
        against(args.against, args.rounds, args.n, args.n_whole, args.n_tiny, args.graph, args.core)
        return
    if args.cases_only:
        res = {"window": case_times("window", args.n, args.graph, args.bank, args.first),
               "whole": case_times("whole", args.n_whole, args.graph, args.bank, args.first)}
        if args.n_tiny:
            res["tiny"] = case_times("tiny", args.n_tiny, args.graph, args.bank, args.first)
        print(json.dumps(res))
        return
    for fov, n in (("window", args.n), ("whole", args.n_whole), ("tiny", args.n_tiny)):
        if not n:
            continue
        print_cases("", fov, case_times(fov, n, args.graph, args.bank, args.first))
        if args.profile:
            profile(fov, args.profile, args.graph, args.bank)

    from anatomix.anatomy import AnatomyGenerator, _constraints, format_summary, summarize_records
    from anatomix.config import anatomy_config
    from anatomix.render import render_scene, scene_grid

    gen = AnatomyGenerator(anatomy_config(None, graph=args.graph, bank=args.bank), seed=0)
    tw, cw = [], []
    for i in range(max(5, args.n // 2)):
        t0, c0 = time.perf_counter(), time.process_time()
        scene = gen.scene(i)
        grid = scene_grid(scene, (1.5, 1.5, 1.5))
        render_scene(scene, gen.bank, grid, cache=gen._cache)
        tw.append(time.perf_counter() - t0)
        cw.append(time.process_time() - c0)
    print(f"whole-abdomen label map at 1.5 mm (last {'x'.join(map(str, grid.shape))}): "
          f"median {statistics.median(tw):.3f} s wall, {statistics.median(cw):.3f} s CPU")
    tp, cp, recs = [], [], []
    for i in range(args.scenes):
        t0, c0 = time.perf_counter(), time.process_time()
        scene = gen.scene(i)
        tp.append(time.perf_counter() - t0)
        cp.append(time.process_time() - c0)
        recs.append({"constraints": _constraints(scene)})
    print(f"placement only: median {1000 * statistics.median(tp):.0f} ms wall, "
          f"{1000 * statistics.median(cp):.0f} ms CPU per scene (n={args.scenes})")
    print(format_summary(summarize_records(recs)))
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
