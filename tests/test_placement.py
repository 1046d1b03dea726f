"""Placement on the toy abdomen (a real OrganGraph and a real ShapeBank from conftest)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anatomix.config import PlacementConfig
from anatomix.placement import Scene, check_inputs, missing_organs, sample_scene

N_SCENES = 100


@pytest.fixture(scope="module")
def anatomy_scenes(anatomy_graph, anatomy_bank):
    cache: dict = {}
    return [sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(i), PlacementConfig(), cache=cache)
            for i in range(N_SCENES)]


def test_every_hard_constraint_holds_in_every_case(anatomy_scenes):
    bad = [(i, [(r.kind, r.a, r.b, r.value) for r in s.report if r.hard and not r.holds], s.failed)
           for i, s in enumerate(anatomy_scenes) if not s.hard_ok]
    assert not bad, bad[:5]
    # the report covers explicit relations and the implicit avoids between every pair
    s = anatomy_scenes[0]
    names = [o.organ for o in s.organs]
    pairs = {frozenset((r.a, r.b)) for r in s.report}
    assert all(frozenset((a, b)) in pairs for i, a in enumerate(names) for b in names[i + 1:])


def test_contacts_at_the_configured_rate(anatomy_scenes):
    contacts = [r for s in anatomy_scenes for r in s.report if r.kind == "contact"]
    assert len(contacts) >= N_SCENES
    assert np.mean([r.holds for r in contacts]) >= 0.85


def test_anchors_respected_on_average(anatomy_scenes, anatomy_graph):
    for organ in ("liver", "kidney_right"):
        cents = np.array([s.organ(organ).centroid_mm for s in anatomy_scenes])
        scales = np.array([s.body_scale for s in anatomy_scenes])
        mean = np.asarray(anatomy_graph.organ(organ).anchor_mean_mm)
        # the centroid follows the anchor scaled by the subject's body size, within a few mm
        err = (cents / scales[:, None]).mean(axis=0) - mean
        assert np.all(np.abs(err) < 6.0), (organ, err)
    # optional organ appears at about its probability (0.7)
    share = np.mean([any(o.organ == "spleen" for o in s.organs) for s in anatomy_scenes])
    assert 0.55 < share < 0.85


def test_random_placement_ablation_violates_constraints(anatomy_graph, anatomy_bank):
    cfg = PlacementConfig(mode="random")
    scenes = [sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(i), cfg) for i in range(30)]
    assert np.mean([s.hard_ok for s in scenes]) < 0.6
    contacts = [r.holds for s in scenes for r in s.report if r.kind == "contact"]
    assert np.mean(contacts) < 0.6


def test_scene_is_frozen_json_and_deterministic(anatomy_graph, anatomy_bank):
    a = sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(7))
    b = sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(7))
    assert a.model_dump_json() == b.model_dump_json()
    again = Scene.model_validate(json.loads(a.model_dump_json()))
    assert again == a
    with pytest.raises(Exception):
        a.body_scale = 2.0  # type: ignore[misc]
    # no mirroring: positive scales; rotations within the graph range (+-10 deg)
    for o in a.organs:
        assert min(o.scale) > 0 and max(abs(r) for r in o.rotation_deg) <= 10.0 + 1e-9


def test_interpolation_blends_two_subjects(anatomy_graph, anatomy_bank):
    s = sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(3),
                     PlacementConfig(interpolation_probability=1.0))
    for o in s.organs:
        assert o.blend_shape_id is not None and o.blend_shape_id != o.shape_id
        assert 0.0 <= o.blend_weight <= 1.0
        assert anatomy_bank.record(o.blend_shape_id).subject_id != anatomy_bank.record(o.shape_id).subject_id


def test_complete_shapes_preferred(anatomy_graph, anatomy_bank):
    cfg = PlacementConfig(interpolation_probability=0.0, truncated_weight=0.0)
    for i in range(10):
        s = sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(i), cfg)
        assert not anatomy_bank.record(s.organ("liver").shape_id).truncated


@pytest.fixture(scope="module")
def no_kidney_bank(tmp_path_factory, anatomy_bank):
    """The toy bank without kidney_right shapes (ingested from the same label maps)."""
    from anatomix.bank import ShapeBank, ingest_masks
    from conftest import TOY_LABELS

    out = tmp_path_factory.mktemp("no_kidney") / "bank"
    maps = sorted((anatomy_bank.root.parent / "maps").glob("*.nii.gz"))
    organs = [o for o in anatomy_bank.organs if o != "kidney_right"]
    with pytest.warns(Warning):
        ingest_masks(maps, out, labels=TOY_LABELS, spacing_mm=2.0, organs=organs)
    return ShapeBank.load(out)


def test_organ_missing_from_bank_is_left_out(anatomy_graph, anatomy_bank, no_kidney_bank):
    bank = no_kidney_bank
    assert missing_organs(anatomy_graph, bank) == ["kidney_right"]
    # not a problem by default (the organ is left out), an error with strict
    assert check_inputs(anatomy_graph, bank) == []
    strict = check_inputs(anatomy_graph, bank, strict=True)
    assert len(strict) == 1 and "kidney_right" in strict[0] and "remove it from the graph" in strict[0]
    assert check_inputs(anatomy_graph, anatomy_bank, strict=True) == []
    for i in range(10):
        s = sample_scene(anatomy_graph, bank, np.random.default_rng(i))
        assert s.not_in_bank == ("kidney_right",) and "kidney_right" not in s.dropped
        assert "kidney_right" not in [o.organ for o in s.organs] and not s.failed and s.hard_ok
        assert all("kidney_right" not in (r.a, r.b) for r in s.report)  # its relations skipped
        assert s.organ("liver")


def test_bank_without_any_graph_organ_fails(anatomy_bank):
    from anatomix.graph import OrganGraph

    graph = OrganGraph.from_dict({"organs": {"pancreas": {
        "label": 1, "anchor": {"mean_mm": [0, 0, 0], "cov_mm": np.eye(3).tolist()}, "volume_ml": [50, 100]}}})
    problems = check_inputs(graph, anatomy_bank)
    assert len(problems) == 1 and "pancreas" in problems[0] and "kidney_left" in problems[0]


def test_placement_config_rejects_unknown_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PlacementConfig(candidatez=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        PlacementConfig(body_scale=(1.2, 0.9))


def test_shape_anchors_follow_the_bank_frame(anatomy_graph, tmp_path_factory):
    """A bank whose shapes sit elsewhere than the graph learned: the shapes' own body-frame centroids
    are their anchors (anchor_source: shape), the graph's otherwise; hard constraints hold in both."""
    from conftest import build_toy_bank

    # kidneys 20 mm further apart: the kidney midpoint (body frame origin) stays, kidney_right's
    # body-frame centroid moves 20 mm to the subject's right of the graph's anchor
    bank = build_toy_bank(tmp_path_factory.mktemp("shifted"),
                          shift_mm={"kidney_right": (20.0, 0.0, 0.0), "kidney_left": (-20.0, 0.0, 0.0)})
    xs = {}
    for source in ("shape", "graph"):
        cfg = PlacementConfig(anchor_source=source)
        scenes = [sample_scene(anatomy_graph, bank, np.random.default_rng(i), cfg) for i in range(30)]
        assert all(s.hard_ok for s in scenes)
        xs[source] = np.mean([s.organ("kidney_right").centroid_mm[0] / s.body_scale for s in scenes])
    assert xs["shape"] - xs["graph"] > 10.0, xs


