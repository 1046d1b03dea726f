"""Five-fold realism benchmark of `anatomix synth` on the FLARE22 subjects (issue 12).

Real data: the 5 FLARE22 training label maps in ../shared/data/flare22 (preset flare22). Nothing
this script writes (banks, graphs, synthetic sets, reports) may be committed: it is derived from
FLARE22. Everything goes under --work (default /tmp/anatomix_fivefold).

Fold k (k = 1..5), held-out subject k:
  1. anatomix ingest-masks <the four other subjects> --labels flare22 --out <work>/fold<k>/bank
  2. anatomix graph learn --bank <that bank> --out <work>/fold<k>/graph.yaml
  3. anatomix synth --graph <graph> --bank <bank> --fov whole -n N --out <work>/fold<k>/synth
  4. scores, both with `anatomix evaluate`:
     held-out   `anatomix evaluate --real <fold synth> --synthetic <subject k>`: the held-out real
                subject scored against the reference fitted on the generator's N cases (pairwise
                position Mahalanobis median, contact F1 vs the generator's majority contact graph).
                Its real baseline is the leave-one-out score of subject k against the reference
                fitted on the four real subjects the generator learnt from (same subject, same four
                subjects: the generator should reproduce them). Not circular.
     vs-real5   `anatomix evaluate --real <all five> --synthetic <fold synth>`: the fold's cases
                against the 5 real subjects, beside the real leave-one-out baseline (as the
                report prints it). Partly circular: four of the five reference subjects built the
                bank; shown because it is the direction of the per-pair table.
Plus `shipped`: graphs/abdomen.yaml with the embedded bank (no FLARE22 in it) against all five.

Per synthetic set the generator-side figures: laterality/direction errors per case and the share
of cases whose placement report lists a hard-constraint violation.

    .venv/bin/python bench/fivefold.py --n 40            # full run (CPU-heavy)
    .venv/bin/python bench/fivefold.py --n 4 --folds 1   # smoke run
    .venv/bin/python bench/fivefold.py --skip-synth      # re-score what is under --work
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


def run(cmd: list, timeout: float) -> None:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    t = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, timeout=timeout, cwd=REPO, stdout=subprocess.DEVNULL)
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)


def synth(graph: Path, bank: Path | None, out: Path, args: argparse.Namespace) -> None:
    if args.skip_synth and (out / "labelsTr").is_dir():
        return
    if out.exists():
        shutil.rmtree(out)
    cmd = [*ANATOMIX, "synth", "--graph", graph, "-n", args.n, "--out", out, "--seed", args.seed,
           "--workers", args.workers, "--fov", "whole", "--no-progress", "--allow-violations"]
    if bank is not None:
        cmd += ["--bank", bank]
    if args.config:
        cmd += ["--config", args.config]
    run(cmd, args.timeout)


def evaluate(real: list[Path] | Path, syn: list[Path] | Path, real_labels: str | None,
             syn_labels: str | None, out: Path, timeout: float) -> dict:
    cmd = [*ANATOMIX, "evaluate", "--out", out]
    for r in [real] if isinstance(real, Path) else real:
        cmd += ["--real", r]
    for s in [syn] if isinstance(syn, Path) else syn:
        cmd += ["--synthetic", s]
    if real_labels:
        cmd += ["--real-labels", real_labels]
    if syn_labels:
        cmd += ["--synthetic-labels", syn_labels]
    run(cmd, timeout)
    return json.loads(out.read_text(encoding="utf-8"))


def failed_share(synth_dir: Path) -> float | None:
    """Share of a set's cases with a required organ that could not be placed (from the records)."""
    recs = sorted((synth_dir / "records").glob("*.json"))
    if not recs:
        return None
    failed = sum(bool(json.loads(r.read_text(encoding="utf-8")).get("constraints", {}).get("failed")) for r in recs)
    return failed / len(recs)


