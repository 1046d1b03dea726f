"""Context anatomy: coherent skeleton/body wall from the embedded context bank, output-class choice,
target organs win, determinism (bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anatomix.anatomy import AnatomyGenerator, AnatomySynthConfig
from anatomix.context import (WALL_NAMES, ContextConfig, load_context_subject, render_context,
                              sample_context)
from anatomix.grid import Grid

REPO = Path(__file__).resolve().parents[1]
GRAPH = str(REPO / "graphs" / "abdomen.yaml")
SMALL = {"graph": GRAPH, "grid": {"shape": [40, 40, 40], "spacing_mm": [4.0, 4.0, 4.0]},
         "appearance": {"distractors": [0, 1], "lesion_probability": 0.0}}


def _gen(**extra) -> AnatomyGenerator:
    import warnings

    cfg = AnatomySynthConfig.model_validate({**SMALL, **extra})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the embedded bank has no esophagus
        return AnatomyGenerator(cfg, seed=3)


def test_context_subject_has_skeleton_muscles_bowel():
    s = load_context_subject()
    for n in ("vertebrae_L3", "sacrum", "hip_left", "rib_right_11", "iliopsoas_left", "autochthon_right",
              "colon", "small_bowel", "urinary_bladder", "lung_lower_lobe_right"):
        assert n in s.names, n
    assert s.ids.dtype == np.uint8 and s.ids.max() == len(s.names)


def _rigid_params(s):
    """Context parameters of an empty scene with no elastic field and no scale jitter (seed 0)."""

    class Scene:
        body_scale = 1.0
        organs = ()

    return sample_context(Scene(), s, np.random.default_rng(0), ContextConfig(elastic_mm=(0, 0), scale_jitter=(1, 1)))


def test_render_context_anatomy_is_where_it_belongs():
    s = load_context_subject()
    p = _rigid_params(s)
    grid = Grid((90, 80, 60), (4.0, 4.0, 4.0), (-180.0, -160.0, -200.0))
    m = render_context(p, grid, s, exclude=["liver"])
    names = {n: k for k, n in m.names.items()}
    assert "liver" not in names and set(WALL_NAMES) <= set(names)
    c = {n: np.argwhere(m.gen == names[n]).mean(axis=0) * 4.0 + np.array(grid.origin_mm)
         for n in ("vertebrae_L3", "subcutaneous_fat", "iliopsoas_left", "iliopsoas_right", "autochthon_left",
                   "autochthon_right")}
    # the spine sits on the midline (the body frame's x = 0 is the kidney midpoint), the back muscles
    # behind it (a vertebra's centroid is within millimetres of the kidneys' in y: not a test of it)
    assert abs(c["vertebrae_L3"][0]) < 10.0
    assert max(c["autochthon_left"][1], c["autochthon_right"][1]) < c["vertebrae_L3"][1] - 20.0
    assert c["iliopsoas_left"][0] != pytest.approx(c["iliopsoas_right"][0], abs=5)  # one each side
    # the body wall wraps everything: skin outermost, air beyond
    assert (m.gen == names["skin"]).any() and (m.gen == 0).any()


def test_a_scene_past_the_context_subject_continues_its_last_slices_not_air():
    """The subject ends in slices with anatomy, so a grid above (or below) it repeats its last body
    slice: organs placed up there sit in the body, not in air."""
    s = load_context_subject()
    assert s.ids[:, :, 0].any() and s.ids[:, :, -1].any()  # no empty end slices
    p = _rigid_params(s)
    top = s.origin_mm[2] + (s.ids.shape[2] - 1) * s.spacing_mm  # body frame z of the last slice (no jitter)
    grid = Grid((60, 50, 8), (6.0, 6.0, 6.0), (-180.0, -150.0, top * p["scale"][2] + p["translation_mm"][2] + 12.0))
    m = render_context(p, grid, s)
    body = m.gen > 0
    assert min(body[:, :, k].mean() for k in range(8)) > 0.3  # the torso's cross-section in every slice


def _wall_scene():
    """(subject, rigid params, grid, its context map) of the body-wall wrap tests: 4 mm voxels
    over the whole torso cross-section, so the body's left and right edges are in the grid."""
    s = load_context_subject()
    p = _rigid_params(s)
    grid = Grid((90, 80, 30), (4.0, 4.0, 4.0), (-180.0, -160.0, -60.0))
    return s, p, grid, render_context(p, grid, s)

