"""Tests for anatomix.relations: measurements on phantoms with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from anatomix import relations as rel


def _grid(shape, spacing):
    idx = np.indices(shape).astype(np.float64)
    return [idx[k] * spacing[k] for k in range(3)]


def _sphere_sdf(shape, spacing, centre_mm, radius_mm):
    x, y, z = _grid(shape, spacing)
    return (np.sqrt((x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (z - centre_mm[2]) ** 2) - radius_mm).astype(
        np.float32
    )


def _box(shape, lo, hi):
    m = np.zeros(shape, dtype=bool)
    m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return m


# ---- sizes and positions ----


def test_volume_and_centroid_of_box():
    sp = (1.0, 2.0, 3.0)
    m = _box((20, 20, 20), (2, 4, 6), (6, 8, 10))  # 4x4x4 voxels
    assert rel.volume_ml(m, sp) == pytest.approx(64 * 6 / 1000)
    c = rel.centroid_mm(m, sp, origin_mm=(10.0, 0.0, -5.0))
    assert np.allclose(c, [10 + 3.5 * 1, 5.5 * 2, -5 + 7.5 * 3])


def test_centroid_of_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        rel.centroid_mm(np.zeros((3, 3, 3), bool), 1.0)


def test_label_map_centroids_and_volumes_match_single_mask():
    lm = np.zeros((30, 20, 10), np.uint8)
    lm[2:8, 3:9, 1:4] = 3
    lm[20:25, 10:15, 5:9] = 7
    sp = (0.8, 0.8, 2.5)
    cents = rel.centroids_mm(lm, sp, origin_mm=(1, 2, 3))
    vols = rel.volumes_ml(lm, sp)
    assert set(cents) == {3, 7} and set(vols) == {3, 7}
    for v in (3, 7):
        assert np.allclose(cents[v], rel.centroid_mm(lm == v, sp, (1, 2, 3)))
        assert vols[v] == pytest.approx(rel.volume_ml(lm == v, sp))


def test_sdf_accepted_as_mask():
    sdf = _sphere_sdf((21, 21, 21), (1, 1, 1), (10, 10, 10), 5)
    assert rel.centroid_mm(sdf, 1.0) == pytest.approx([10, 10, 10])
    assert rel.volume_ml(sdf, 1.0) == pytest.approx(4 / 3 * np.pi * 125 / 1000, rel=0.05)


def test_bad_spacing():
    with pytest.raises(ValueError, match="spacing"):
        rel.volume_ml(np.ones((2, 2, 2), bool), (1, 0, 1))


# ---- overlap ----


def test_overlap_fraction_uses_smaller_volume():
    a = _box((10, 10, 10), (0, 0, 0), (10, 10, 10))
    b = _box((10, 10, 10), (0, 0, 0), (2, 2, 2))
    c = _box((10, 10, 10), (1, 0, 0), (3, 2, 2))  # half of c inside b
    assert rel.overlap_fraction(a, b) == 1.0
    assert rel.overlap_fraction(b, c) == pytest.approx(0.5)
    assert rel.overlap_fraction(b, np.zeros_like(b)) == 0.0
    assert rel.inside_fraction(b, a) == 1.0
    assert rel.inside_fraction(a, b) == pytest.approx(8 / 1000)


def test_groove_share_counts_what_lies_in_a_groove_not_on_a_surface():
    """A vessel in a 10 mm groove of a block lies in the block's closing (r = 15 mm); a box on the
    block's flat face does not, however large the contact."""
    block = np.zeros((40, 40, 40), bool)
    block[5:35, 5:35, 5:20] = True
    block[15:20, 5:35, 15:20] = False  # groove along y in the top face, 10 mm wide and deep (2 mm voxels)
    vessel = np.zeros_like(block)
    vessel[15:20, 5:35, 15:20] = True
    assert rel.groove_share(vessel, block, 2.0, 15.0) > 0.7  # less near the open ends
    # half of a taller vessel sticks out above the flat face
    vessel[15:20, 5:35, 20:25] = True
    assert rel.groove_share(vessel, block, 2.0, 15.0) == pytest.approx(0.5, abs=0.1)
    lid = np.zeros_like(block)
    lid[22:32, 10:30, 20:24] = True  # on the flat face beside the groove
    assert rel.surface_gap_mm(lid, block, 2.0) == 0.0
    assert rel.groove_share(lid, block, 2.0, 15.0) == 0.0
    assert rel.groove_share(np.zeros_like(block), block, 2.0, 15.0) == 0.0