def test_repair_places_required_organs_in_a_crowded_scene(anatomy_graph, anatomy_bank):
    """Tight placement (few candidates and draws): lifting a blocker out and placing it again
    rescues required organs that fit nowhere; with repair off more of them fail."""
    base = dict(candidates=2, shape_attempts=1, fallback=False, push_candidates=0, position_spread=3.0)
    fails = {}
    for repair in (0, 2):
        cfg = PlacementConfig(repair=repair, **base)
        scenes = [sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(i), cfg) for i in range(40)]
        fails[repair] = sum(len(s.failed) for s in scenes)
        assert all(r.holds for s in scenes for r in s.report if r.hard)
    assert fails[2] < fails[0], fails


def test_offset_measures_equal_the_pasted_ones():
    """relations.offset_* on boxes at integer offsets == the plain measures on one common grid
    (placement and graph checking measure overlaps and gaps through them)."""
    from anatomix import relations as rel

    rng = np.random.default_rng(0)
    for _ in range(30):
        sa, sb = tuple(rng.integers(3, 9, 3)), tuple(rng.integers(3, 9, 3))
        a0, b0 = tuple(int(v) for v in rng.integers(0, 6, 3)), tuple(int(v) for v in rng.integers(0, 6, 3))
        ca, cb = rng.uniform(1, 7, 3), rng.uniform(1, 7, 3)
        ra, rb = rng.uniform(1.0, 3.5, 2)
        ia = np.stack(np.meshgrid(*[np.arange(n) for n in sa], indexing="ij"), -1) + a0
        ib = np.stack(np.meshgrid(*[np.arange(n) for n in sb], indexing="ij"), -1) + b0
        fa = (np.linalg.norm(ia - ca - 2, axis=-1) - ra).astype(np.float32)
        fb = (np.linalg.norm(ib - cb - 2, axis=-1) - rb).astype(np.float32)
        big_a = np.full((16, 16, 16), 1e3, np.float32)
        big_b = big_a.copy()
        big_a[tuple(slice(o, o + n) for o, n in zip(a0, sa))] = fa
        big_b[tuple(slice(o, o + n) for o, n in zip(b0, sb))] = fb
        want = np.count_nonzero((big_a <= 0) & (big_b <= 0))
        assert rel.offset_overlap_count(fa <= 0, a0, fb <= 0, b0) == want
        assert rel.offset_overlap_count(fa, a0, fb, b0) == want
        if (fa <= 0).any() and (fb <= 0).any():
            g = rel.offset_surface_gap_mm(fa, a0, fb, b0)
            if rel.offset_common_box(a0, sa, b0, sb) is not None:
                assert g == pytest.approx(rel.surface_gap_mm(big_a, big_b, 1.0), abs=1e-5)
            else:
                assert g == float("inf")