def test_an_organ_reaching_past_the_body_wall_is_wrapped_in_it():
    """A placed organ (another subject's shape) that reaches past the context body wall gets the
    wall's layers around it instead of air; organs inside the body change nothing."""
    from scipy import ndimage

    s, p, grid, plain = _wall_scene()
    body = plain.gen > 0
    x, y, z = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    # a ball centred on the body's left edge in the middle slice: half of it in air
    row = np.flatnonzero(body[:, 40, 15])
    ball = (x - row[0]) ** 2 + (y - 40) ** 2 + (z - 15) ** 2 <= 6 ** 2
    assert (ball & ~body).any()
    wrapped = render_context(p, grid, s, organs=ball).gen
    names = {n: k for k, n in plain.names.items()}
    ring = ndimage.binary_dilation(ball, iterations=2) & ~ball
    assert (plain.gen[ring] == 0).any() and not (wrapped[ring] == 0).any()  # no air around the ball
    assert set(np.unique(wrapped[ring & (plain.gen == 0)])) <= {names["abdominal_muscle"], names["subcutaneous_fat"],
                                                                  names["skin"]}
    assert np.array_equal(wrapped[plain.gen > 0], plain.gen[plain.gen > 0])  # only air is touched
    inside = ndimage.binary_erosion(body, iterations=8) & ball.any()  # organs inside: unchanged
    assert np.array_equal(render_context(p, grid, s, organs=inside).gen, plain.gen)



def test_wrapping_organs_on_both_sides_equals_one_distance_transform_over_the_volume():
    """Organs poking out on opposite sides are wrapped box by box (one per cluster); the layers
    must be those of one distance transform to every organ voxel in air over the whole grid."""
    from scipy import ndimage

    from anatomix.context import _separate_clusters, _wrap_organs

    s, p, grid, plain = _wall_scene()
    body = plain.gen > 0
    x, y, z = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    organs = np.zeros(grid.shape, dtype=bool)
    for yc, zc in ((40, 15), (30, 5), (48, 8)):  # left and right edges: separate clusters, one pair near
        row = np.flatnonzero(body[:, yc, zc])
        for xc in (row[0], row[-1]):
            organs |= (x - xc) ** 2 + (y - yc) ** 2 + (z - zc) ** 2 <= 4 ** 2
    nb = len(s.names)
    got = plain.gen.copy()
    _wrap_organs(got, organs, grid, p, nb)
    poking = organs & (plain.gen == 0)
    d = ndimage.distance_transform_edt(~poking, sampling=grid.spacing_mm)
    m1 = p["muscle_mm"]
    m2 = m1 + p["subcutaneous_fat_mm"]
    m3 = m2 + p["skin_mm"]
    want = plain.gen.copy()
    air = plain.gen == 0
    for lo, hi, k in ((0, m1, nb + 2), (m1, m2, nb + 3), (m2, m3, nb + 4)):
        want[air & (d > lo) & (d <= hi)] = k
    assert (want != plain.gen).sum() > 100
    reach = np.ceil(m3 / np.asarray(grid.spacing_mm)).astype(int) + 1
    assert len(_separate_clusters(np.argwhere(poking), 2 * reach)) >= 2  # box by box indeed
    assert got.tobytes() == want.tobytes()

def test_default_labels_context_as_background_and_targets_win():
    g = _gen()
    s = g.sample(0)
    assert set(np.unique(s.label)) <= set(g.label_names()) | {0}
    assert max(g.label_names()) <= 15
    assert s.record["context"]["params"]["scale"] and s.record["appearance"]["context"]


def test_ignore_and_all_labels():
    gi = _gen(context={"labels": "ignore", "ignore_value": 255})
    gb = _gen()
    li, lb = gi.sample(1).label, gb.sample(1).label
    assert (li == 255).any()
    assert np.array_equal(li[li != 255], lb[li != 255])  # targets identical; only background became ignore
    assert np.all(lb[li == 255] == 0)
    ga = _gen(context={"labels": "all"})
    names = ga.label_names()
    assert "vertebrae_L3" in names.values() and "subcutaneous_fat" in names.values()
    assert "liver" in names.values() and list(names.values()).count("liver") == 1
    la = ga.sample(1).label
    assert np.array_equal(la[lb > 0], lb[lb > 0])  # target organs win over context
    assert len(np.unique(la)) > len(np.unique(lb)) + 5


def test_context_off_restores_the_body_ellipse():
    g = _gen(context={"enabled": False})
    s = g.sample(0)
    assert s.record["context"] is None and "context" not in s.record["appearance"]


def test_samples_are_byte_identical_across_generators():
    a, b = _gen().sample(2), _gen().sample(2)
    assert a.image.tobytes() == b.image.tobytes() and a.label.tobytes() == b.label.tobytes()
    c = _gen().sample(3)
    assert a.image.tobytes() != c.image.tobytes()


def test_context_bank_rebuilds_byte_identical(tmp_path):
    """shapebank/default/context is `ingest-masks` of the whole-abdomen fixture (shapebank/README.md)."""
    import warnings

    from anatomix.bank import ingest_masks
    from anatomix.context import default_context_bank_path
    from anatomix.io import read_label_map
    from anatomix.labels import canonical_organ

    src = REPO / "tests" / "fixtures" / "totalsegmentator" / "example_seg_fast_force_split.nii.gz"
    v = read_label_map(src)
    present = set(np.unique(v.array).tolist())
    organs = [canonical_organ(n) for k, n in v.names.items() if k in present]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ingest_masks([src], tmp_path / "c", organs=organs)
    ref = default_context_bank_path()
    a = sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*") if p.is_file())
    b = sorted(p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert a == b
    for rel in a:
        assert (ref / rel).read_bytes() == (tmp_path / "c" / rel).read_bytes(), rel
