"""Contact closing (placement ``_close``): surface bulges in SDF space close open contacts, hollow
organs yield more than solid ones, and no closing breaks an avoid (toy bank and graph)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anatomix.config import PlacementConfig
from anatomix.graph import OrganGraph
from anatomix.placement import sample_scene
from anatomix.placement._close import close_contact
from anatomix.placement._lattice import Placed, organ_lattice, pair_values
from anatomix.placement._search import Context
from anatomix.render import render_scene, scene_grid
from anatomix.scene import Scene
from anatomix.shape_field import organ_field

from conftest import anatomy_graph_dict  # noqa: I001  (the shared toy graph of tests/conftest.py)

H = 2.0  # lattice spacing of these tests, mm


def _graph(**organ_fields: dict) -> OrganGraph:
    d = anatomy_graph_dict()
    for organ, fields in organ_fields.items():
        d["organs"][organ].update(fields)
    return OrganGraph.from_dict(d, source="toy")


def _placed(graph: OrganGraph, bank, organ: str, m: np.ndarray) -> Placed:
    sid = str(bank.shapes(organ)[0].shape_id)
    params = {"shape_id": sid, "blend_shape_id": None, "blend_weight": 0.0, "scale": (1.0, 1.0, 1.0),
              "rotation_deg": (0.0, 0.0, 0.0), "elastic": []}
    fld = organ_field(bank, sid, None, 0.0, (1, 1, 1), (0, 0, 0), (0, 0, 0), [])
    lat = organ_lattice(fld, H, 9.0)
    assert lat is not None
    return Placed(graph.organ(organ), lat, np.asarray(m, dtype=int), params)


def _gap(ctx: Context, a: str, b: str) -> float:
    pa, pb = ctx.placed[a], ctx.placed[b]
    return pair_values(pa.start_t, pa.lat, pb.start_t, pb.lat, need_gap=True)[1]


def _pair_with_gap(graph: OrganGraph, bank, moving: str, fixed: str, lo: float, hi: float) -> Context:
    """``fixed`` at the origin, ``moving`` slid from its own centroid towards ``fixed`` until the
    surface gap is in [lo, hi] mm."""
    rels = [r for r in graph.relations() if {r.a, r.b} == {moving, fixed}]
    pf = _placed(graph, bank, fixed, np.zeros(3))
    direction = pf.centroid(H) - _placed(graph, bank, moving, np.zeros(3)).centroid(H)
    direction /= np.linalg.norm(direction)
    for k in range(200, -200, -1):
        pm = _placed(graph, bank, moving, np.rint(-direction * k).astype(int))
        ctx = Context(h=H, placed={fixed: pf, moving: pm}, rels=rels, body_scale=1.0)
        if lo <= _gap(ctx, moving, fixed) <= hi:
            return ctx
    raise AssertionError(f"no lattice position puts {moving} {lo}-{hi} mm from {fixed}")


def _contact(graph: OrganGraph, a: str, b: str):
    return next(r for r in graph.relations() if r.type == "contact" and {r.a, r.b} == {a, b})


def test_a_bulge_lowers_the_sdf_by_its_depth_at_its_centre_and_nowhere_far(anatomy_bank) -> None:
    sid = str(anatomy_bank.shapes("kidney_right")[0].shape_id)
    plain = organ_field(anatomy_bank, sid, None, 0.0, (1, 1, 1), (0, 0, 0), (0, 0, 0), [])
    bulged = organ_field(anatomy_bank, sid, None, 0.0, (1, 1, 1), (0, 0, 0), (0, 0, 0), [],
                         bulges=[((30.0, 0.0, 0.0), 8.0, 5.0)])
    start, step, n = np.array([-60.0, -40.0, -60.0]), np.full(3, 2.0), np.array([61, 41, 61])
    d = (plain.eval_box(start, step, n) - bulged.eval_box(start, step, n)).numpy()
    centre = tuple(int(v) for v in (np.array([30.0, 0.0, 0.0]) - start) / step)
    assert d[centre] == pytest.approx(5.0, abs=1e-4)
    assert d.min() >= 0.0  # a bulge only grows the organ
    g = np.meshgrid(*[start[k] + step[k] * np.arange(n[k]) for k in range(3)], indexing="ij")
    far = ((g[0] - 30.0) ** 2 + g[1] ** 2 + g[2] ** 2) > (4 * 8.0) ** 2
    assert d[far].max() < 5.0 * math.exp(-8.0) + 1e-6
    # the box that holds the organ grows by the depth
    assert np.all(bulged.offset_box()[1] >= plain.offset_box()[1] + 5.0 - 1e-9)


def test_closing_closes_the_gap_and_the_hollow_organ_yields_most(anatomy_bank) -> None:
    graph = _graph()
    assert graph.organ("gallbladder").max_bulge_mm > graph.organ("liver").max_bulge_mm  # hollow vs solid
    ctx = _pair_with_gap(graph, anatomy_bank, "gallbladder", "liver", 4.5, 7.0)
    r = _contact(graph, "gallbladder", "liver")
    before = _gap(ctx, "gallbladder", "liver")
    assert before > r.tolerance
    assert close_contact(ctx, r, PlacementConfig())
    assert _gap(ctx, "gallbladder", "liver") <= r.tolerance
    gb, lv = ctx.placed["gallbladder"].params["bulges"], ctx.placed["liver"].params.get("bulges", [])
    depth_gb = sum(d for _, _, d in gb)
    depth_lv = sum(d for _, _, d in lv)
    assert depth_gb > 2 * depth_lv
    # the contact pair's own overlap limit holds (its implicit avoid at max_overlap)
    pa, pb = ctx.placed["gallbladder"], ctx.placed["liver"]
    inter, _ = pair_values(pa.start_t, pa.lat, pb.start_t, pb.lat, need_gap=False)
    assert inter / min(pa.lat.count, pb.lat.count) <= r.max_overlap + 1e-9


def test_closing_is_refused_when_an_organ_may_not_yield(anatomy_bank) -> None:
    graph = _graph(gallbladder={"max_bulge_mm": 0.0}, liver={"max_bulge_mm": 0.0})
    ctx = _pair_with_gap(graph, anatomy_bank, "gallbladder", "liver", 4.5, 7.0)
    saved = dict(ctx.placed)
    assert not close_contact(ctx, _contact(graph, "gallbladder", "liver"), PlacementConfig())
    assert ctx.placed == saved


def test_closing_is_refused_when_it_would_break_a_hard_relation(anatomy_bank) -> None:
    """A hard relation at its limit that the bulge would break: the closing is refused and the
    scene is left exactly as it was (the same code path keeps every avoid)."""
    graph = _graph()
    ctx = _pair_with_gap(graph, anatomy_bank, "gallbladder", "liver", 4.5, 7.0)
    r = _contact(graph, "gallbladder", "liver")
    probe = Context(h=H, placed=dict(ctx.placed), rels=list(ctx.rels), body_scale=1.0)
    assert close_contact(probe, r, PlacementConfig())
    cg0, cl0 = ctx.placed["gallbladder"].centroid(H), ctx.placed["liver"].centroid(H)
    cg1, cl1 = probe.placed["gallbladder"].centroid(H), probe.placed["liver"].centroid(H)
    # the bulges move the centroids towards each other along some axis: a hard direction
    # relation on that axis, exactly at today's margin, fails after the closing
    axis = int(np.argmax(np.abs((cg1 - cl1) - (cg0 - cl0))))
    assert abs((cg1 - cl1)[axis] - (cg0 - cl0)[axis]) > 1e-3
    name, sign = [("right_of", 1), ("anterior_to", 1), ("above", 1)][axis]
    if (cg0 - cl0)[axis] < 0:
        name = {"right_of": "left_of", "anterior_to": "posterior_to", "above": "below"}[name]
        sign = -1
    assert sign * (cg1 - cl1)[axis] < sign * (cg0 - cl0)[axis]  # the margin shrinks
    d = anatomy_graph_dict()
    d["relations"].append({"type": "direction", "a": "gallbladder", "b": "liver", "direction": name,
                           "margin_mm": float(sign * (cg0 - cl0)[axis]) - 1e-6, "hard": True})
    strict = OrganGraph.from_dict(d, source="toy+direction")
    rels = [x for x in strict.relations() if {x.a, x.b} == {"gallbladder", "liver"}]
    ctx.rels = rels
    saved = dict(ctx.placed)
    assert not close_contact(ctx, _contact(strict, "gallbladder", "liver"), PlacementConfig())
    assert ctx.placed == saved


def test_scenes_close_more_contacts_and_bulges_render_and_replay(anatomy_bank, anatomy_graph) -> None:
    met = {}
    scenes = {}
    for closing in (False, True):
        cfg = PlacementConfig(contact_closing=closing, contact_steps=0, score_spacing_mm=3.0)
        scenes[closing] = [sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng([7, i]), cfg, cache={})
                           for i in range(6)]
        met[closing] = sum(c.holds for s in scenes[closing] for c in s.report if c.kind == "contact")
        assert all(s.hard_ok for s in scenes[closing])
    assert met[True] >= met[False]
    bulged = [s for s in scenes[True] if any(o.bulges for o in s.organs)]
    assert bulged, "no scene needed a bulge: the test does not exercise closing"
    scene = bulged[0]
    again = Scene.model_validate_json(scene.model_dump_json())
    grid = scene_grid(scene, (3.0, 3.0, 3.0))
    a = render_scene(scene, anatomy_bank, grid).label
    b = render_scene(again, anatomy_bank, grid).label
    assert a.tobytes() == b.tobytes()
    # and the bulge is rendered: without it the organ has fewer voxels
    organ = next(o for o in scene.organs if o.bulges)
    plain = scene.model_copy(update={"organs": tuple(o.model_copy(update={"bulges": ()}) if o is organ else o
                                                      for o in scene.organs)})
    c = render_scene(plain, anatomy_bank, grid).label
    assert (a == organ.label).sum() > (c == organ.label).sum()
