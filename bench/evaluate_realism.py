"""Anatomical realism of `anatomix synth` against real label maps (the figures of issue 7).

Real set: the 5 FLARE22 training label maps in ../shared/data/flare22 (preset flare22; the
real-vs-real baseline is leave-one-out over them). Synthetic sets, whole-abdomen field of view:

  embedded    anatomix synth --graph graphs/abdomen.yaml (embedded shape bank)
  flare_bank  the same with a bank ingested from the 5 FLARE22 subjects (anatomix ingest-masks),
              the shipped graph restricted to the bank's organs (FLARE22 has no portal/splenic vein)
  random      the `placement: random` ablation (bank shapes at random poses), embedded bank

Everything this script writes (banks, synthetic sets, reports, figure) goes under --work
(default /tmp/anatomix_eval): it is derived from FLARE22 and must never be committed.

    .venv/bin/python bench/evaluate_realism.py --n 24
    .venv/bin/python bench/evaluate_realism.py --skip-synth      # re-score existing sets

Prints one table (medians) and writes <work>/report_<set>.json and <work>/realism.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO.parent / "shared" / "data" / "flare22"
ANATOMIX = [sys.executable, "-m", "anatomix"]

MODES = ("embedded", "flare_bank", "random")

RANDOM_CONFIG = """\
# placement ablation: bank shapes at random poses, no constraint check (written by bench/evaluate_realism.py)
mode: anatomy
placement:
  mode: random
"""


def run(cmd: list[str], timeout: float) -> None:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    t = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, timeout=timeout, cwd=REPO)
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)


def subgraph_for_bank(graph: Path, bank: Path, out: Path) -> Path:
    """The shipped graph restricted to the organs the bank has shapes of (FLARE22 has no portal vein).

    Organs outside the bank and every relation naming one are dropped; everything else (anchors,
    relations, ranges) is the shipped graph's, so the set differs from `embedded` by its shapes only.
    """
    import yaml

    from anatomix.bank import ShapeBank

    organs = set(ShapeBank.load(bank).organs)
    spec = yaml.safe_load(graph.read_text(encoding="utf-8"))
    dropped = sorted(set(spec["organs"]) - organs)
    spec["organs"] = {k: v for k, v in spec["organs"].items() if k in organs}
    spec["relations"] = [r for r in spec.get("relations", []) if r.get("a") in organs and r.get("b") in organs]
    out.write_text(f"# {graph.name} restricted to the organs of {bank} (dropped: {', '.join(dropped) or 'none'})\n"
                   + yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    print(f"graph for the FLARE22 bank: {out} (dropped organs: {', '.join(dropped) or 'none'})", flush=True)
    return out


def synthesise(mode: str, work: Path, args: argparse.Namespace) -> Path:
    out = work / mode
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    cmd = [*ANATOMIX, "synth", "--graph", args.graph, "-n", args.n, "--out", out, "--seed", args.seed,
           "--workers", args.workers, "--fov", "whole", "--allow-violations"]  # the random ablation breaks them by design
    if mode == "flare_bank":
        bank = work / "flare_bank_shapes"
        if not (bank / "manifest.json").exists():
            run([*ANATOMIX, "ingest-masks", args.real, "--labels", "flare22", "--out", bank, "--overwrite"],
                args.timeout)
        cmd += ["--bank", bank]
        graph = subgraph_for_bank(Path(args.graph), bank, work / "abdomen_flare_organs.yaml")
        cmd[cmd.index("--graph") + 1] = graph
    if mode == "random":
        cfg = Path(args.random_config) if args.random_config else work / "random.yaml"
        if not args.random_config:
            cfg.write_text(RANDOM_CONFIG, encoding="utf-8")
        cmd += ["--config", cfg]
    elif args.config:
        cmd += ["--config", args.config]
    run(cmd, args.timeout)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", default=str(DEFAULT_REAL), help="real label maps (FLARE22 folder)")
    p.add_argument("--work", default="/tmp/anatomix_eval", help="scratch folder (never commit it)")
    p.add_argument("--graph", default=str(REPO / "graphs" / "abdomen.yaml"))
    p.add_argument("--config", default=None, help="synthesis config for the structure-aware sets")
    p.add_argument("--random-config", default=None, help="config of the random-placement ablation")
    p.add_argument("--n", type=int, default=24, help="cases per synthetic set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--skip-synth", action="store_true", help="score the sets already under --work")
    p.add_argument("--keep", action="store_true", help="resume existing synthetic sets instead of rebuilding")
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args()

    from anatomix import evaluate as ev

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"unknown --modes {unknown}; expected some of {', '.join(MODES)}")

    settings = ev.Settings()
    t = time.perf_counter()
    real = ev.load_label_set(args.real, "flare22", settings=settings, what="real label maps")
    baseline = ev.real_baseline(real, settings)
    print(f"real: {len(real)} FLARE22 subjects summarised + leave-one-out baseline in "
          f"{time.perf_counter() - t:.1f} s", flush=True)

    reports: dict[str, dict] = {}
    for mode in modes:
        folder = work / mode if args.skip_synth else synthesise(mode, work, args)
        t = time.perf_counter()
        syn, records = ev.load_synthetic_set(folder, settings=settings)
        rep = ev.compare(real, syn, records or None, settings, baseline=baseline)
        ev.write_report(rep, work / f"report_{mode}.json")
        reports[mode] = rep
        print(f"{mode}: {len(syn)} cases scored in {time.perf_counter() - t:.1f} s", flush=True)

    if not reports:
        return
    ev.plot_reports(reports, work / "realism.png",
                    title=f"anatomix synth vs {len(real)} FLARE22 subjects (real: leave-one-out)")
    rows = [("real (LOO)", baseline)] + [(m, r["synthetic"]) for m, r in reports.items()]
    m_real = baseline["mahalanobis_median"]
    print()
    print(f"{'set':<12}{'n':>4}{'Mahal.med':>11}{'x real':>8}{'F1 med':>8}{'F1 mean':>9}{'|z|vol':>8}"
          f"{'dir.err/case':>14}{'cases w/ dir.err':>17}{'impossible ovl':>16}")
    for name, s in rows:
        n = s["n_cases"]
        ovl = s.get("constraint_reports", {}).get("impossible_overlaps_total", "-")
        print(f"{name:<12}{n:>4}{s['mahalanobis_median']:>11.2f}{s['mahalanobis_median'] / m_real:>8.2f}"
              f"{s['contact_f1_median']:>8.2f}{s['contact_f1_mean']:>9.2f}{s['volume_abs_z_overall_median']:>8.2f}"
              f"{s['direction_errors_total'] / n:>14.2f}{s['cases_with_direction_errors']:>17}{ovl!s:>16}")
    print(f"\nreports: {work}/report_<set>.json; figure: {work}/realism.png")
    summary = {name: {k: s.get(k) for k in ("n_cases", "mahalanobis_median", "contact_f1_median",
                                            "volume_abs_z_overall_median", "direction_errors_total",
                                            "cases_with_direction_errors")} for name, s in rows}
    (work / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
