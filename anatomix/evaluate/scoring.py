"""Scoring cases against a reference: per case, per set, per organ pair, real leave-one-out."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from anatomix.evaluate.reference import (
    ReferenceModel,
    _pair_key,
    _pair_name,
    fit_reference,
)
from anatomix.evaluate.summary import EvaluationError, MapSummary, Settings
from anatomix.labels import body_side, mirror_organ, organ_side

REPORT_FORMAT_VERSION = 1

#: Anatomical direction rules checked on centroids (a, direction, b), as in organ graphs:
#: "a lies <direction> of b". They hold in normal adult abdominal anatomy (checked on FLARE22).
DIRECTION_RULES: tuple[tuple[str, str, str], ...] = (
    ("kidney_left", "left_of", "kidney_right"),
    ("spleen", "left_of", "liver"),
    ("stomach", "left_of", "liver"),
    ("aorta", "left_of", "inferior_vena_cava"),
    ("liver", "above", "kidney_right"),
    ("spleen", "above", "kidney_left"),
    ("adrenal_gland_right", "above", "kidney_right"),
    ("adrenal_gland_left", "above", "kidney_left"),
    ("esophagus", "above", "pancreas"),
    ("pancreas", "anterior_to", "aorta"),
    ("kidney_right", "posterior_to", "gallbladder"),
)

def midline_x(centroids: Mapping[str, Sequence[float]]) -> tuple[float, str]:
    """World x (mm) of the body midline from the anatomy, and how it was found.

    The spine (vertebrae / spinal cord) if labelled; else the midpoint of the aorta and the inferior
    vena cava (they straddle the spine); else the aorta; else the mean of all organ centroids.
    """
    spine = [c[0] for o, c in centroids.items() if o.startswith("vertebrae") or o in ("spinal_cord", "sacrum")]
    if spine:
        return float(np.mean(spine)), "spine"
    if "aorta" in centroids and "inferior_vena_cava" in centroids:
        return float((centroids["aorta"][0] + centroids["inferior_vena_cava"][0]) / 2), "aorta_ivc"
    if "aorta" in centroids:
        return float(centroids["aorta"][0]), "aorta"
    return float(np.mean([c[0] for c in centroids.values()])), "organ_mean"


def swapped_lateral_pairs(summary: MapSummary) -> dict[str, str]:
    """Every left/right pair of one map ("kidney_left/kidney_right") -> "" when its left organ lies
    left of its mate (RAS: smaller x is the subject's left), else where the two lie."""
    c = summary.centroids_mm
    pairs = [(o, m) for o in sorted(c) if organ_side(o) == "left" and (m := mirror_organ(o)) is not None and m in c]
    return {f"{a}/{b}": (f"{a} at x={c[a][0]:.1f} mm, {b} at x={c[b][0]:.1f} mm" if c[a][0] > c[b][0] else "")
            for a, b in pairs}


def check_real_laterality(real: Sequence[MapSummary], option: str = "--real-labels") -> None:
    """Refuse real maps whose lateral pairs are swapped (a wrong label preset or label file).

    A preset that names left and right the wrong way round for one pair (the kidneys, say) swaps
    that pair in every map; real anatomy does not (situs inversus is too rare to meet here).

    Raises:
        EvaluationError: some left/right pair is swapped (its left organ at larger RAS x than its
            right mate) in at least half of the real maps holding it.
    """
    swapped: dict[str, list[tuple[str, str]]] = {}
    held: dict[str, int] = {}
    for s in real:
        for pair, how in swapped_lateral_pairs(s).items():
            held[pair] = held.get(pair, 0) + 1
            if how:
                swapped.setdefault(pair, []).append((s.source, how))
    bad = {p: maps for p, maps in swapped.items() if 2 * len(maps) >= held[p]}
    if bad:
        ex = "; ".join(f"{maps[0][0]}: {maps[0][1]}" for maps in list(bad.values())[:3])
        counts = ", ".join(f"{p} in {len(maps)} of {held[p]}" for p, maps in bad.items())
        raise EvaluationError([
            f"{option}: expected left organs on the subject's left (smaller RAS x than their right "
            f"mates), found left and right swapped for {counts} real maps (e.g. {ex}); the label "
            "preset or file names left and right the wrong way round for these maps: use the preset of "
            "the dataset they come from, or a label file"])


def direction_errors(summary: MapSummary) -> list[str]:
    """Laterality and direction rule violations of one case (human-readable, one per error)."""
    from anatomix.relations import direction_margin_mm

    c = summary.centroids_mm
    mid, how = midline_x(c)
    errors: list[str] = []
    for organ in sorted(c):
        side = body_side(organ)
        if side is None or (how == "aorta_ivc" and organ == "inferior_vena_cava"):
            continue
        x = c[organ][0]
        if (side == "left" and x >= mid) or (side == "right" and x <= mid):
            errors.append(f"laterality: {organ} ({side}) at x={x:.1f} mm, midline ({how}) x={mid:.1f} mm")
    for a, direction, b in DIRECTION_RULES:
        if a in c and b in c:
            m = direction_margin_mm(c[a], c[b], direction)
            if m <= 0:
                errors.append(f"direction: {a} not {direction} {b} (by {-m:.1f} mm)")
    return errors


def record_violations(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Hard constraint violations from a synthetic record's constraint report (None if absent).

    Reads the list of measured relations (``kind``/``type``/``relation``, ``hard``,
    ``holds``/``satisfied``/``ok``, organs ``a``/``b``, ``value``): the placement Scene's
    ``scene.report`` as ``anatomix synth --graph`` writes it, else a list under ``report``,
    ``constraint_report`` or ``constraints`` at the top level or under ``placement``.
    """
    if not record:
        return None
    entries = None
    for holder in (record.get("scene"), record, record.get("placement")):
        if not isinstance(holder, Mapping):
            continue
        for key in ("report", "constraint_report", "constraints"):
            cand = holder.get(key)
            if isinstance(cand, Mapping):
                cand = cand.get("relations", cand.get("entries", cand.get("items")))
            if isinstance(cand, list) and all(isinstance(e, Mapping) for e in cand):
                entries = cand
                break
        if entries is not None:
            break
    if entries is None:
        return None
    hard = overlaps = checked = 0
    details: list[str] = []
    for e in entries:
        if not isinstance(e, Mapping):
            continue
        ok = next((e[k] for k in ("holds", "satisfied", "ok", "valid") if k in e), None)
        if ok is None:
            continue
        checked += 1
        kind = str(e.get("type", e.get("kind", e.get("relation", "")))).lower()
        is_hard = bool(e.get("hard", kind in ("avoid", "inside", "direction")))
        if not ok and is_hard:
            hard += 1
            if kind in ("avoid", "overlap"):
                overlaps += 1
            details.append(f"{kind} {e.get('a', '?')}-{e.get('b', '?')}: {e.get('value', e.get('measured', '?'))}")
    return {"checked": checked, "hard_violations": hard, "impossible_overlaps": overlaps, "details": details[:20]}


def _score_case(model: ReferenceModel, s: MapSummary, settings: Settings) -> dict[str, Any]:
    known = [o for o in s.volumes_ml if o in model.log_volume]
    vol_z = {o: abs(math.log(s.volumes_ml[o]) - model.log_volume[o][0]) / model.log_volume[o][1] for o in known}
    dists: dict[str, float] = {}
    for (a, b), (mean, cov, _) in model.offsets.items():
        if a in s.centroids_mm and b in s.centroids_mm:
            d = np.subtract(s.centroids_mm[b], s.centroids_mm[a]) - mean
            dists[_pair_name((a, b))] = float(np.sqrt(d @ np.linalg.solve(cov, d)))
    present = set(known)
    real_edges = {p for p in model.majority if p[0] in present and p[1] in present}
    case_edges = {_pair_key(*tuple(p)) for p in s.contacts}
    case_edges = {p for p in case_edges if p in model.offsets}  # both organs known to the reference
    tp = len(real_edges & case_edges)
    precision = tp / len(case_edges) if case_edges else 1.0
    recall = tp / len(real_edges) if real_edges else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "organs": sorted(s.volumes_ml),
        "missing_organs": sorted(o for o in model.organs if o not in s.volumes_ml and model.presence[o] >= 0.5),
        "truncated_organs": sorted(s.truncated),
        "volume_ml": {o: s.volumes_ml[o] for o in sorted(s.volumes_ml)},
        "volume_abs_z": vol_z,
        "mahalanobis": dists,
        "mahalanobis_median": float(np.median(list(dists.values()))) if dists else None,
        "contacts": {
            "precision": precision, "recall": recall, "f1": f1,
            "extra": sorted(_pair_name(p) for p in case_edges - real_edges),
            "missing": sorted(_pair_name(p) for p in real_edges - case_edges),
        },
        "direction_errors": direction_errors(s),
    }


def _median(values: Iterable[float]) -> float | None:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.median(v)) if v else None


def _summarise_cases(cases: Mapping[str, dict[str, Any]], model: ReferenceModel, n_cases: int) -> dict[str, Any]:
    per_pair: dict[str, list[float]] = {}
    all_d: list[float] = []
    vol_z: dict[str, list[float]] = {}
    volumes: dict[str, list[float]] = {}
    presence: dict[str, int] = {}
    for c in cases.values():
        for p, d in c["mahalanobis"].items():
            per_pair.setdefault(p, []).append(d)
            all_d.append(d)
        for o, z in c["volume_abs_z"].items():
            vol_z.setdefault(o, []).append(z)
        for o, v in c["volume_ml"].items():
            volumes.setdefault(o, []).append(v)
            presence[o] = presence.get(o, 0) + 1
    f1 = [c["contacts"]["f1"] for c in cases.values()]
    n_dir = [len(c["direction_errors"]) for c in cases.values()]
    rules: dict[str, int] = {}
    for c in cases.values():
        for e in c["direction_errors"]:
            key = e.split(" at x=")[0].split(" (by ")[0]
            rules[key] = rules.get(key, 0) + 1
    return {
        "n_cases": n_cases,
        "presence": {o: presence.get(o, 0) / max(n_cases, 1) for o in sorted(set(presence) | set(model.organs))},
        "volume_ml": {o: {"median": float(np.median(v)), "mean": float(np.mean(v)), "min": float(np.min(v)),
                          "max": float(np.max(v)), "values": [float(x) for x in v]}
                      for o, v in sorted(volumes.items())},
        "volume_abs_z_median": {o: _median(z) for o, z in sorted(vol_z.items())},
        "volume_abs_z_overall_median": _median(z for zs in vol_z.values() for z in zs),
        "mahalanobis_per_pair_median": {p: _median(v) for p, v in sorted(per_pair.items())},
        "mahalanobis_per_case_median": {k: c["mahalanobis_median"] for k, c in cases.items()},
        "mahalanobis_median": _median(all_d),
        "mahalanobis_mean": float(np.mean(all_d)) if all_d else None,
        "contact_f1_median": _median(f1),
        "contact_f1_mean": float(np.mean(f1)) if f1 else None,
        "contact_precision_mean": float(np.mean([c["contacts"]["precision"] for c in cases.values()])) if f1 else None,
        "contact_recall_mean": float(np.mean([c["contacts"]["recall"] for c in cases.values()])) if f1 else None,
        "direction_errors_total": int(sum(n_dir)),
        "cases_with_direction_errors": int(sum(1 for x in n_dir if x)),
        "direction_errors_by_rule": dict(sorted(rules.items())),
    }


def score_set(
    model: ReferenceModel,
    summaries: Sequence[MapSummary],
    records: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Settings = Settings(),
) -> dict[str, Any]:
    """Score label maps against a reference model: per case and summarised."""
    cases = {s.case_id: _score_case(model, s, settings) for s in summaries}
    out = _summarise_cases(cases, model, len(summaries))
    out["contact_rate"], out["pair_support"] = contact_rates(model, summaries)
    if records is not None:
        viol = {k: record_violations(records.get(k)) for k in cases}
        with_report = {k: v for k, v in viol.items() if v is not None}
        for k, v in with_report.items():
            cases[k]["constraint_report"] = v
        out["constraint_reports"] = {
            "cases_with_report": len(with_report),
            "hard_violations_total": int(sum(v["hard_violations"] for v in with_report.values())),
            "impossible_overlaps_total": int(sum(v["impossible_overlaps"] for v in with_report.values())),
            "cases_with_impossible_overlaps": int(sum(1 for v in with_report.values() if v["impossible_overlaps"])),
            "cases_with_hard_violations": int(sum(1 for v in with_report.values() if v["hard_violations"])),
        }
    out["cases"] = cases
    return out


def real_baseline(real: Sequence[MapSummary], settings: Settings = Settings()) -> dict[str, Any]:
    """Leave-one-out real-vs-real scores: subject i against the model fitted on the others."""
    if len(real) < 2:
        raise EvaluationError([f"real set: expected at least 2 real label maps for the leave-one-out "
                               f"baseline; found {len(real)}"])
    cases: dict[str, dict[str, Any]] = {}
    for i, s in enumerate(real):
        model = fit_reference([r for j, r in enumerate(real) if j != i], settings)
        cases[s.case_id] = _score_case(model, s, settings)
    full = fit_reference(real, settings)
    out = _summarise_cases(cases, full, len(real))
    out["contact_rate"], out["pair_support"] = contact_rates(full, real)
    out["cases"] = cases
    return out


def contact_rates(model: ReferenceModel, summaries: Sequence[MapSummary]) -> tuple[dict[str, float], dict[str, int]]:
    """Per organ pair of the reference: share of the maps holding both organs where they touch,
    and how many maps hold both (``a|b`` names, a < b)."""
    rates: dict[str, float] = {}
    support: dict[str, int] = {}
    for a, b in sorted(model.offsets):
        both = [s for s in summaries if a in s.volumes_ml and b in s.volumes_ml]
        if both:
            rates[_pair_name((a, b))] = sum(frozenset((a, b)) in s.contacts for s in both) / len(both)
            support[_pair_name((a, b))] = len(both)
    return rates, support


def pair_table(model: ReferenceModel, synthetic: Mapping[str, Any],
               baseline: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For every organ pair of the reference: offset distance and contact frequency, synthetic vs real.

    Offset distance: median over cases of the Mahalanobis distance of the centroid offset under the
    real reference (synthetic: against the reference of all real subjects; real: leave-one-out).
    Contact frequency: share of maps holding both organs where they touch. Rows are sorted worst
    first by ``badness = max(offset ratio - 1, 0) + 2 * |contact frequency difference|`` so the
    pairs to fix come first.

    Returns:
        rows: ``pair``, ``offset_mahalanobis_synthetic``, ``offset_mahalanobis_real_loo``,
        ``offset_ratio``, ``contact_rate_synthetic``, ``contact_rate_real``, ``contact_rate_diff``,
        ``real_majority_contact``, ``n_synthetic``, ``n_real``, ``badness``.
    """
    syn_d = synthetic.get("mahalanobis_per_pair_median", {})
    real_d = baseline.get("mahalanobis_per_pair_median", {})
    syn_c = synthetic.get("contact_rate", {})
    rows = []
    for pair, (_, _, n_real) in sorted(model.offsets.items()):
        name = _pair_name(pair)
        ds, dr = syn_d.get(name), real_d.get(name)
        cs, cr = syn_c.get(name), model.contact_rate.get(pair)
        ratio = ds / dr if ds is not None and dr else None
        diff = cs - cr if cs is not None and cr is not None else None
        badness = max((ratio or 1.0) - 1.0, 0.0) + 2.0 * abs(diff or 0.0)
        rows.append({
            "pair": name,
            "offset_mahalanobis_synthetic": ds,
            "offset_mahalanobis_real_loo": dr,
            "offset_ratio": ratio,
            "contact_rate_synthetic": cs,
            "contact_rate_real": cr,
            "contact_rate_diff": diff,
            "real_majority_contact": pair in model.majority,
            "n_synthetic": synthetic.get("pair_support", {}).get(name, 0),
            "n_real": n_real,
            "badness": badness,
        })
    rows.sort(key=lambda r: (-r["badness"], r["pair"]))
    return rows


_HEADLINE = ("mahalanobis_median", "contact_f1_median", "contact_f1_mean", "volume_abs_z_overall_median",
             "direction_errors_total", "cases_with_direction_errors", "n_cases")


def compare(
    real: Sequence[MapSummary],
    synthetic: Sequence[MapSummary],
    records: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Settings = Settings(),
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The full report (JSON-able dict): reference, synthetic scores, real leave-one-out baseline.

    Args:
        real: summaries of the real subjects (>= 2).
        synthetic: summaries of the synthetic cases (>= 1).
        records: synthetic case id -> record (constraint reports), optional.
        settings: evaluation settings.
        baseline: a precomputed ``real_baseline(real, settings)`` (benchmarks reuse it).
    """
    problems = []
    if len(real) < 2:
        problems.append(f"real set: expected at least 2 real label maps (leave-one-out baseline); found {len(real)}")
    if not synthetic:
        problems.append("synthetic set: expected at least 1 label map; found none")
    if problems:
        raise EvaluationError(problems)
    real_organs = sorted({o for s in real for o in s.volumes_ml})
    syn_organs = sorted({o for s in synthetic for o in s.volumes_ml})
    shared = sorted(set(real_organs) & set(syn_organs))
    if not shared:
        raise EvaluationError([
            f"synthetic set: expected organs in common with the real set ({', '.join(real_organs)}); "
            f"found {', '.join(syn_organs)} (wrong label table?)"
        ])
    if shared != real_organs or shared != syn_organs:
        # both sets scored on the organs both have, so that synthetic and real leave-one-out figures
        # are medians over the same pairs (real maps may label far more: TotalSegmentator's 117);
        # the others are listed in the report's inputs
        real = [s.restricted(shared) for s in real]
        synthetic = [s.restricted(shared) for s in synthetic]
        baseline = None  # a precomputed baseline covers every real organ
    model = fit_reference(real, settings)
    syn = score_set(model, synthetic, records, settings)
    base = baseline if baseline is not None else real_baseline(real, settings)
    headline: dict[str, Any] = {k: {"synthetic": syn.get(k), "real_loo": base.get(k)} for k in _HEADLINE}
    m_s, m_r = syn.get("mahalanobis_median"), base.get("mahalanobis_median")
    headline["mahalanobis_ratio_to_real"] = (m_s / m_r) if m_s is not None and m_r else None
    if "constraint_reports" in syn:
        headline["impossible_overlaps_total"] = {"synthetic": syn["constraint_reports"]["impossible_overlaps_total"],
                                                 "real_loo": 0}
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "settings": settings.as_dict(),
        "inputs": {
            "real": {"n": len(real), "cases": [s.case_id for s in real]},
            "synthetic": {"n": len(synthetic), "cases": [s.case_id for s in synthetic]},
            "organs_compared": shared,
            "organs_only_real": sorted(set(real_organs) - set(shared)),
            "organs_only_synthetic": sorted(set(syn_organs) - set(shared)),
        },
        "summary": headline,
        "pair_table": pair_table(model, syn, base),
        "reference": model.to_json(),
        "synthetic": syn,
        "real_loo": base,
    }
