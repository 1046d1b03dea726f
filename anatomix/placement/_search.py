"""The candidate search of one organ: checking a candidate translation against every relation with
the organs already placed, pushing rejected candidates out of overlaps, moving the chosen one
towards unmet contacts, and the position prior the candidates are drawn from."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from anatomix import relations as rel
from anatomix.bank import ShapeBank
from anatomix.config import PlacementConfig
from anatomix.graph import OrganSpec, Relation
from anatomix.placement._lattice import Lattice, Placed, carry, overlap_region, pair_values, tight_overlap

__all__ = ["Context", "check_candidate", "direction_box", "neighbour_subjects", "position_prior", "push_out",
           "refine_contacts", "shape_anchor"]


@dataclass
class Context:
    h: float
    placed: dict[str, Placed]
    rels: list[Relation]
    body_scale: float
    exact: dict[str, bool] | None = None  # subject id -> body frame exact (shape anchors), None: graph anchors
    blockers: Counter[str] | None = None  # placed organs whose hard relations rejected candidates
    prepared: Any = None  # the Prepared of the relations list in use (see _prepared)
    anatomy: Any = None  # the graph's AnatomyModel scaled by body_scale (placement.joint_model), or None
    complexes: dict[str, Any] | None = None  # member organ -> ComplexGeometry (placement.complexes)


class Prepared:
    """The relations of one organ with the placed organs, split and stacked once per organ
    placement (every candidate check reuses them): direction relations with the other organ's
    centroid, area relations with the placed organs' boxes (python ints: a candidate tests one
    box per relation, a few integer comparisons, cheaper than numpy on 3-vectors)."""

    __slots__ = ("rels", "dirs", "area", "placed", "boxes")

    def __init__(self, ctx: Context, info: OrganSpec, rels: list[Relation]) -> None:
        h = ctx.h
        self.rels = rels
        self.dirs = []
        for r in rels:
            if r.type != "direction":
                continue
            other = r.b if r.a == info.name else r.a
            self.dirs.append((r, other, ctx.placed[other].centroid(h), r.a == info.name))
        self.area = [r for r in rels if r.type != "direction"]
        self.placed = [ctx.placed[r.b if r.a == info.name else r.a] for r in self.area]
        # per relation: the box its test needs, (lo, hi) inclusive lattice indices: the partner's
        # tight mask box for avoid and inside, its SDF array box for contact
        self.boxes = [(p.tight_t, tuple(int(v) for v in p.tight_hi)) if r.type != "contact"
                      else (p.start_t, tuple(int(v) - 1 for v in p.end)) for r, p in zip(self.area, self.placed)]


def prepared(ctx: Context, info: OrganSpec, rels: list[Relation]) -> Prepared:
    """The :class:`Prepared` of ``rels`` (cached on the context while that list is the one in use;
    the placed organs do not change while one organ is being placed)."""
    prep = ctx.prepared
    if prep is None or prep.rels is not rels or len(prep.placed) != len(prep.area):
        prep = ctx.prepared = Prepared(ctx, info, rels)
    return prep


def direction_box(ctx: Context, info: OrganSpec, rels: list[Relation]) -> tuple[np.ndarray, np.ndarray] | None:
    """The box of centroid positions where every hard direction relation with the placed organs
    holds, shrunk by one lattice step (a lattice translation moves the centroid up to half a step
    per axis); None when there is no such relation or the box is empty (they conflict)."""
    lo = np.full(3, -math.inf)
    hi = np.full(3, math.inf)
    found = False
    for r, _other, oc, is_a in prepared(ctx, info, rels).dirs:
        if not r.hard:
            continue
        found = True
        axis, sign = rel.DIRECTIONS[r.direction or ""]
        # sign * (a - b)[axis] > margin, solved for this organ's centroid
        s = sign if is_a else -sign
        bound = oc[axis] + s * (r.margin_mm + ctx.h)
        if s > 0:
            lo[axis] = max(lo[axis], bound)
        else:
            hi[axis] = min(hi[axis], bound)
    if not found or np.any(lo > hi):
        return None
    return lo, hi


def check_candidate(ctx: Context, info: OrganSpec, lat: Lattice, m: np.ndarray,
                     rels: list[Relation], bound: float = math.inf, weight: float = 1.0,
                     offset: Any = 0.0) -> tuple[bool, float]:
    """(all hard relations hold, soft penalty) of ``lat`` at lattice translation ``m``.

    Early exit: once ``weight * penalty + offset >= bound`` (the candidate's score can no longer
    beat the best one; penalties only grow) it returns ``(False, inf)`` without the remaining
    checks (``offset``: a number, or a callable giving it, called once after the direction checks).
    Callers pass a finite bound only when such a candidate would be discarded anyway.
    """
    h = ctx.h
    prep = prepared(ctx, info, rels)
    start = m + lat.k0
    cen = m * h + lat.centroid_off
    penalty = 0.0
    # cheapest first: directions
    for r, other, oc, is_a in prep.dirs:
        ca, cb = (cen, oc) if is_a else (oc, cen)
        v = rel.direction_margin_mm(ca, cb, r.direction or "")
        ok = rel.relation_holds("direction", v, r.tolerance, r.margin_mm)
        if not ok:
            if r.hard:
                if ctx.blockers is not None:
                    ctx.blockers[other] += 1
                return False, math.inf
            penalty += (r.margin_mm - v) / h
    if bound < math.inf:
        if callable(offset):  # computed only for candidates that pass the direction checks
            offset = offset()
        if weight * penalty + offset >= bound:
            return False, math.inf
    # boxes first, for every relation at once: an avoid whose organ boxes do not meet holds
    area = prep.area
    if not area:
        return True, penalty
    placed = prep.placed
    s0, s1, s2 = start_t = (int(start[0]), int(start[1]), int(start[2]))
    # this candidate's boxes (inclusive lattice indices): its tight mask box and its SDF array box
    (t0, t1, t2), (u0, u1, u2), (n0, n1, n2) = lat.tight_lo_t, lat.tight_hi_t, lat.sdf.shape
    mask_lo, mask_hi = (s0 + t0, s1 + t1, s2 + t2), (s0 + u0, s1 + u1, s2 + u2)
    sdf_hi = (s0 + n0 - 1, s1 + n1 - 1, s2 + n2 - 1)
    for i, r in enumerate(area):
        p = placed[i]
        (b0, b1, b2), (e0, e1, e2) = prep.boxes[i]
        lo, hi = (start_t, sdf_hi) if r.type == "contact" else (mask_lo, mask_hi)
        meet = b0 <= hi[0] and b1 <= hi[1] and b2 <= hi[2] and e0 >= lo[0] and e1 >= lo[1] and e2 >= lo[2]
        if not meet:
            if r.type == "avoid":
                continue
            inter, gap = 0, math.inf
        elif r.type == "contact":
            inter, gap = pair_values(start_t, lat, p.start_t, p.lat, need_gap=True)
        else:
            inter, gap = tight_overlap(mask_lo, lat, p.tight_t, p.lat), math.inf
        if r.type == "avoid":
            v = inter / max(1, min(lat.count, p.lat.count))
            if v > r.tolerance:
                if r.hard:
                    if ctx.blockers is not None:
                        ctx.blockers[p.info.name] += 1
                    return False, math.inf
                penalty += 10.0 * v
                if weight * penalty + offset >= bound:
                    return False, math.inf
        elif r.type == "inside":
            inner = lat if r.a == info.name else p.lat
            v = inter / max(1, inner.count)
            if v < 1.0 - r.tolerance:
                if r.hard:
                    return False, math.inf
                penalty += 10.0 * (1.0 - v)
                if weight * penalty + offset >= bound:
                    return False, math.inf
        elif r.type == "contact" and gap > r.tolerance:
            if r.hard:
                return False, math.inf
            penalty += (min(gap, 60.0) - r.tolerance) / h
            if weight * penalty + offset >= bound:
                return False, math.inf
    return True, penalty


def shape_anchor(ctx: Context, bank: ShapeBank, info: OrganSpec, params: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """The anchor (body frame, mm, unscaled) of a drawn shape, and whether it comes from the bank.

    A bank shape records where its centroid was in its own subject's body frame; for subjects
    whose frame is exact this is where THAT shape belongs (a complete pancreas' centroid lies
    several cm left of a pancreatic-head fragment's, a whole liver's above a truncated one's).
    Blended shapes take the blend of both centroids; shapes of subjects with an approximate frame
    take the graph anchor.
    """
    exact = ctx.exact
    if not exact:
        return info.anchor_mean_mm, False

    def one(shape_id: str) -> np.ndarray | None:
        rec = bank.record(shape_id)
        if not exact.get(str(rec.subject_id), False):
            return None
        return np.asarray(rec.centroid_mm, dtype=np.float64)

    a = one(params["shape_id"])
    if params.get("blend_shape_id"):
        b = one(params["blend_shape_id"])
        w = float(params["blend_weight"])
        if a is None and b is None:
            return info.anchor_mean_mm, False
        a = (1.0 - w) * (info.anchor_mean_mm if a is None else a) + w * (info.anchor_mean_mm if b is None else b)
    return (info.anchor_mean_mm, False) if a is None else (a, True)


def position_prior(ctx: Context, info: OrganSpec, parent: Placed | None, anchor: np.ndarray,
                    from_bank: bool, mean: np.ndarray, cov: np.ndarray, config: PlacementConfig
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the candidate positions of a drawn shape.

    With a placed ``attached_to`` parent: the parent's placed centroid plus the offset (the two
    shapes' own anchors carried through the parent's pose when both come from the bank, else the
    graph's offset statistics), averaged with the other placed contact partners' vote. Without:
    the contact partners' prediction, or the anchor.
    """
    h = ctx.h
    if parent is not None and info.offset_mean_mm is not None:
        if from_bank and parent.params.get("anchor_from_bank"):
            c_mean = carry(parent, anchor, h)
        else:
            c_mean = parent.centroid(h) + info.offset_mean_mm * ctx.body_scale
        c_cov = (info.offset_cov_mm if info.offset_cov_mm is not None else info.anchor_cov_mm) * ctx.body_scale ** 2
        # the other placed contact partners have a say too (the parent's offset is one vote)
        pred = neighbour_prediction(ctx, info, anchor, from_bank, exclude=parent.info.name)
        if pred is not None:
            c_mean = (c_mean + pred) / 2.0
        return c_mean, c_cov
    # follow the placed contact partners: carry the anchor offsets through their poses
    pred = neighbour_prediction(ctx, info, anchor, from_bank)
    if pred is None:
        return mean, cov
    return pred, cov * config.neighbour_spread ** 2


def neighbour_subjects(ctx: Context, info: OrganSpec, bank: ShapeBank, parent: Placed | None) -> set[str]:
    """Subjects of the shapes of the placed parent (if any, only it) or else of the placed contact partners."""
    if parent is not None:
        placed = [parent]
    else:
        partners = {r.b if r.a == info.name else r.a for r in ctx.rels
                    if r.type == "contact" and info.name in (r.a, r.b)}
        placed = [p for n, p in ctx.placed.items() if n in partners]
    return {str(bank.record(p.params["shape_id"]).subject_id) for p in placed}


def push_direction(ctx: Context, info: OrganSpec, lat: Lattice, m: np.ndarray, rels: list[Relation]) -> np.ndarray:
    """Sum of the unit vectors from the centroid of each too-large overlap (hard avoids) to the
    candidate's centroid (zero when no avoid is violated)."""
    h = ctx.h
    start = m + lat.k0
    cen = m * h + lat.centroid_off
    push = np.zeros(3)
    t_lo, t_hi = start + lat.tight_lo, start + lat.tight_hi
    start_t = tuple(int(v) for v in start)
    for r in rels:
        if r.type != "avoid":
            continue
        p = ctx.placed[r.b if r.a == info.name else r.a]
        if np.any(p.tight_lo > t_hi) or np.any(p.tight_hi < t_lo):
            continue
        reg = overlap_region(start_t, lat.sdf, p.start_t, p.lat.sdf)
        if reg is None:
            continue
        both = lat.mask[reg[0]] & p.lat.mask[reg[1]]
        idx = np.nonzero(both)
        cnt = idx[0].size
        if cnt <= r.tolerance * min(lat.count, p.lat.count):
            continue
        oc = np.array([(idx[d].mean() + start[d] + reg[0][d].start) * h for d in range(3)])
        v = cen - oc
        nv = np.linalg.norm(v)
        if nv > 1e-6:
            push += v / nv
        else:
            w = cen - p.centroid(h)
            push += w / (np.linalg.norm(w) + 1e-9)
    return push


def push_out(ctx: Context, info: OrganSpec, lat: Lattice, m: np.ndarray, rels: list[Relation],
              steps: int) -> tuple[np.ndarray, bool, float]:
    """Resolve overlaps of a rejected candidate by one search along the push-out direction.

    The direction (:func:`_push_direction`: away from the centroids of the too-large overlaps,
    for a signed distance the direction its gradient points out of the blockers) is measured
    once; the candidate is then moved along it, ``k`` lattice steps (the longest axis moves
    ``k`` voxels), with the smallest ``k <= steps`` at which every hard relation holds, found
    by doubling and then bisection (a handful of checks instead of one overlap measure and one
    check per step). If no ``k`` works, a second search starts from the farthest point with
    the direction measured there. Returns (translation, valid, penalty).
    """
    for _round in range(2):
        push = push_direction(ctx, info, lat, m, rels)
        if not push.any():
            break
        d = push / (np.abs(push).max() + 1e-12)

        def at(k: int) -> np.ndarray:
            return m + np.rint(k * d).astype(int)

        if not np.rint(steps * d).any():
            break
        ok_k, ok_pen, bad_k = None, math.inf, 0
        k = 1
        while k <= steps:  # doubling: 1, 2, 4, ... (then steps itself)
            ok, pen = check_candidate(ctx, info, lat, at(k), rels)
            if ok:
                ok_k, ok_pen = k, pen
                break
            bad_k = k
            if k == steps:
                break
            k = min(2 * k, steps)
        if ok_k is None:
            m = at(steps)
            continue
        while ok_k - bad_k > 1:  # bisection: the nearest valid k
            mid = (ok_k + bad_k) // 2
            ok, pen = check_candidate(ctx, info, lat, at(mid), rels)
            if ok:
                ok_k, ok_pen = mid, pen
            else:
                bad_k = mid
        return at(ok_k), True, ok_pen
    return m, False, math.inf


def neighbour_prediction(ctx: Context, info: OrganSpec, anchor: np.ndarray, from_bank: bool,
                          exclude: str | None = None) -> np.ndarray | None:
    """Where the placed contact partners say this organ's centroid goes.

    Each placed partner carries the anchor offset (this organ's anchor minus the partner's)
    through its own pose (rotation and scale about its centroid); the predictions are averaged.
    None when no contact partner is placed.
    """
    partners = {r.b if r.a == info.name else r.a for r in ctx.rels
                if r.type == "contact" and info.name in (r.a, r.b)}
    preds = []
    for n, p in ctx.placed.items():
        if n not in partners or n == exclude:
            continue
        if from_bank and p.params.get("anchor_from_bank"):
            preds.append(carry(p, anchor, ctx.h))
        else:  # graph anchors on both sides
            preds.append(carry(p, info.anchor_mean_mm + (p.params["anchor"] - p.info.anchor_mean_mm), ctx.h))
    if not preds:
        return None
    return np.mean(preds, axis=0)


def _toward_surface(a_start: tuple[int, ...], la: Lattice, other: Placed) -> np.ndarray | None:
    """Direction from organ ``a`` toward the nearest surface of ``other``: minus ``other``'s SDF
    gradient where the two surfaces are closest (None when their boxes do not meet)."""
    box = rel.offset_common_box(a_start, la.sdf.shape, other.start_t, other.lat.sdf.shape)
    if box is None:
        return None
    total = la.outside_sdf[box[0]] + other.lat.outside_sdf[box[1]]
    if not np.isfinite(total).any():
        return None
    i = np.unravel_index(int(np.argmin(total)), total.shape)
    sdf = other.lat.sdf
    p = [int(s.start) + int(k) for s, k in zip(box[1], i)]
    g = np.zeros(3)
    for d in range(3):
        lo, hi = list(p), list(p)
        lo[d], hi[d] = max(0, p[d] - 1), min(sdf.shape[d] - 1, p[d] + 1)
        if hi[d] > lo[d]:
            g[d] = (float(sdf[tuple(hi)]) - float(sdf[tuple(lo)])) / (hi[d] - lo[d])
    return -g if np.linalg.norm(g) > 1e-9 else None


def refine_contacts(ctx: Context, info: OrganSpec, lat: Lattice, m: np.ndarray, rels: list[Relation],
                     config: PlacementConfig) -> np.ndarray:
    """Move towards unmet contact partners one lattice step at a time while hard relations hold."""
    h = ctx.h
    contacts = [r for r in rels if r.type == "contact"]
    if not contacts or config.contact_steps == 0:
        return m
    _, pen = check_candidate(ctx, info, lat, m, rels)
    for _ in range(config.contact_steps):
        unmet = []
        start = m + lat.k0
        for r in contacts:
            other = ctx.placed[r.b if r.a == info.name else r.a]
            _, gap = pair_values(tuple(int(v) for v in start), lat, other.start_t, other.lat, need_gap=True)
            if gap > r.tolerance:
                unmet.append((other, gap))
        if not unmet:
            break
        cen = m * h + lat.centroid_off
        d = np.zeros(3)
        for other, gap in unmet:
            # toward the partner's nearest surface (its SDF gradient at the closest pair of points),
            # not its centroid: a tube beside the aorta moves across, not along, it
            v = _toward_surface(tuple(int(v) for v in start), lat, other)
            if v is None:
                v = other.centroid(h) - cen
            d += v / (np.linalg.norm(v) + 1e-9)
        if np.linalg.norm(d) < 1e-9:
            break
        d /= np.abs(d).max()
        step = np.rint(d).astype(int)
        moved = False
        # the step along the pull first, then single-axis steps in its direction (best of those)
        axis_steps = [np.eye(3, dtype=int)[a] * int(np.sign(d[a])) for a in np.argsort(-np.abs(d)) if abs(d[a]) > 0.2]
        ok, p2 = check_candidate(ctx, info, lat, m + step, rels, pen) if step.any() else (False, math.inf)
        if ok and p2 < pen:
            m, pen, moved = m + step, p2, True
        else:
            best_axis = None
            for cand in axis_steps:
                if np.array_equal(cand, step):
                    continue
                ok, p2 = check_candidate(ctx, info, lat, m + cand, rels,
                                          pen if best_axis is None else min(pen, best_axis[0]))
                if ok and p2 < pen and (best_axis is None or p2 < best_axis[0]):
                    best_axis = (p2, cand)
            if best_axis is not None:
                m, pen, moved = m + best_axis[1], best_axis[0], True
        if not moved:
            break
    return m