def generator_figures(report_syn: dict) -> dict:
    n = report_syn["n_cases"] or 1
    cr = report_syn.get("constraint_reports", {})
    return {
        "direction_errors_per_case": report_syn["direction_errors_total"] / n,
        "laterality_errors": sum(v for k, v in report_syn.get("direction_errors_by_rule", {}).items()
                                 if k.startswith("laterality")),
        "hard_violation_share": (cr.get("cases_with_hard_violations", 0) / cr["cases_with_report"]
                                 if cr.get("cases_with_report") else None),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", default=str(DEFAULT_REAL))
    p.add_argument("--work", default="/tmp/anatomix_fivefold", help="scratch folder (never commit it)")
    p.add_argument("--n", type=int, default=40, help="synthetic cases per set")
    p.add_argument("--folds", default="1,2,3,4,5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--config", default=None, help="synthesis config passed to every synth run")
    p.add_argument("--no-shipped", action="store_true", help="skip the shipped graph + embedded bank set")
    p.add_argument("--skip-synth", action="store_true", help="reuse banks / graphs / sets under --work")
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--pairs", type=int, default=12, help="worst organ pairs printed")
    args = p.parse_args()

    real = sorted(Path(args.real).glob("*.nii.gz"))
    if len(real) < 3:
        p.error(f"{args.real}: expected the FLARE22 label maps; found {len(real)} files")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folds = [int(k) for k in args.folds.split(",") if k.strip()]
    rows: list[dict] = []
    pair_tables: dict[str, dict] = {}
    for k in folds:
        held = real[k - 1]
        train = [r for r in real if r != held]
        fold = work / f"fold{k}"
        fold.mkdir(exist_ok=True)
        bank, graph = fold / "bank", fold / "graph.yaml"
        if not (args.skip_synth and (bank / "manifest.json").exists()):
            run([*ANATOMIX, "ingest-masks", *train, "--labels", "flare22", "--out", bank, "--overwrite"],
                args.timeout)
            run([*ANATOMIX, "graph", "learn", "--bank", bank, "--out", graph, "--overwrite"], args.timeout)
        synth(graph, bank, fold / "synth", args)
        held_rep = evaluate(fold / "synth" / "labelsTr", [held], str(fold / "synth" / "dataset.json"), "flare22", fold / "report_heldout.json", args.timeout)
        v5 = evaluate(real, fold / "synth", "flare22", None, fold / "report_vs_real5.json", args.timeout)
        loo_case = v5["real_loo"]["cases"][held.name.split(".")[0]]
        s = held_rep["synthetic"]
        rows.append({
            "set": f"fold{k}", "n": v5["synthetic"]["n_cases"],
            "heldout_pair_median": s["mahalanobis_median"], "heldout_f1": s["contact_f1_median"],
            "real_loo_pair_median": loo_case["mahalanobis_median"], "real_loo_f1": loo_case["contacts"]["f1"],
            "v5_pair_median": v5["synthetic"]["mahalanobis_median"], "v5_f1": v5["synthetic"]["contact_f1_median"],
            "v5_real_loo_pair_median": v5["real_loo"]["mahalanobis_median"],
            "v5_real_loo_f1": v5["real_loo"]["contact_f1_median"],
            **generator_figures(v5["synthetic"]), "failed_share": failed_share(fold / "synth"),
        })
        pair_tables[f"fold{k}"] = v5["pair_table"]
    if not args.no_shipped:
        out = work / "shipped"
        synth(REPO / "graphs" / "abdomen.yaml", None, out, args)
        rep = evaluate(real, out, "flare22", None, work / "report_shipped.json", args.timeout)
        rows.append({
            "set": "shipped", "n": rep["synthetic"]["n_cases"],
            "heldout_pair_median": None, "heldout_f1": None, "real_loo_pair_median": None, "real_loo_f1": None,
            "v5_pair_median": rep["synthetic"]["mahalanobis_median"], "v5_f1": rep["synthetic"]["contact_f1_median"],
            "v5_real_loo_pair_median": rep["real_loo"]["mahalanobis_median"],
            "v5_real_loo_f1": rep["real_loo"]["contact_f1_median"],
            **generator_figures(rep["synthetic"]), "failed_share": failed_share(out),
        })
        pair_tables["shipped"] = rep["pair_table"]
    (work / "fivefold.json").write_text(json.dumps({"rows": rows, "pair_tables": pair_tables}, indent=1),
                                        encoding="utf-8")

    def f(v: object, w: int = 8) -> str:
        return f"{'-':>{w}}" if v is None else f"{float(v):>{w}.2f}"

    print("\nheld-out: the held-out subject against the generator's cases | real LOO: against the 4 real"
          "\nvs-real5: the set against all 5 real subjects (partly circular for folds) | real LOO over the 5")
    print(f"{'set':<9}{'n':>4} | {'held pair':>9}{'LOO pair':>9}{'held F1':>8}{'LOO F1':>8} | "
          f"{'v5 pair':>8}{'LOO pair':>9}{'v5 F1':>8}{'LOO F1':>8} | {'dir/case':>8}{'later.':>7}{'hard %':>7}"
          f"{'failed %':>9}")
    for r in rows:
        hard, failed = r["hard_violation_share"], r["failed_share"]
        print(f"{r['set']:<9}{r['n']:>4} | {f(r['heldout_pair_median'], 9)}{f(r['real_loo_pair_median'], 9)}"
              f"{f(r['heldout_f1'])}{f(r['real_loo_f1'])} | {f(r['v5_pair_median'])}"
              f"{f(r['v5_real_loo_pair_median'], 9)}{f(r['v5_f1'])}{f(r['v5_real_loo_f1'])} | "
              f"{f(r['direction_errors_per_case'])}{r['laterality_errors']:>7}"
              f"{'-' if hard is None else f'{100 * hard:.0f}':>7}"
              f"{'-' if failed is None else f'{100 * failed:.0f}':>9}")
    folds_only = [r for r in rows if r["set"].startswith("fold")]
    if folds_only:
        import statistics as st

        def med(key: str) -> float | None:
            v = [r[key] for r in folds_only if r[key] is not None]
            return st.median(v) if v else None

        print(f"{'folds med':<13} | {f(med('heldout_pair_median'), 9)}{f(med('real_loo_pair_median'), 9)}"
              f"{f(med('heldout_f1'))}{f(med('real_loo_f1'))} | {f(med('v5_pair_median'))}"
              f"{f(med('v5_real_loo_pair_median'), 9)}{f(med('v5_f1'))}{f(med('v5_real_loo_f1'))}")
    for name, table in pair_tables.items():
        if name != "shipped" and len(pair_tables) > 2:
            continue
        print(f"\n{name}: worst organ pairs (vs all 5 real): offset Mahalanobis median syn / real LOO, "
              "contact frequency syn / real")
        for r in table[:args.pairs]:
            print(f"  {r['pair']:<42}{f(r['offset_mahalanobis_synthetic'])}{f(r['offset_mahalanobis_real_loo'])}"
                  f"{f(r['contact_rate_synthetic'])}{f(r['contact_rate_real'])}")
    if len(pair_tables) > 2:  # folds: pairs by their median badness over the folds
        import statistics as st

        bad: dict[str, list] = {}
        for name, table in pair_tables.items():
            if name.startswith("fold"):
                for r in table:
                    bad.setdefault(r["pair"], []).append(r)
        worst = sorted(bad, key=lambda p: -st.median(r["badness"] for r in bad[p]))[:args.pairs]
        print("\nfolds: worst organ pairs (median over folds): offset syn / real LOO, contact syn / real")
        for pair in worst:
            rs = bad[pair]

            def m(key: str, rs: list = rs) -> float | None:
                v = [r[key] for r in rs if r[key] is not None]
                return st.median(v) if v else None

            print(f"  {pair:<42}{f(m('offset_mahalanobis_synthetic'))}{f(m('offset_mahalanobis_real_loo'))}"
                  f"{f(m('contact_rate_synthetic'))}{f(m('contact_rate_real'))}")
    print(f"\nreports under {work}/fold<k>/report_*.json, {work}/report_shipped.json; table {work}/fivefold.json")


if __name__ == "__main__":
    main()
