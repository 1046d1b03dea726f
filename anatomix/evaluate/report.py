"""The report: JSON, figures, and the ``anatomix evaluate`` library entry point."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anatomix.evaluate.scoring import check_real_laterality, compare
from anatomix.evaluate.summary import (
    EvaluationError,
    EvaluationWarning,
    Settings,
    load_label_set,
    load_synthetic_set,
    resolve_label_table,
)


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write the report as JSON, atomically."""
    from anatomix.io import atomic_write_text

    text = json.dumps(_jsonable(report), indent=1, sort_keys=False)
    return atomic_write_text(path, text + "\n")


# ---- plots ---------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


def _plotted(report: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The organ pairs (sorted by the real baseline's median) and organs a figure draws: those of
    the organs both sets have (real maps may label far more, e.g. TotalSegmentator's 117)."""
    base = report["real_loo"]
    compared = set(report.get("inputs", {}).get("organs_compared") or base["volume_ml"])
    per_pair = base["mahalanobis_per_pair_median"]
    pairs = sorted((p for p in per_pair if set(p.split("|")) <= compared), key=lambda p: per_pair[p] or 0.0)
    return pairs, sorted(o for o in base["volume_ml"] if o in compared)


def plot_reports(reports: Mapping[str, Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """One figure comparing synthetic sets with the real leave-one-out baseline (taken from the first).

    Panels: per-pair Mahalanobis medians (pairs sorted by the real baseline), contact F1 per case,
    organ volume distributions (log scale), and a table of headline numbers, all over the organs
    both sets have (the first report's ``organs_compared``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not reports:
        raise ValueError("no report to plot")
    first = next(iter(reports.values()))
    base = first["real_loo"]
    sets: list[tuple[str, Mapping[str, Any]]] = [("real (leave-one-out)", base)]
    sets += [(name, r["synthetic"]) for name, r in reports.items()]
    colours = ["black"] + [plt.get_cmap("tab10")(i) for i in range(len(reports))]

    fig = plt.figure(figsize=(17, 11))
    gs = fig.add_gridspec(2, 3, height_ratios=[1, 1], width_ratios=[2.2, 1, 1.3])
    ax_pair = fig.add_subplot(gs[0, :])
    ax_f1 = fig.add_subplot(gs[1, 1])
    ax_vol = fig.add_subplot(gs[1, 0])
    ax_tab = fig.add_subplot(gs[1, 2])

    pairs, organs = _plotted(first)

    # per-pair Mahalanobis medians
    x = np.arange(len(pairs))
    for (name, s), col in zip(sets, colours):
        y = [s["mahalanobis_per_pair_median"].get(p) for p in pairs]
        y = [np.nan if v is None else v for v in y]
        ax_pair.plot(x, y, "o-" if name.startswith("real") else "o", ms=4, lw=1, color=col,
                     label=f"{name}: median {_fmt(s.get('mahalanobis_median'))}")
    ax_pair.set_xticks(x)
    ax_pair.set_xticklabels([p.replace("|", " | ") for p in pairs], rotation=90, fontsize=6)
    ax_pair.set_yscale("log")
    ax_pair.set_ylabel("Mahalanobis distance of centroid offset\n(median over cases)")
    ax_pair.set_title("Pairwise relative position (lower = closer to real)")
    ax_pair.legend(fontsize=8, loc="upper left")
    ax_pair.grid(alpha=0.3)

    # contact F1
    data = [[c["contacts"]["f1"] for c in s["cases"].values()] for _, s in sets]
    bp = ax_f1.boxplot(data, patch_artist=True, widths=0.6)
    for patch, col in zip(bp["boxes"], colours):
        patch.set_facecolor(col)
        patch.set_alpha(0.35)
    for i, d in enumerate(data):
        ax_f1.plot(np.full(len(d), i + 1) + np.linspace(-0.15, 0.15, len(d)), d, ".", color=colours[i], ms=4)
    ax_f1.set_xticks(range(1, len(sets) + 1))
    ax_f1.set_xticklabels([n for n, _ in sets], rotation=30, ha="right", fontsize=8)
    ax_f1.set_ylim(-0.02, 1.02)
    ax_f1.set_title("Contact graph vs real majority: F1 per case")

    # volume distributions
    width = 0.8 / len(sets)
    for k, ((name, s), col) in enumerate(zip(sets, colours)):
        vals = [s["volume_ml"].get(o, {}).get("values", []) for o in organs]
        pos = np.arange(len(organs)) + (k - (len(sets) - 1) / 2) * width
        keep = [(p, v) for p, v in zip(pos, vals) if v]
        if keep:
            b = ax_vol.boxplot([v for _, v in keep], positions=[p for p, _ in keep], widths=width * 0.9,
                               patch_artist=True, showfliers=False, manage_ticks=False)
            for patch in b["boxes"]:
                patch.set_facecolor(col)
                patch.set_alpha(0.4)
        ax_vol.plot([], [], "s", color=col, alpha=0.6, label=name)
    ax_vol.set_yscale("log")
    ax_vol.set_xticks(np.arange(len(organs)))
    ax_vol.set_xticklabels(organs, rotation=60, ha="right", fontsize=7)
    ax_vol.set_ylabel("volume (ml)")
    ax_vol.set_title("Organ volumes")
    ax_vol.legend(fontsize=7)

    # headline table
    ax_tab.axis("off")
    rows = []
    for name, s in sets:
        n = s.get("n_cases") or 1
        ov = s.get("constraint_reports", {}).get("impossible_overlaps_total", "-")
        rows.append([name, _fmt(s.get("mahalanobis_median")), _fmt(s.get("contact_f1_median")),
                     _fmt(s.get("volume_abs_z_overall_median")),
                     f"{s.get('direction_errors_total', 0) / n:.2f}", str(ov), str(s.get("n_cases"))])
    tab = ax_tab.table(cellText=rows, colLabels=["set", "Mahal.\nmedian", "contact\nF1 med.", "|z| log\nvolume",
                                                 "dir. err.\nper case", "imposs.\noverlaps", "n"],
                       loc="center", cellLoc="center", colWidths=[0.28] + [0.13] * 5 + [0.07])
    tab.auto_set_font_size(False)
    tab.set_fontsize(7.5)
    tab.scale(1.0, 2.2)
    ax_tab.set_title("Summary")
    fig.suptitle(title or "anatomix evaluate: anatomical realism vs real label maps", fontsize=13)
    fig.tight_layout()
    from anatomix.io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format=Path(path).suffix.lstrip(".") or "png"),
                 suffix=Path(path).suffix)
    plt.close(fig)
    return Path(path)


def plot_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """The figure of one report (synthetic set side by side with the real leave-one-out baseline)."""
    return plot_reports({"synthetic": report}, path)


# ---- the command ---------------------------------------------------------------------------------


def evaluate(
    real: str | Path | Sequence[str | Path],
    synthetic: str | Path | Sequence[str | Path],
    *,
    real_labels: str | Path | Mapping[Any, Any] | None = None,
    synthetic_labels: str | Path | Mapping[Any, Any] | None = None,
    out: str | Path | None = None,
    plot: str | Path | None = None,
    settings: Settings = Settings(),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare synthetic label maps with real ones; write ``out`` (JSON) and ``plot`` (PNG) if given.

    Args:
        real: real label map files and/or folders.
        synthetic: an ``anatomix synth`` output folder, or label map files / folders.
        real_labels: preset, label file or mapping for the real maps (default: embedded names).
        synthetic_labels: label table for the synthetic maps (default: the folder's dataset.json,
            else embedded names).
        out: report path (JSON), written atomically after everything was computed.
        plot: figure path.
        settings: evaluation settings.
        progress: called with each file name as it is read.

    Returns:
        The report (see :func:`compare`).

    Raises:
        EvaluationError: bad inputs, all listed with file, expected and found.
    """
    problems: list[str] = []
    for what, paths in (("real label maps", real), ("synthetic label maps", synthetic)):
        for q in [paths] if isinstance(paths, (str, Path)) else list(paths):
            if not Path(q).exists():
                problems.append(f"{q}: expected a label map file or a folder of them ({what}); found nothing there")
    for what, spec in (("--real-labels", real_labels), ("--synthetic-labels", synthetic_labels)):
        try:
            resolve_label_table(spec)
        except EvaluationError as exc:
            problems.extend(f"{what} {p}" for p in exc.problems)
    if problems:
        raise EvaluationError(problems)
    real_s = load_label_set(real, real_labels, settings=settings, what="real label maps", progress=progress)
    check_real_laterality(real_s)
    if isinstance(synthetic, (str, Path)):
        syn_s, records = load_synthetic_set(synthetic, synthetic_labels, settings=settings, progress=progress)
    else:
        syn_s = load_label_set(synthetic, synthetic_labels, settings=settings, what="synthetic label maps",
                               progress=progress)
        records = {}
    windowed = sum(1 for r in records.values() if (r.get("grid") or {}).get("fov") == "window")
    if windowed:
        import warnings

        warnings.warn(f"{windowed} of {len(records)} synthetic case(s) are fixed-size windows (grid fov "
                      "window), not whole abdomens: organs the window cuts score as too small or absent, "
                      "and their offsets and contacts as unrealistic. To compare with whole real scans, "
                      "synthesise with `anatomix synth --fov whole`", EvaluationWarning, stacklevel=2)
    report = compare(real_s, syn_s, records or None, settings)
    report["inputs"]["synthetic"]["window_cases"] = windowed
    if plot is not None:
        plot_report(report, plot)
    if out is not None:
        write_report(report, out)
    return report
