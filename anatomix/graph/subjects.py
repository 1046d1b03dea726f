"""Bank subjects rebuilt as label maps (each shape at its recorded place), for learning and checking graphs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from anatomix import relations as rel


@dataclass
class BankSubject:
    subject_id: str
    label_map: np.ndarray  # (X, Y, Z) uint16, 0 background
    origin_mm: np.ndarray  # body-frame mm of voxel [0, 0, 0]
    spacing_mm: np.ndarray
    label_of: dict[str, int]
    records: dict[str, Any]
    crops: dict[str, tuple[tuple[slice, ...], np.ndarray]] = field(default_factory=dict)  # organ -> (slices, mask)


def bank_subject_ids(bank: Any, organs: Sequence[str]) -> list[str]:
    ids = set()
    for o in organs:
        for r in bank.shapes(o):
            ids.add(str(r.subject_id))
    return sorted(ids)


def rebuild_subjects(bank: Any, organs: Sequence[str]) -> list[BankSubject]:
    """Place every shape's mask at its record's origin_mm on one grid per subject (bank spacing)."""
    sp = np.asarray(bank.spacing_mm, dtype=np.float64)
    by_subject: dict[str, dict[str, Any]] = {}
    for o in organs:
        for r in bank.shapes(o):
            by_subject.setdefault(str(r.subject_id), {}).setdefault(o, r)
    out = []
    for sid in sorted(by_subject):
        recs = by_subject[sid]
        lo = np.min([np.asarray(r.origin_mm, float) for r in recs.values()], axis=0)
        hi = np.max([np.asarray(r.origin_mm, float) + (np.asarray(r.shape_vox) - 1) * sp for r in recs.values()],
                    axis=0)
        shape = tuple(int(round(v)) + 1 for v in (hi - lo) / sp)
        lm = np.zeros(shape, dtype=np.uint16)
        label_of = {}
        crops = {}
        # largest first so that, should two shapes overlap, the smaller keeps its voxels
        for k, o in enumerate(sorted(recs, key=lambda o: -float(recs[o].volume_ml)), start=1):
            r = recs[o]
            m = np.asarray(bank.mask(r.shape_id), dtype=bool)
            start = np.round((np.asarray(r.origin_mm, float) - lo) / sp).astype(int)
            sl = tuple(slice(int(s0), int(s0) + n) for s0, n in zip(start, m.shape))
            lm[sl][m] = k
            label_of[o] = k
            crops[o] = (sl, m)
        out.append(BankSubject(sid, lm, lo, sp, label_of, recs, crops))
    return out


def pair_overlap(subj: BankSubject, a: str, b: str) -> tuple[float, float]:
    """(overlap fraction, inside fraction of a in b) of two shapes as placed in ``subj``."""
    (sa, ma), (sb, mb) = subj.crops[a], subj.crops[b]
    na, nb = int(np.count_nonzero(ma)), int(np.count_nonzero(mb))
    if na == 0 or nb == 0:
        return 0.0, 0.0
    inter = rel.offset_overlap_count(ma, tuple(x.start for x in sa), mb, tuple(y.start for y in sb))
    return inter / min(na, nb), inter / na


def subject_gaps(subj: BankSubject, max_gap_mm: float) -> dict[frozenset, float]:
    inv = {v: k for k, v in subj.label_of.items()}
    gaps = rel.contact_gaps(subj.label_map, tuple(float(v) for v in subj.spacing_mm), max_gap_mm)
    return {frozenset(inv[v] for v in pair): g for pair, g in gaps.items()}


def embedded_share(subj: BankSubject, a: str, b: str, radius_mm: float, step_mm: float = 3.0) -> float:
    """Share of the smaller of ``a`` and ``b`` lying in the grooves of the larger
    (:func:`anatomix.relations.groove_share` with ``radius_mm``; 0 for organs that only meet at a
    surface).

    Disjoint labels never overlap, yet an inferior vena cava runs in a groove of its liver. A shape
    of another subject has no groove there, so placement needs that much overlap allowed for the pair
    (rendering priority carves the groove back). The closing is computed in the smaller organ's box
    padded by three radii (every voxel of the larger organ that can matter is in it), on every k-th
    voxel so that the step is about ``step_mm`` (a groove is tens of millimetres wide).
    """
    (sa, ma), (sb, mb) = subj.crops[a], subj.crops[b]
    if np.count_nonzero(ma) > np.count_nonzero(mb):
        (sa, ma), (sb, mb) = (sb, mb), (sa, ma)
    if not ma.any() or not mb.any():
        return 0.0
    sp = np.asarray(subj.spacing_mm, dtype=np.float64)
    pad = np.ceil(3.0 * radius_mm / sp).astype(int)
    box_start = tuple(int(x.start - p) for x, p in zip(sa, pad))
    box_shape = tuple(int(n + 2 * p) for n, p in zip(ma.shape, pad))
    common = rel.offset_common_box(box_start, box_shape, tuple(int(x.start) for x in sb), mb.shape)
    if common is None:
        return 0.0
    large = np.zeros(box_shape, dtype=bool)
    large[common[0]] = mb[common[1]]
    small = np.zeros_like(large)
    small[tuple(slice(int(p), int(p) + n) for p, n in zip(pad, ma.shape))] = ma
    k = np.maximum(1, np.floor(step_mm / sp)).astype(int)
    sub = tuple(slice(None, None, int(v)) for v in k)
    return rel.groove_share(small[sub], large[sub], sp * k, radius_mm)
