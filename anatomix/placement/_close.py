"""Contact closing: after every organ is placed, a contact still open is closed by bulging the two
surfaces towards each other in SDF space, where no hard relation breaks.

Real neighbours touch because soft tissue yields: the stomach wall moulds around the spleen, the
duodenum around the pancreatic head. A rigid shape from another subject, placed next to this
subject's organs, often stops a few millimetres short. Translation (``_search.refine_contacts``)
closes what a shift can; what is left is a local deformation: each organ's SDF is lowered by a
smooth Gaussian bump centred on its surface point nearest the partner,

    sdf'(x) = sdf(x) - depth * exp(-|x - c|^2 / (2 r^2)),

which moves the surface outward by ``depth`` at ``c`` and leaves it unchanged a few ``r`` away.
The gap is split between the two organs in proportion to how far each may bulge (the graph's
``max_bulge_mm``: hollow viscera yield most), so a stomach meets a spleen mostly by its own wall.
A closing is kept only if every hard relation of both organs still holds (avoids: no overlap
beyond tolerance, including the contact pair's own ``max_overlap``) and their soft penalty does
not grow; otherwise the organs stay as they were. Deterministic: it draws no random numbers.
"""

from __future__ import annotations

import math
import numpy as np

from anatomix import relations as rel
from anatomix.config import PlacementConfig
from anatomix.graph import Relation
from anatomix.placement._lattice import Placed, lattice_of, pair_values
from anatomix.placement._search import Context, check_candidate
from anatomix.shape_field import bulge_bump

__all__ = ["close_contacts"]

Bulge = tuple[tuple[float, float, float], float, float]  # (centre offset from translation, radius, depth), mm


def _unit_gradient(sdf: np.ndarray, i: tuple[int, ...]) -> np.ndarray | None:
    """Unit gradient of a lattice SDF at index ``i`` (central differences, one-sided at the border)."""
    g = np.zeros(3)
    for d in range(3):
        lo, hi = list(i), list(i)
        lo[d] = max(0, i[d] - 1)
        hi[d] = min(sdf.shape[d] - 1, i[d] + 1)
        if hi[d] == lo[d]:
            continue
        g[d] = (float(sdf[tuple(hi)]) - float(sdf[tuple(lo)])) / (hi[d] - lo[d])
    n = float(np.linalg.norm(g))
    return g / n if n > 1e-6 else None


def _bulge(depth_needed: float, radius_min: float) -> tuple[float, float]:
    """(radius, depth) of a Gaussian bump whose surface reaches ``depth_needed`` along the normal.

    At distance ``t`` along the normal the unbumped SDF is about ``t``; the bump lowers it by
    ``depth * exp(-t^2 / (2 r^2))``, so reaching ``t = depth_needed`` (+ 0.5 mm, to touch, not
    stop short) takes ``depth = (t + 0.5) * exp(t^2 / (2 r^2))``.
    """
    radius = max(radius_min, 1.5 * depth_needed)
    t = depth_needed + 0.5
    return radius, t * math.exp(depth_needed ** 2 / (2.0 * radius ** 2))


def plan_closing(pa: Placed, pb: Placed, gap: float, tolerance: float, h: float, radius_min: float,
                 used: tuple[float, float] = (0.0, 0.0), limit: float = math.inf
                 ) -> list[tuple[Placed, Bulge, float]] | None:
    """The bulges (organ, bulge, how far it moves the surface; one per organ that yields) closing
    the contact of ``pa`` and ``pb``, or None.

    The meeting region is the lattice point between the surfaces where ``sdf_a + sdf_b`` is least
    (that sum is the measured gap); each organ's bulge is centred at its surface point nearest it
    (the point minus its SDF along its gradient). The closing aims at a quarter of the tolerance.
    ``used``: how far earlier rounds of this closing moved each surface (counted against its cap);
    ``limit``: the most any one closing moves a surface (the lattice margin keeps it in the box).
    """
    need = gap - 0.25 * tolerance
    cap_a = max(0.0, min(pa.info.max_bulge_mm, limit) - used[0])
    cap_b = max(0.0, min(pb.info.max_bulge_mm, limit) - used[1])
    if need <= 0 or cap_a + cap_b <= 0 or need > cap_a + cap_b:
        return None
    box = rel.offset_common_box(pa.start_t, pa.lat.sdf.shape, pb.start_t, pb.lat.sdf.shape)
    if box is None:
        return None
    sa, sb = box
    va, vb = pa.lat.sdf[sa], pb.lat.sdf[sb]
    total = np.where((va > 0) & (vb > 0), va + vb, np.inf)
    k = np.unravel_index(int(np.argmin(total)), total.shape)
    if not math.isfinite(float(total[k])):
        return None
    # share by yield (need <= cap_a + cap_b, so each share is within its organ's cap)
    d_b = need - need * cap_a / (cap_a + cap_b)
    d_a = need - d_b
    out: list[tuple[Placed, Bulge, float]] = []
    for p, s, depth_needed in ((pa, sa, d_a), (pb, sb, d_b)):
        if depth_needed <= 0.05:
            continue
        i = tuple(int(s[d].start + k[d]) for d in range(3))
        normal = _unit_gradient(p.lat.sdf, i)
        if normal is None:
            return None
        point = (np.asarray(i) + p.lat.k0) * h - float(p.lat.sdf[i]) * normal  # offset from translation
        radius, depth = _bulge(depth_needed, radius_min)
        out.append((p, ((float(point[0]), float(point[1]), float(point[2])), radius, depth), depth_needed))
    return out


