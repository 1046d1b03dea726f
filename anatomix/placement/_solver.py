"""Sequential placement: organs in graph order, each from its candidate search; the scene and its
constraint report (measured with :mod:`anatomix.relations`)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from anatomix import relations as rel
from anatomix.bank import ShapeBank
from anatomix.config import PlacementConfig
from anatomix.graph import OrganGraph, OrganSpec
from anatomix.placement._close import close_contacts
from anatomix.placement._draws import draw_shape, mahalanobis
from anatomix.placement._joint import complex_anchor, fuse, joint_prior, scene_complexes
from anatomix.placement._lattice import Placed, organ_lattice
from anatomix.placement._search import (
    Context,
    check_candidate,
    direction_box,
    neighbour_subjects,
    position_prior,
    push_out,
    refine_contacts,
    shape_anchor,
)
from anatomix.scene import ElasticTerm, PlacedOrgan, RelationCheck, Scene, SurfaceBulge

__all__ = ["check_inputs", "missing_organs", "sample_scene"]


def missing_organs(graph: OrganGraph, bank: ShapeBank) -> list[str]:
    """Graph organs the bank has no shape of, in placement order (they are left out of every scene)."""
    bank_organs = set(bank.organs)
    return [n for n in graph.placement_order() if n not in bank_organs or not bank.shapes(n)]


def check_inputs(graph: OrganGraph, bank: ShapeBank, strict: bool = False) -> list[str]:
    """Problems that make the (graph, bank) pair unusable, all at once (empty list: fine).

    The graph validated itself when it was built (anchors, covariances, labels); what is left
    is whether the bank can supply its organs. A graph organ without shapes in the bank is not
    a problem (it is left out of every scene, see :func:`missing_organs`) unless ``strict``; a
    bank holding none of the graph's organs is.
    """
    problems: list[str] = []
    organs = graph.placement_order()
    bank_organs = set(bank.organs)
    missing = set(missing_organs(graph, bank))
    if organs and missing >= set(organs):
        problems.append(f"the bank has no shape of any of the graph's {len(organs)} organs "
                        f"(graph: {', '.join(organs)}; bank: {', '.join(sorted(bank_organs)) or 'none'}); "
                        f"use a bank made from label maps of these organs, or a graph of the bank's organs")
    elif strict:
        for name in organs:
            if name in missing:
                problems.append(f"organ {name!r}: the bank has no shape of it (bank organs: "
                                f"{', '.join(sorted(bank_organs)) or 'none'}); add its shapes to the bank "
                                f"or remove it from the graph")
    return problems


def place_organ(ctx: Context, info: OrganSpec, bank: ShapeBank, rng: np.random.Generator,
                 config: PlacementConfig, cache: dict[str, Any] | None) -> Placed | None:
    h = ctx.h
    rels = [r for r in ctx.rels if (r.a == info.name and r.b in ctx.placed)
            or (r.b == info.name and r.a in ctx.placed)]
    cov = info.anchor_cov_mm * ctx.body_scale ** 2
    parent = ctx.placed.get(info.parent) if info.parent else None
    attempts = config.shape_attempts + (1 if config.fallback else 0)
    for attempt in range(1, attempts + 1):
        last = config.fallback and attempt == attempts
        # the fallback draw: the bank shape as it is (no rotation, scaling or deformation),
        # 4x the candidates, every rejected candidate pushed out of its overlaps
        shrink = 0.0 if last else 1.0 / attempt
        n_cand = config.candidates * (4 if last else 1)
        params, fld = draw_shape(bank, info, ctx.body_scale, rng, config, cache, shrink=shrink,
                                  prefer=neighbour_subjects(ctx, info, bank, parent))
        anchor, from_bank = shape_anchor(ctx, bank, info, params)
        params["anchor"], params["anchor_from_bank"] = anchor, from_bank
        mean = anchor * ctx.body_scale
        a_cov = cov
        c_mean, c_cov = position_prior(ctx, info, parent, anchor, from_bank, mean, cov, config)
        geo = ctx.complexes.get(info.name) if ctx.complexes else None
        if geo is not None and geo.spec.root in ctx.placed:
            # a complex member follows its placed root with one bank subject's relative geometry
            mean, a_cov = complex_anchor(geo, info.name, ctx.placed[geo.spec.root].centroid(h), ctx.body_scale,
                                         config.joint_min_std_mm, rng=rng)
            c_mean, c_cov = mean, a_cov
        elif ctx.anatomy is not None:
            joint = joint_prior(ctx.anatomy, ctx.placed, info, h, bank, params, anchor, from_bank,
                                ctx.body_scale, config.joint_min_std_mm)
            if joint is not None:
                # the anchor term and, without placed partners, the candidates follow the joint
                # model's conditional; with partners their prediction is fused with it
                no_partner = c_mean is mean
                mean, a_cov = joint
                c_mean, c_cov = joint if no_partner else fuse(c_mean, c_cov, *joint)
        spread = config.position_spread if attempt == 1 else config.retry_position_spread
        chol = np.linalg.cholesky(c_cov * spread ** 2 + 1e-6 * np.eye(3))
        lat = organ_lattice(fld, h, config.lattice_margin_mm)
        z = rng.normal(size=(n_cand, 3))
        if lat is None:
            continue
        best: tuple[float, np.ndarray] | None = None
        rejected: list[np.ndarray] = []
        # after a draw without a valid candidate, candidates are drawn inside the box where the hard
        # direction relations hold (with few subjects behind a learned graph, the placed organs can
        # leave the prior almost no room; drawn outside it, every candidate is rejected)
        box = direction_box(ctx, info, rels) if attempt > 1 else None
        for k in range(n_cand):
            target = c_mean + chol @ z[k] if k > 0 else c_mean + chol @ z[k] * 0.5
            if box is not None:
                target = np.clip(target, *box)
            m = np.rint((target - lat.centroid_off) / h).astype(int)
            cen = m * h + lat.centroid_off
            if best is not None:
                # with a valid best, a candidate that cannot beat it is dropped early (exact: its
                # score is at least its anchor term plus the penalty so far)
                memo: list[float] = []

                def anchor_term(cen: np.ndarray = cen, memo: list[float] = memo, mean: np.ndarray = mean,
                                a_cov: np.ndarray = a_cov) -> float:
                    memo.append(config.anchor_weight * mahalanobis(cen, mean, a_cov) ** 2 / 3.0)
                    return memo[0]

                ok, pen = check_candidate(ctx, info, lat, m, rels, best[0], config.contact_weight, anchor_term)
                if not ok:
                    continue
                a_term = memo[0]
            else:
                ok, pen = check_candidate(ctx, info, lat, m, rels)
                if not ok:
                    rejected.append(m)
                    continue
                a_term = config.anchor_weight * mahalanobis(cen, mean, a_cov) ** 2 / 3.0
            score = config.contact_weight * pen + a_term
            if best is None or score < best[0]:
                best = (score, m)
        if best is None:
            # no candidate valid as drawn: push the first few rejected ones out of their overlaps
            n_valid = 0
            for m in rejected[: (len(rejected) if last else config.push_candidates)]:
                if n_valid >= config.push_keep:
                    break
                m, ok, pen = push_out(ctx, info, lat, m, rels, config.push_steps * (2 if last else 1))
                if not ok:
                    continue
                n_valid += 1
                cen = m * h + lat.centroid_off
                score = config.contact_weight * pen + config.anchor_weight * mahalanobis(cen, mean, a_cov) ** 2 / 3.0
                if best is None or score < best[0]:
                    best = (score, m)
        if best is None:
            continue
        m = refine_contacts(ctx, info, lat, best[1], rels, config)
        return Placed(info, lat, m, dict(params, attempts=attempt))
    return None


def repair(ctx: Context, info: OrganSpec, organs: dict[str, OrganSpec], bank: ShapeBank, rng: np.random.Generator,
            config: PlacementConfig, cache: dict[str, Any] | None) -> Placed | None:
    """Place an organ no candidate fits by moving one blocker out of the way.

    The placed organs that rejected the most candidates (hard relations) are, one at a time, lifted
    out of the scene; the organ is placed, then the blocker is placed again among everything
    (all its relations checked anew). If either fails, the scene is restored as it was.
    """
    assert ctx.blockers is not None
    tried = 0
    for name, _count in ctx.blockers.most_common():
        if tried >= config.repair:
            break
        if name not in ctx.placed:
            continue
        tried += 1
        saved = ctx.placed.pop(name)
        ctx.blockers = Counter()
        placed = place_organ(ctx, info, bank, rng, config, cache)
        if placed is not None:
            ctx.placed[info.name] = placed
            again = place_organ(ctx, organs[name], bank, rng, config, cache)
            del ctx.placed[info.name]
            if again is not None:
                ctx.placed[name] = again
                return placed
        ctx.placed[name] = saved
    return None


def measure_report(ctx: Context) -> list[RelationCheck]:
    """Every relation between the placed organs, measured on the lattice with :mod:`anatomix.relations`."""
    h = ctx.h
    out: list[RelationCheck] = []
    for r in ctx.rels:
        if r.a not in ctx.placed or r.b not in ctx.placed:
            continue
        pa, pb = ctx.placed[r.a], ctx.placed[r.b]
        if r.type == "direction":
            v = rel.direction_margin_mm(pa.centroid(h), pb.centroid(h), r.direction or "")
        else:
            v = rel.offset_relation_value(r.type, pa.lat.sdf, pa.start_t, pb.lat.sdf, pb.start_t,
                                          masks=(pa.lat.mask, pb.lat.mask), counts=(pa.lat.count, pb.lat.count))
        holds = rel.relation_holds(r.type, v, r.tolerance, r.margin_mm)
        out.append(RelationCheck(kind=r.type, a=r.a, b=r.b, hard=r.hard, implicit=r.implicit,
                                 value=None if not math.isfinite(v) else round(float(v), 4),
                                 tolerance=r.tolerance, direction=r.direction, margin_mm=r.margin_mm,
                                 holds=bool(holds)))
    return out


def sample_scene(graph: OrganGraph, bank: ShapeBank, rng: np.random.Generator, config: PlacementConfig | None = None,
                 cache: dict[str, Any] | None = None) -> Scene:
    """Sample a Scene (pure parameters + constraint report) from an organ graph and a shape bank.

    Args:
        graph: an ``OrganGraph`` (contract API: ``placement_order()``, ``organ(name)``,
            ``relations()``, ``parent(name)``).
        bank: a ``ShapeBank`` (``shapes(organ)``, ``record(id)``, ``sdf(id)``, ``spacing_mm``).
        rng: numpy Generator (the only source of randomness).
        config: placement settings.
        cache: optional dict of bank crops as torch tensors, reused across scenes.

    Returns:
        A frozen :class:`Scene`.
    """
    config = config or PlacementConfig()
    organs = {name: graph.organ(name) for name in graph.placement_order()}
    h = config.score_spacing_mm
    body_scale = float(rng.uniform(*config.body_scale))
    missing = set(missing_organs(graph, bank))
    # graph organs without bank shapes are left out, with their relations (the caller warns once)
    present = [n for n, info in organs.items()
               if (info.required or rng.random() < info.probability) and n not in missing]
    dropped = [n for n in organs if n not in present and n not in missing]
    # every relation among the organs present, implicit avoids included: the graph owns the rules
    placed_set = set(present)
    rels = [r for r in graph.relations() if r.type != "attached_to" and r.a in placed_set and r.b in placed_set]
    ctx = Context(h=h, placed={}, rels=rels, body_scale=body_scale,
                   exact=bank.frame_exact if config.anchor_source == "shape" else None)
    if config.joint_model and graph.anatomy_model is not None and config.mode != "random":
        ctx.anatomy = graph.anatomy_model.scaled(body_scale)
    if config.complexes and config.mode != "random":
        ctx.complexes = scene_complexes(bank, present, rng=rng)
    failed: list[str] = []
    random_mode = config.mode == "random"
    if random_mode:
        means = np.array([organs[n].anchor_mean_mm for n in present]) * body_scale
        stds = np.array([np.sqrt(np.diag(organs[n].anchor_cov_mm)) for n in present]) * body_scale
        box_lo = (means - 2 * stds).min(axis=0) if len(present) else np.zeros(3)
        box_hi = (means + 2 * stds).max(axis=0) if len(present) else np.zeros(3)
    for name in present:
        info = organs[name]
        if random_mode:
            params, fld = draw_shape(bank, info, body_scale, rng, config, cache, random_rotation=True)
            params["anchor"], params["anchor_from_bank"] = info.anchor_mean_mm, False
            lat = organ_lattice(fld, h, config.lattice_margin_mm)
            target = rng.uniform(box_lo, box_hi)
            if lat is None:
                failed.append(name)
                continue
            m = np.rint((target - lat.centroid_off) / h).astype(int)
            ctx.placed[name] = Placed(info, lat, m, dict(params, attempts=1))
            continue
        ctx.blockers = Counter()
        placed = place_organ(ctx, info, bank, rng, config, cache)
        if placed is None and config.repair > 0 and info.required:
            placed = repair(ctx, info, organs, bank, rng, config, cache)
        ctx.blockers = None
        if placed is None:
            (failed if info.required else dropped).append(name)
            continue
        ctx.placed[name] = placed
    # report only among organs actually placed
    ctx.rels = [r for r in rels if r.a in ctx.placed and r.b in ctx.placed]
    if config.contact_closing and not random_mode:
        close_contacts(ctx, config)
    report = measure_report(ctx)
    organs_out = []
    for name, p in ctx.placed.items():
        lat = p.lat
        t = p.m * h
        tight_lo = (p.start + lat.tight_lo) * h - h
        tight_hi = (p.start + lat.tight_hi) * h + h
        cen = p.centroid(h)
        organs_out.append(PlacedOrgan(
            organ=name, label=p.info.label, priority=float(p.info.priority),
            shape_id=p.params["shape_id"], blend_shape_id=p.params["blend_shape_id"],
            blend_weight=round(p.params["blend_weight"], 6) if p.params["blend_shape_id"] else 0.0,
            scale=p.params["scale"], rotation_deg=p.params["rotation_deg"],
            translation_mm=tuple(float(v) for v in t),
            elastic=tuple(ElasticTerm(**e) for e in p.params["elastic"]),
            bulges=tuple(SurfaceBulge(offset_mm=o, radius_mm=r, depth_mm=d) for o, r, d in p.params.get("bulges", ())),
            centroid_mm=tuple(float(v) for v in cen),
            volume_ml=float(lat.count * h ** 3 / 1000.0),
            organ_min_mm=tuple(float(v) for v in tight_lo), organ_max_mm=tuple(float(v) for v in tight_hi),
            attempts=int(p.params["attempts"]),
            anchor_distance=round(mahalanobis(cen, p.info.anchor_mean_mm * body_scale,
                                              p.info.anchor_cov_mm * body_scale ** 2), 4),
        ))
    if organs_out:
        bmin = np.min([o.organ_min_mm for o in organs_out], axis=0)
        bmax = np.max([o.organ_max_mm for o in organs_out], axis=0)
    else:
        bmin = bmax = np.zeros(3)
    return Scene(placement=config.mode, body_scale=body_scale, score_spacing_mm=h, organs=tuple(organs_out),
                 dropped=tuple(dropped), failed=tuple(failed),
                 not_in_bank=tuple(n for n in organs if n in missing), report=tuple(report),
                 box_min_mm=tuple(float(v) for v in bmin), box_max_mm=tuple(float(v) for v in bmax))