def test_remembered_pair_values_equal_the_measures_at_every_offset():
    """pair_values and tight_overlap remember what they measured on the candidate's lattice (the
    search comes back to the same translation often). Asked again, first without then with the
    gap, and after the partner lattice is replaced by an equal-shaped other one, they give what
    the relations module measures afresh."""
    from anatomix import relations as rel
    from anatomix.placement._lattice import lattice_of, pair_values, tight_overlap

    h = 2.0
    rng = np.random.default_rng(3)

    def ball(n: int, r: float) -> np.ndarray:
        g = np.mgrid[0:n, 0:n, 0:n].astype(np.float32) * h
        return np.sqrt(((g - (n - 1) * h / 2) ** 2).sum(axis=0)) - np.float32(r)

    la = lattice_of(ball(9, 6.0), np.zeros(3, int), h)
    partners = [lattice_of(ball(11, 7.0), np.zeros(3, int), h), lattice_of(ball(11, 9.0), np.zeros(3, int), h)]
    assert la is not None and all(p is not None for p in partners)
    starts = [tuple(int(v) for v in rng.integers(-4, 14, 3)) for _ in range(40)]
    for lb in partners:
        for rep in range(2):  # the second pass reads what the first remembered
            for a0 in starts:
                b0 = (2, 3, 1)
                inter = rel.offset_overlap_count(la.mask, a0, lb.mask, b0)
                gap = rel.offset_surface_gap_mm(la.sdf, a0, lb.sdf, b0) if not inter else 0.0
                assert pair_values(a0, la, b0, lb, need_gap=False) == (inter, 0.0 if inter else float("inf"))
                got_inter, got_gap = pair_values(a0, la, b0, lb, need_gap=True)
                assert got_inter == inter and got_gap == pytest.approx(gap, abs=1e-5)
                a_t = tuple(a + t for a, t in zip(a0, la.tight_lo_t))
                b_t = tuple(b + t for b, t in zip(b0, lb.tight_lo_t))
                assert tight_overlap(a_t, la, b_t, lb) == inter
    assert len(la.pairs) > 0
    # an entry left by a partner that is gone, under the id a new partner now has, is not read
    import weakref

    class Gone:
        pass

    lb = partners[1]
    a0, b0 = starts[0], (2, 3, 1)
    la.pairs[(a0, b0, id(lb))] = (weakref.ref(Gone()), 12345, 0.0)
    assert pair_values(a0, la, b0, lb, need_gap=True)[0] == rel.offset_overlap_count(la.mask, a0, lb.mask, b0)