def test_overlap_requires_common_grid():
    with pytest.raises(ValueError, match="common grid"):
        rel.overlap_fraction(np.ones((2, 2, 2), bool), np.ones((3, 2, 2), bool))


# ---- surface gap ----


@pytest.mark.parametrize("gap_vox", [0, 1, 3, 7])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_mask_gap_between_boxes_anisotropic(gap_vox, axis):
    sp = np.array([0.8, 1.5, 2.5])
    shape = (40, 40, 40)
    lo_a, hi_a = [5, 5, 5], [15, 15, 15]
    lo_b, hi_b = [5, 5, 5], [15, 15, 15]
    lo_b[axis] = 15 + gap_vox
    hi_b[axis] = 25 + gap_vox
    a, b = _box(shape, lo_a, hi_a), _box(shape, lo_b, hi_b)
    assert rel.surface_gap_mm(a, b, sp) == pytest.approx(gap_vox * sp[axis])
    assert rel.surface_gap_mm(b, a, sp) == pytest.approx(gap_vox * sp[axis])


def test_mask_gap_diagonal_corner_touch_is_zero():
    a = _box((10, 10, 10), (0, 0, 0), (3, 3, 3))
    b = _box((10, 10, 10), (3, 3, 3), (6, 6, 6))
    assert rel.surface_gap_mm(a, b, (1, 1, 1)) == 0.0
    b2 = _box((10, 10, 10), (5, 5, 3), (8, 8, 6))  # 2 voxels free along x and y
    assert rel.surface_gap_mm(a, b2, (1, 1, 1)) == pytest.approx(np.sqrt(8))


def test_mask_gap_overlap_and_empty():
    a = _box((10, 10, 10), (0, 0, 0), (5, 5, 5))
    assert rel.surface_gap_mm(a, a, 1.0) == 0.0
    assert rel.surface_gap_mm(a, np.zeros_like(a), 1.0) == float("inf")


def test_sdf_gap_between_spheres():
    sp = (1.0, 1.0, 1.0)
    shape = (60, 40, 40)
    a = _sphere_sdf(shape, sp, (15, 20, 20), 8)
    for gap in (0.0, 2.0, 5.0, 12.0):
        b = _sphere_sdf(shape, sp, (15 + 16 + gap, 20, 20), 8)
        g = rel.surface_gap_mm(a, b, sp)
        # the grid point nearest the closest-point segment is at most half a voxel diagonal away
        assert g == pytest.approx(gap, abs=0.6), gap
    b = _sphere_sdf(shape, sp, (25, 20, 20), 8)  # overlapping
    assert rel.surface_gap_mm(a, b, sp) == 0.0


def test_sdf_and_mask_gap_agree_roughly():
    sp = (1.0, 1.0, 2.0)
    shape = (60, 40, 30)
    a = _sphere_sdf(shape, sp, (15, 20, 30), 8)
    b = _sphere_sdf(shape, sp, (41, 20, 30), 8)  # 10 mm surface gap
    g_sdf = rel.surface_gap_mm(a, b, sp)
    g_mask = rel.surface_gap_mm(a <= 0, b <= 0, sp)
    assert g_sdf == pytest.approx(10.0, abs=0.6)
    assert g_mask == pytest.approx(10.0, abs=2.0)


# ---- directions ----