def with_bulge(p: Placed, bulge: Bulge, h: float) -> Placed | None:
    """``p`` with one more bulge, applied to its lattice SDF directly (the bump is additive).

    The lattice box keeps every point within ``lattice_margin_mm`` of the surface, and a bulge
    moves the surface by at most the organ's ``max_bulge_mm`` (below that margin), so the grown
    organ stays inside the box (closing caps a bulge below that margin); rendering evaluates the
    same bump on its own grid.
    """
    offset, radius, depth = bulge
    bump = bulge_bump(offset, radius, depth, p.lat.k0 * h, h, p.lat.sdf.shape).numpy()
    lat = lattice_of((p.lat.sdf - bump).astype(np.float32), p.lat.k0, h)
    if lat is None:
        return None
    return Placed(p.info, lat, p.m, dict(p.params, bulges=[*p.params.get("bulges", ()), bulge]))


def _organ_check(ctx: Context, name: str) -> tuple[bool, float]:
    """(hard relations hold, soft penalty) of the placed organ ``name`` against every other one."""
    p = ctx.placed.pop(name)
    try:
        rels = [r for r in ctx.rels if name in (r.a, r.b)]
        ctx.prepared = None
        return check_candidate(ctx, p.info, p.lat, p.m, rels)
    finally:
        ctx.placed[name] = p
        ctx.prepared = None


def close_contact(ctx: Context, r: Relation, config: PlacementConfig, rounds: int = 3) -> bool:
    """Close one open contact in place (True) or leave the scene as it was (False).

    A bulge on a curved surface closes a little less than planned, so up to ``rounds`` plans are
    stacked while the gap keeps shrinking; the result is judged once, against the scene before.
    """
    h = ctx.h
    pa, pb = ctx.placed[r.a], ctx.placed[r.b]
    _, gap = pair_values(pa.start_t, pa.lat, pb.start_t, pb.lat, need_gap=True)
    if gap <= r.tolerance:
        return False
    old = {r.a: pa, r.b: pb}
    before = [_organ_check(ctx, n) for n in (r.a, r.b)]
    used = {r.a: 0.0, r.b: 0.0}
    for _ in range(rounds):
        plan = plan_closing(ctx.placed[r.a], ctx.placed[r.b], gap, r.tolerance, h, config.bulge_radius_mm,
                            used=(used[r.a], used[r.b]), limit=config.lattice_margin_mm - h / 2)
        if not plan:
            break
        bulged = [with_bulge(p, bulge, h) for p, bulge, _ in plan]
        if any(q is None for q in bulged):
            break
        for p, _, moved in plan:
            used[p.info.name] += moved
        ctx.placed.update({q.info.name: q for q in bulged if q is not None})
        qa, qb = ctx.placed[r.a], ctx.placed[r.b]
        _, gap2 = pair_values(qa.start_t, qa.lat, qb.start_t, qb.lat, need_gap=True)
        if gap2 <= r.tolerance:
            after = [_organ_check(ctx, n) for n in (r.a, r.b)]
            if all(ok for ok, _ in after) and sum(p for _, p in after) <= sum(p for _, p in before) + 1e-9:
                return True
            break
        if gap2 >= gap - 0.1:  # no longer shrinking
            break
        gap = gap2
    ctx.placed.update(old)
    return False


def close_contacts(ctx: Context, config: PlacementConfig) -> int:
    """Close every open contact between placed organs that a bulge can close; returns how many."""
    closed = 0
    for r in ctx.rels:
        if r.type == "contact" and r.a in ctx.placed and r.b in ctx.placed:
            closed += close_contact(ctx, r, config)
    return closed