def test_candidates_drawn_inside_the_hard_directions_after_a_failed_draw(anatomy_bank, monkeypatch):
    """'kidney_left left_of kidney_right by 170 mm' leaves the left kidney's prior (the bank's
    -65 mm) almost no room, as a graph learned from few subjects can: the first draw's candidates
    are all rejected, the next draws are clipped into the box where the hard directions hold, and
    the kidney is placed in every scene with every hard relation holding. Drawn unclipped (as
    before), it fails in every scene."""
    import anatomix.placement._solver as solver
    from anatomix.graph import OrganGraph
    from conftest import anatomy_graph_dict

    d = anatomy_graph_dict()
    (rel,) = [r for r in d["relations"] if r["type"] == "direction" and r["a"] == "kidney_left"]
    rel["margin_mm"] = 170.0
    graph = OrganGraph.from_dict(d, source="squeezed")
    cfg = PlacementConfig(repair=0)
    for i in range(8):
        s = sample_scene(graph, anatomy_bank, np.random.default_rng(i), cfg)
        assert "kidney_left" not in s.failed, i
        assert all(r.holds for r in s.report if r.hard), i
        assert s.organ("kidney_left").attempts > 1
        assert s.organ("kidney_left").centroid_mm[0] < s.organ("kidney_right").centroid_mm[0] - 170.0
    monkeypatch.setattr(solver, "direction_box", lambda *args: None)
    assert all("kidney_left" in sample_scene(graph, anatomy_bank, np.random.default_rng(i), cfg).failed
               for i in range(8))


def test_contact_refinement_pulls_toward_the_nearest_surface_not_the_centroid():
    """refine_contacts stepped toward an unmet partner's centroid: an esophagus beside the upper
    aorta was pulled down along it (~14 mm in fold graphs) instead of across to it. The pull now
    follows the partner's SDF gradient where the two surfaces are closest."""
    from anatomix.placement._lattice import Placed, lattice_of
    from anatomix.placement._search import _toward_surface

    h = 4.0
    g = np.mgrid[0:24, 0:12, 0:60].astype(np.float32) * h  # the box reaches past the ball (a lattice margin)
    # a vertical tube (radius 12 mm) along z, 240 mm long, centroid at z = 118 mm
    tube = np.sqrt((g[0] - 24.0) ** 2 + (g[1] - 24.0) ** 2) - 12.0
    aorta = Placed(None, lattice_of(tube, np.zeros(3, int), h), np.zeros(3, int), {})  # type: ignore[arg-type]
    # a ball of radius 8 mm, 20 mm beside the tube's surface in x, 80 mm above its centroid
    b = np.mgrid[0:8, 0:8, 0:8].astype(np.float32) * h
    ball = np.sqrt(((b - 14.0) ** 2).sum(axis=0)) - 8.0
    lat = lattice_of(ball, np.zeros(3, int), h)
    start = (int((24 + 12 + 20 + 8 - 14) / h), int((24 - 14) / h), int((198 - 14) / h))
    d = _toward_surface(start, lat, aorta)
    assert d is not None
    d = d / np.linalg.norm(d)
    assert d[0] < -0.9 and abs(d[2]) < 0.3  # across to the tube (-x), hardly along it
    to_centroid = aorta.centroid(h) - (np.array(start) * h + lat.centroid_off)
    to_centroid /= np.linalg.norm(to_centroid)
    assert to_centroid[2] < -0.8  # what the centroid rule did: mostly down the tube
    # boxes that do not meet: no surface direction (the caller falls back to the centroid)
    assert _toward_surface((100, 100, 100), lat, aorta) is None