def test_direction_margins_follow_ras_contract():
    a = np.array([-50.0, 10.0, 100.0])  # subject's left, anterior, superior of b
    b = np.array([50.0, 0.0, 0.0])
    assert rel.direction_margin_mm(a, b, "left_of") == 100.0
    assert rel.direction_margin_mm(a, b, "right_of") == -100.0
    assert rel.direction_margin_mm(a, b, "anterior_to") == 10.0
    assert rel.direction_margin_mm(a, b, "posterior_to") == -10.0
    assert rel.direction_margin_mm(a, b, "above") == 100.0
    assert rel.direction_margin_mm(a, b, "below") == -100.0
    assert rel.direction_holds(a, b, "left_of", 99.0)
    assert not rel.direction_holds(a, b, "left_of", 100.0)  # strict, as in the contract
    for d, o in rel.OPPOSITE_DIRECTION.items():
        assert rel.direction_margin_mm(a, b, d) == -rel.direction_margin_mm(a, b, o)
        assert rel.direction_margin_mm(a, b, d) == rel.direction_margin_mm(b, a, o)


def test_unknown_direction():
    with pytest.raises(ValueError, match="left_of"):
        rel.direction_margin_mm([0, 0, 0], [0, 0, 0], "leftwards")


def test_relation_holds():
    assert rel.relation_holds("contact", 1.0, tolerance=1.5)
    assert not rel.relation_holds("contact", 2.0, tolerance=1.5)
    assert rel.relation_holds("avoid", 0.0, tolerance=0.0)
    assert not rel.relation_holds("avoid", 0.01, tolerance=0.0)
    assert rel.relation_holds("inside", 0.96, tolerance=0.05)
    assert rel.relation_holds("direction", 5.0, margin_mm=2.0)
    assert rel.relation_holds("attached_to", 0.0)
    with pytest.raises(ValueError):
        rel.relation_holds("near", 0.0)


# ---- contacts over a label map ----


@pytest.fixture
def relations_toy_abdomen():
    """Toy abdomen: 1 'liver' box, 2 touching it, 3 two voxels from 1, 4 far from all."""
    lm = np.zeros((60, 50, 40), np.uint8)
    lm[5:30, 5:30, 5:30] = 1
    lm[30:40, 10:20, 10:20] = 2  # face contact with 1
    lm[10:20, 32:40, 10:20] = 3  # y gap of 2 voxels from 1
    lm[50:58, 40:48, 30:38] = 4  # far
    lm[40:45, 20:25, 20:25] = 5  # touches 2 by a corner
    return lm


def test_contacts_toy(relations_toy_abdomen):
    lm = relations_toy_abdomen
    sp = (1.0, 1.5, 2.0)
    assert rel.contacts(lm, sp) == {frozenset({1, 2}), frozenset({2, 5})}
    assert rel.contacts(lm, sp, tolerance_mm=3.0) == {frozenset({1, 2}), frozenset({2, 5}), frozenset({1, 3})}
    gaps = rel.contact_gaps(lm, sp, max_gap_mm=3.0)
    assert gaps[frozenset({1, 3})] == pytest.approx(3.0)
    assert gaps[frozenset({1, 2})] == 0.0
    assert rel.contacts(lm, sp, labels=[1, 3], tolerance_mm=3.0) == {frozenset({1, 3})}


def test_contacts_agree_with_pairwise_gap(relations_toy_abdomen):
    lm = relations_toy_abdomen
    sp = (1.0, 1.5, 2.0)
    gaps = rel.contact_gaps(lm, sp, max_gap_mm=100.0)
    for pair, g in gaps.items():
        a, b = sorted(pair)
        assert g == pytest.approx(rel.surface_gap_mm(lm == a, lm == b, sp)), pair
    assert rel.contacts(np.zeros((4, 4, 4), np.uint8), 1.0) == set()


def test_bounding_boxes_reject_negative():
    with pytest.raises(ValueError, match="negative"):
        rel.bounding_boxes(np.full((2, 2, 2), -1))
