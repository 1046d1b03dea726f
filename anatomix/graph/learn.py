"""Learning a graph from a shape bank: anchors, volumes, parents, contacts and directions."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from anatomix.labels import MIDLINE_REFERENCES, PRESETS, body_side, mirror_organ
from anatomix.anatomy_model import fit_anatomy_model_from_bank
from anatomix.graph.model import OrganGraph
from anatomix.graph.schema import FORMAT_VERSION, Defaults, GraphError
from anatomix.graph.subjects import BankSubject, embedded_share, rebuild_subjects, subject_gaps

#: Prior standard deviation (mm, per axis) that regularises learned anchor covariances: with n
#: subjects, cov = ((n - 1) * S + PRIOR_WEIGHT * diag(std^2)) / (n - 1 + PRIOR_WEIGHT), so one
#: subject gives exactly the prior and many subjects the sample covariance.
DEFAULT_PRIOR_STD_MM = 10.0
#: The same for offsets of a child's centroid from its attached_to parent's (tighter: the
#: parent already carries the body-level variation).
DEFAULT_OFFSET_PRIOR_STD_MM = 5.0
PRIOR_WEIGHT = 2.0

#: Placement parents from anatomy, used by :func:`learn_graph` (``anatomical_parents=True``) for
#: the organs named here when the parent is in the graph: what a few subjects' "nearest larger
#: organ in contact" gets wrong (with FLARE22's subjects it attaches the aorta to the stomach, so
#: the aorta drifts with a mobile viscus, and the adrenals to the liver or IVC). ``None``: a root,
#: placed from its own anchor (the aorta is fixed to the spine; the body frame's origin, the
#: kidneys' midpoint, holds it better than any organ). The same choices as graphs/abdomen.yaml.
ANATOMICAL_PARENTS: Mapping[str, str | None] = MappingProxyType({
    "aorta": None,
    "adrenal_gland_left": "kidney_left",     # caps the upper pole of its kidney
    "adrenal_gland_right": "kidney_right",
    "gallbladder": "liver",                  # the gallbladder fossa
    "pancreas": "duodenum",                  # the head lies in the duodenal C-loop
    "inferior_vena_cava": "liver",           # the intrahepatic IVC in the liver's bare area
    "portal_splenic_vein": "liver",          # enters the liver at the hilum
    "esophagus": "stomach",                  # enters the stomach at the cardia
})

# Output label convention for learned graphs: BTCV's 13 values, then duodenum 14, then the rest
# in TotalSegmentator order (only organs absent from BTCV get new values).
_BTCV = dict((v, k) for k, v in PRESETS["btcv"].items())
_EXTRA_LABELS = {"duodenum": 14}


def _regularised_cov(samples: np.ndarray, prior_std_mm: float) -> np.ndarray:
    """Sample covariance shrunk toward diag(prior_std^2) with PRIOR_WEIGHT pseudo-subjects."""
    n = samples.shape[0]
    prior = np.eye(3) * prior_std_mm**2
    if n < 2:
        return prior
    s = np.cov(samples.T, ddof=1)
    return ((n - 1) * s + PRIOR_WEIGHT * prior) / (n - 1 + PRIOR_WEIGHT)


def _label_values(organs: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    used: set[int] = set()
    for o in organs:
        v = _BTCV.get(o, _EXTRA_LABELS.get(o))
        if v is not None:
            out[o] = v
            used.add(v)
    nxt = max(used | {14}) + 1
    for o in organs:
        if o not in out:
            while nxt in used:
                nxt += 1
            out[o] = nxt
            used.add(nxt)
    return out


def _reaches(parent_of: dict[str, str], start: str, target: str) -> bool:
    """Whether following parents from ``start`` reaches ``target`` (``start`` itself included)."""
    seen: set[str] = set()
    node: str | None = start
    while node is not None and node not in seen:
        if node == target:
            return True
        seen.add(node)
        node = parent_of.get(node)
    return False


def _round(x: Any, nd: int = 2) -> Any:
    a = np.asarray(x, dtype=np.float64)
    return np.round(a, nd).tolist()


def lateral_references(organs: Sequence[str], references: Sequence[str],
                       side: Any) -> dict[frozenset, tuple[str, str]]:
    """Pairs (lateral organ, midline structure) among ``organs``: pair -> (the lateral organ, the
    direction it lies in from the midline structure, ``left_of`` or ``right_of``).

    ``side(organ)`` gives an organ's side (``'left'``, ``'right'`` or None; see
    :func:`anatomix.labels.body_side`); ``references`` are the midline structures
    (:data:`anatomix.labels.MIDLINE_REFERENCES`).
    """
    present = set(organs)
    out: dict[frozenset, tuple[str, str]] = {}
    for ref in references:
        if ref not in present:
            continue
        for o in organs:
            s = side(o)
            if o != ref and s in ("left", "right") and frozenset((o, ref)) not in out:
                out[frozenset((o, ref))] = (o, f"{s}_of")
    return out


def learn_graph(
    bank: Any,
    organs: Sequence[str] | None = None,
    *,
    name: str = "learned",
    contact_tolerance_mm: float | None = None,
    min_contact_share: float = 0.5,
    min_direction_margin_mm: float = 10.0,
    prior_std_mm: float = DEFAULT_PRIOR_STD_MM,
    offset_prior_std_mm: float = DEFAULT_OFFSET_PRIOR_STD_MM,
    anatomy_model: bool = True,
    anatomical_parents: bool = True,
    groove_radius_mm: float = 15.0,
) -> OrganGraph:
    """Learn an organ graph from a shape bank.

    Each subject is rebuilt in the body frame by placing every shape's mask at its record's
    ``origin_mm`` (shape arrays are at bank spacing). Then:

    - anchor: mean of the organ's centroids over subjects (complete shapes in subjects whose
      body frame is exact, per the manifest's ``subjects[].frame_exact``, preferred; then
      complete shapes; then truncated ones in exact frames; then any), covariance regularised
      toward ``diag(prior_std_mm^2)`` (see
      :data:`DEFAULT_PRIOR_STD_MM`: with one subject the covariance IS the prior);
    - volume range: [0.7 * min, 1.3 * max] of complete shapes (truncated shapes only: [max, 2 * max]);
    - required when present in at least half the subjects, else optional with the share present;
    - contact: the pair touches (gap <= ``contact_tolerance_mm``, default two bank voxels) in at
      least ``min_contact_share`` of the subjects holding both; its ``max_overlap`` is the largest
      share of the smaller organ lying in a groove of the larger in any subject
      (:func:`anatomix.graph.subjects.embedded_share`, closing radius ``groove_radius_mm``; at
      most 0.5) where that exceeds the default ``contact_max_overlap``;
    - parent (attached_to): with ``anatomical_parents``, the parent :data:`ANATOMICAL_PARENTS`
      names (or none) where that organ is in the graph and the pair shares a subject; otherwise
      the nearest (by centroid) larger organ it is in contact with; offset = child centroid -
      parent centroid, covariance regularised with ``offset_prior_std_mm``;
    - direction: for pairs in contact and for left/right mirror pairs, each axis along which the
      order holds in every subject by at least ``min_direction_margin_mm``, counting the subjects
      where neither shape is cut by the field of view on that axis (and at least two of them when
      two or more subjects hold the pair); margin = half the smallest observed separation, rounded
      down to 1 mm;
    - laterality: every lateral organ (:func:`anatomix.labels.body_side`: ``kidney_left``,
      ``spleen``) against every midline structure of the graph
      (:data:`anatomix.labels.MIDLINE_REFERENCES`: aorta, inferior vena cava, spinal cord,
      sacrum): ``left_of`` / ``right_of`` on its own side when the eligible subjects (as above)
      all agree, by any separation (margin as above, possibly 0). Without it nothing ties a
      left adrenal that touches only its kidney and the stomach to the left of the aorta, and
      placement could draw it across the midline;
    - priority: smaller organs win where volumes meet (rank by typical volume);
    - label values: BTCV's, duodenum 14, others from 15;
    - ``anatomy_model`` (if asked): the joint model of centroids and log volumes of complete
      shapes (:func:`anatomix.anatomy_model.fit_anatomy_model_from_bank`).

    Args:
        bank: a ShapeBank (``organs``, ``spacing_mm``, ``shapes(organ)``, ``mask(shape_id)``,
            optional ``manifest.body_frame``).
        organs: organs to include (default: every organ of the bank).

    Raises:
        GraphError: an organ is unknown to the bank or the bank holds no shapes.
    """
    bank_organs = list(bank.organs)
    if organs is None:
        organs = bank_organs
    organs = list(dict.fromkeys(organs))
    missing = [o for o in organs if o not in bank_organs]
    if missing or not organs:
        probs = [
            f"bank: organs: expected organs the bank holds ({', '.join(bank_organs) or 'none'}); found {o!r}"
            for o in missing
        ] or ["bank: organs: expected at least one organ; found none"]
        raise GraphError(probs, "learn_graph")
    sp = np.asarray(bank.spacing_mm, dtype=np.float64)
    tol = float(2 * sp.max()) if contact_tolerance_mm is None else float(contact_tolerance_mm)
    subjects = rebuild_subjects(bank, organs)
    n_subj = len(subjects)
    labels = _label_values(organs)
    organs = sorted(organs, key=labels.__getitem__)
    entries, typical = _learn_organs(subjects, organs, labels, bank.frame_exact, prior_std_mm)
    contact_pairs, relations = _learn_contacts(subjects, tol, min_contact_share, groove_radius_mm)
    contact_set = {frozenset(p) for p in contact_pairs}
    relations += _learn_parents(subjects, organs, entries, typical, contact_set, anatomical_parents,
                                offset_prior_std_mm)
    relations += _learn_directions(subjects, organs, contact_set, min_direction_margin_mm)

    body_frame = None
    manifest = getattr(bank, "manifest", None)
    if manifest is not None and getattr(manifest, "body_frame", None) is not None:
        bf = manifest.body_frame
        body_frame = bf if isinstance(bf, str) else str(getattr(bf, "definition", bf))
    data = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": f"learned from a bank of {n_subj} subject(s) at {sp.tolist()} mm by anatomix graph learn",
        "defaults": {"contact_tolerance_mm": round(max(3.0, tol), 2)},
        "organs": entries,
        "relations": relations,
    }
    if body_frame:
        data["body_frame"] = body_frame
    if manifest is not None and getattr(manifest, "content_hash", None):
        data["learned_from_bank"] = str(manifest.content_hash)
    if anatomy_model:
        try:
            data["anatomy_model"] = fit_anatomy_model_from_bank(bank, organs).to_dict(ndigits=4)
        except ValueError:  # no complete shape of any organ: no joint model
            pass
    return OrganGraph.from_dict(data, f"learn_graph({name})")


def _learn_organs(subjects: list[BankSubject], organs: list[str], labels: dict[str, int], exact: dict[str, bool],
                  prior_std_mm: float) -> tuple[dict[str, dict], dict[str, float]]:
    """Organ entries (label, anchor, volume range, presence, priority) and typical volumes (ml)."""
    n_subj = len(subjects)

    def cents(o: str) -> tuple[np.ndarray, bool]:
        """Centroids for the anchor: complete shapes in exactly-framed subjects first."""
        have = [s for s in subjects if o in s.records]
        tiers = [
            [s for s in have if not s.records[o].truncated and exact.get(s.subject_id, True)],
            [s for s in have if not s.records[o].truncated],
            [s for s in have if exact.get(s.subject_id, True)],
            have,
        ]
        for k, tier in enumerate(tiers):
            if tier:
                return np.array([np.asarray(s.records[o].centroid_mm, float) for s in tier]), k == 0
        raise AssertionError("unreachable: every organ has a shape")

    entries: dict[str, dict] = {}
    typical: dict[str, float] = {}
    for o in organs:
        c, complete = cents(o)
        vols_c = [float(s.records[o].volume_ml) for s in subjects if o in s.records and not s.records[o].truncated]
        vols_all = [float(s.records[o].volume_ml) for s in subjects if o in s.records]
        if vols_c:
            vr = (0.7 * min(vols_c), 1.3 * max(vols_c))
        else:
            vr = (max(vols_all), 2.0 * max(vols_all))
        typical[o] = math.sqrt(vr[0] * vr[1])
        present = sum(o in s.records for s in subjects) / max(n_subj, 1)
        notes = []
        if not complete:
            notes.append("no complete shape in an exactly-framed subject: anchor is rough")
        if not vols_c:
            notes.append("only truncated shapes: volume range is rough")
        entries[o] = {
            "label": labels[o],
            "anchor": {"mean_mm": _round(c.mean(axis=0), 1), "cov_mm": _round(_regularised_cov(c, prior_std_mm), 2)},
            "volume_ml": [round(vr[0], 2), round(vr[1], 2)],
            "required": present >= 0.5,
            "probability": 1.0 if present >= 0.5 else round(present, 3),
            "rotation_deg": [[-10.0, 10.0], [-10.0, 10.0], [-10.0, 10.0]],
            "scale": [0.9, 1.1],
            "priority": 0,
        }
        if notes:
            entries[o]["note"] = "; ".join(notes)
    for rank, o in enumerate(sorted(organs, key=lambda o: (-typical[o], o)), start=1):
        entries[o]["priority"] = rank

    return entries, typical


def _learn_contacts(subjects: list[BankSubject], tol: float, min_contact_share: float,
                    groove_radius_mm: float) -> tuple[list[tuple[str, str]], list[dict]]:
    """Pairs touching in at least ``min_contact_share`` of the subjects holding both, and their
    contact relations (with a learned ``max_overlap`` where one lies in a groove of the other)."""
    touch: dict[frozenset, int] = {}
    both: dict[frozenset, int] = {}
    for s in subjects:
        gaps = subject_gaps(s, tol)
        organs_here = sorted(s.records)
        for i, a in enumerate(organs_here):
            for b in organs_here[i + 1:]:
                p = frozenset((a, b))
                both[p] = both.get(p, 0) + 1
                if p in gaps:
                    touch[p] = touch.get(p, 0) + 1
    contact_pairs = sorted(
        (tuple(sorted(p)) for p, k in touch.items() if k / both[p] >= min_contact_share), key=lambda t: t
    )
    relations: list[dict] = []
    for a, b in contact_pairs:
        contact: dict[str, Any] = {"type": "contact", "a": a, "b": b}
        # an organ in a groove of its partner (the IVC in the liver's) may overlap a partner shape
        # of another subject by as much as it lies in the groove in any subject
        share = max(embedded_share(s, a, b, groove_radius_mm) for s in subjects if a in s.records and b in s.records)
        if round(share, 2) > Defaults().contact_max_overlap:
            contact["max_overlap"] = round(min(share, 0.5), 2)
        relations.append(contact)

    return contact_pairs, relations


def _learn_parents(subjects: list[BankSubject], organs: list[str], entries: dict[str, dict],
                   typical: dict[str, float], contact_set: set[frozenset], anatomical_parents: bool,
                   offset_prior_std_mm: float) -> list[dict]:
    """attached_to relations: the anatomical parent where known (ANATOMICAL_PARENTS), else the
    nearest larger organ in contact; offsets from the subjects holding both."""
    relations: list[dict] = []
    mean_c = {o: np.asarray(entries[o]["anchor"]["mean_mm"]) for o in organs}
    parent_of: dict[str, str] = {}
    for o in sorted(organs, key=lambda o: (-typical[o], o)):
        known = ANATOMICAL_PARENTS.get(o, "") if anatomical_parents else ""
        if known is None:  # an anatomical root
            continue
        if known and known in organs and any(o in s.records and known in s.records for s in subjects):
            parent = known
        else:
            cands = [
                q for q in organs
                if q != o and frozenset((o, q)) in contact_set and (typical[q], q) > (typical[o], o)
                and not _reaches(parent_of, q, o)  # an anatomical parent can point down the sizes: no cycle
            ]
            if not cands:
                continue
            parent = min(cands, key=lambda q: (float(np.linalg.norm(mean_c[q] - mean_c[o])), q))
        if _reaches(parent_of, parent, o):
            continue
        parent_of[o] = parent
        offs = []
        for s in subjects:
            if o in s.records and parent in s.records:
                ro, rp = s.records[o], s.records[parent]
                offset = np.asarray(ro.centroid_mm, float) - np.asarray(rp.centroid_mm, float)
                offs.append((offset, ro.truncated or rp.truncated))
        good = [d for d, t in offs if not t] or [d for d, _ in offs]
        arr = np.array(good)
        relations.append({
            "type": "attached_to", "a": o, "b": parent,
            "offset": {"mean_mm": _round(arr.mean(axis=0), 1),
                       "cov_mm": _round(_regularised_cov(arr, offset_prior_std_mm), 2)},
        })

    return relations


def _learn_directions(subjects: list[BankSubject], organs: list[str], contact_set: set[frozenset],
                      min_direction_margin_mm: float) -> list[dict]:
    """direction relations: contact pairs and mirror pairs (every axis), lateral organs against
    midline structures (x only)."""
    relations: list[dict] = []
    cand_pairs = set(contact_set)
    for o in organs:
        m = mirror_organ(o)
        if m in organs:
            cand_pairs.add(frozenset((o, m)))
    side_of = lateral_references(organs, MIDLINE_REFERENCES, body_side)
    axis_dirs = {0: ("right_of", "left_of"), 1: ("anterior_to", "posterior_to"), 2: ("above", "below")}
    for pair in sorted(tuple(sorted(p)) for p in cand_pairs | set(side_of)):
        a, b = pair
        holding = [s for s in subjects if a in s.records and b in s.records]
        lateral = side_of.get(frozenset(pair))
        every_axis = frozenset(pair) in cand_pairs
        for ax in range(3):
            if not every_axis and ax != 0:
                continue
            # a shape cut by the field of view on this axis has no meaningful centroid along it
            # (an IVC cut at z- sits higher); along the other axes it still does
            faces = (f"{'xyz'[ax]}-", f"{'xyz'[ax]}+")
            eligible = [s for s in holding if not any(f in s.records[o].truncated_faces for o in (a, b) for f in faces)]
            # one subject is no evidence of an order "in every subject" when others hold the pair
            if not eligible or len(eligible) < min(2, len(holding)):
                continue
            d = np.array([np.asarray(s.records[a].centroid_mm, float) - np.asarray(s.records[b].centroid_mm, float)
                          for s in eligible])
            lo, hi = d[:, ax].min(), d[:, ax].max()
            # laterality: a lateral organ on its side of a midline structure, kept whenever every
            # subject agrees (a left adrenal 4 mm left of the aorta is as much on its side as one
            # 40 mm); side-consistent only, and on x only unless the pair also qualifies above
            a_right = lateral is not None and (lateral[0] == a) == (lateral[1] == "right_of")
            lateral_sep = float(lo if a_right else -hi) if ax == 0 and lateral is not None else 0.0
            if lateral_sep > 0:
                sep, dname = lateral_sep, "right_of" if a_right else "left_of"
            elif not every_axis:
                continue
            elif lo >= min_direction_margin_mm:
                sep, dname = lo, axis_dirs[ax][0]
            elif hi <= -min_direction_margin_mm:
                sep, dname = -hi, axis_dirs[ax][1]
            else:
                continue
            relations.append({"type": "direction", "a": a, "b": b, "direction": dname,
                              "margin_mm": float(math.floor(sep / 2))})

    return relations
