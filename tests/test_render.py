"""Rendering a Scene on grids."""

from __future__ import annotations

import numpy as np
import pytest

from anatomix.placement import sample_scene
from anatomix.render import Grid, label_precedence, render_scene, scene_grid
from anatomix.shape_field import rotation_matrix


def test_volumes_consistent_across_spacings(anatomy_graph, anatomy_bank):
    scene = sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(1))
    vols = []
    for sp in ((1.5, 1.5, 2.0), (3.0, 3.0, 3.0)):
        r = render_scene(scene, anatomy_bank, scene_grid(scene, sp))
        vox = float(np.prod(sp)) / 1000.0
        vols.append({o: float((r.label == v).sum()) * vox for o, v in r.labels.items()})
    for organ in vols[0]:
        a, b = vols[0][organ], vols[1][organ]
        assert abs(a - b) / a < 0.08, (organ, a, b)
    # and consistent with the placement lattice's volume
    for o in scene.organs:
        assert abs(vols[0][o.organ] - o.volume_ml) / o.volume_ml < 0.15


def test_label_priority_and_boxes(anatomy_graph, anatomy_bank):
    scene = sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(2))
    order = [o.organ for o in label_precedence(scene.organs)]
    assert order[-1] == "gallbladder"  # priority 2 beats priority 0
    grid = Grid((40, 40, 40), (2.0, 2.0, 2.0), tuple(np.asarray(scene.organ("liver").centroid_mm) - 40.0))
    r = render_scene(scene, anatomy_bank, grid)
    assert r.label.shape == (40, 40, 40) and r.label.dtype == np.uint8
    for organ, (sl, sdf) in r.sdfs.items():
        assert sdf.shape == tuple(s.stop - s.start for s in sl)
        inside = r.label[sl] == r.labels[organ]
        assert np.all(sdf[inside] <= 0)


def test_rotation_is_proper():
    for angles in ((10, -20, 30), (0, 0, 0), (179, 45, -90)):
        m = rotation_matrix(angles)
        assert np.allclose(m @ m.T, np.eye(3)) and np.isclose(np.linalg.det(m), 1.0)


def test_preview_colours_orientation_and_montage(tmp_path):
    """Anatomical colour table with clearly distinct colours, radiological display, a montage PNG."""
    from anatomix.preview import ORGAN_COLOURS, _display, organ_colours

    cols = np.array(list(ORGAN_COLOURS.values()), dtype=float)
    d = np.linalg.norm(cols[:, None] - cols[None], axis=-1) + np.eye(len(cols)) * 1e3
    assert d.min() > 30.0  # no two organs (nearly) the same colour
    table = organ_colours({6: "liver", 1: "spleen", 99: "something"})
    assert tuple(table[6]) == ORGAN_COLOURS["liver"] and tuple(table[1]) == ORGAN_COLOURS["spleen"]
    assert table[99].any() and not table[0].any()
    # axial slice (x, y): a marker at large x (subject's right) and large y (anterior)
    a = np.zeros((10, 8))
    a[9, 7] = 1
    r, c = np.argwhere(_display(a))[0]
    assert (r, c) == (0, 0)  # top-left: anterior up, subject's right on the image left
    # montage of a tiny dataset
    from anatomix.io import write_volume
    from anatomix.preview import preview_dataset

    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[2:7, 4:12, 4:12] = 6
    lab[10:14, 4:12, 4:12] = 1
    write_volume(tmp_path / "imagesTr" / "c_0000.nii.gz", lab.astype(np.float32) / 6, (2.0, 2.0, 2.0))
    write_volume(tmp_path / "labelsTr" / "c.nii.gz", lab, (2.0, 2.0, 2.0))
    (tmp_path / "dataset.json").write_text('{"labels": {"background": 0, "spleen": 1, "liver": 6}}')
    out = preview_dataset(tmp_path, tmp_path / "p.png", mesh=tmp_path / "m.glb")
    assert out.stat().st_size > 1000 and (tmp_path / "m.glb").exists()


def test_one_grid_for_fdif_and_anatomy():
    """One Grid class: centred by default (FDIF), any origin for anatomy; FDIF objects render at
    the same world place on a centred and a shifted grid."""
    import torch

    import anatomix.sdf as sdf
    from anatomix.grid import Grid as G

    assert Grid is G and sdf.Grid is G
    g = G((5, 4, 3), (2.0, 1.0, 3.0))
    assert g.origin_mm == (-4.0, -2.0, -3.0) and g.shift_mm == (0.0, 0.0, 0.0)
    assert np.allclose(g.axis_mm(0, 0, 5).numpy(), [-4, -2, 0, 2, 4])
    s = G((5, 4, 3), (2.0, 1.0, 3.0), (10.0, 0.0, -1.0))
    assert np.allclose(s.axis_mm(0, 0, 5).numpy(), [10, 12, 14, 16, 18])
    assert np.allclose(s.world_mm([[1, 2, 1]]), [[12.0, 2.0, 2.0]])
    # an FDIF sphere at world (16, 4, 6): a centred 32^3 grid and the same grid shifted by
    # whole voxels give the same label map, shifted
    obj = {"primitive": {"class": "sphere", "radius": 6.0}, "mapper": "inverse_cube",
           "pose": {"translation_mm": [16.0, 4.0, 6.0], "rotation": np.eye(3).tolist(), "shear": [0.0, 0.0, 0.0]},
           "displacement": None}
    _, la, _ = sdf.render_objects([obj], [1], G((32, 32, 32), (2.0, 2.0, 2.0)))
    shifted = G((32, 32, 32), (2.0, 2.0, 2.0), (-20.0, -32.0, -30.0))  # centred origin is -32
    _, lb, _ = sdf.render_objects([obj], [1], shifted)
    a, b = np.argwhere(la.numpy() == 1), np.argwhere(lb.numpy() == 1)
    assert len(a) > 50 and len(a) == len(b)
    assert np.array_equal(a - [6, 0, 1], b)
    assert torch.equal(la[6:, :, 1:], lb[:26, :, :31])


def test_preview_reads_label_maps_without_interpolation(tmp_path):
    """An oblique label map is read as labels (nearest neighbour): no value between two labels."""
    import SimpleITK as sitk

    from anatomix.preview import _read_labels

    lab = np.zeros((20, 20, 20), np.uint8)
    lab[3:10, 4:16, 4:16] = 1
    lab[10:17, 4:16, 4:16] = 6
    img = sitk.GetImageFromArray(lab)
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    img.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(img, str(tmp_path / "oblique.nii.gz"))
    arr, sp = _read_labels(tmp_path / "oblique.nii.gz")
    assert set(np.unique(arr).tolist()) <= {0, 1, 6} and {1, 6} <= set(np.unique(arr).tolist())
    assert len(sp) == 3


def _count_ml(f, lo: np.ndarray, hi: np.ndarray, step: float = 0.77) -> float:
    """Volume (ml) of ``sdf <= 0`` on a fine grid off the crops' lattice (a sample on a voxel face
    of a mask's SDF reads exactly 0)."""
    lo = lo - 0.31
    n = np.ceil((hi - lo) / step).astype(int) + 1
    return float(np.count_nonzero(f.eval_box(lo, np.full(3, step), n).numpy() <= 0)) * step ** 3 / 1000.0


class _Rods:
    """Two shapes of one organ: a rod along x and a rod along y (thin ellipsoids; 2 mm crops, one
    centroid)."""

    spacing_mm = (2.0, 2.0, 2.0)

    def __init__(self) -> None:
        from scipy.ndimage import distance_transform_edt

        g = np.mgrid[0:40, 0:40, 0:20] * 2.0 - np.array([39.0, 39.0, 19.0])[:, None, None, None]
        self._sdf = {}
        for name, (a, b) in {"x": (0, 1), "y": (1, 0)}.items():
            mask = (g[a] / 30.0) ** 2 + (g[b] / 7.0) ** 2 + (g[2] / 7.0) ** 2 <= 1.0  # a thin ellipsoid
            self._sdf[name] = (distance_transform_edt(~mask, sampling=2.0)
                               - distance_transform_edt(mask, sampling=2.0)).astype(np.float32)

    def sdf(self, shape_id: str) -> np.ndarray:
        return self._sdf[shape_id]

    def record(self, shape_id: str) -> dict:
        return {"origin_mm": (0.0, 0.0, 0.0), "centroid_mm": (39.0, 39.0, 19.0)}


def test_a_blend_of_two_shapes_keeps_their_weighted_volume():
    """Averaging two SDFs keeps little more than where both shapes agree: blends of FLARE22
    adrenals kept 43-77 % of the shapes' volume and 39 % of synthetic organ volumes fell below the
    real subjects' range. The blend's iso-level now restores the weighted volume."""
    from anatomix.shape_field import organ_field

    rods = _Rods()

    def volume(weight: float, level: bool = True) -> float:
        f = organ_field(rods, "x", "y", weight, (1, 1, 1), (0, 0, 0), (0, 0, 0), spacing_mm=(2.0, 2.0, 2.0))
        if not level:
            f.level_mm = 0.0
        return _count_ml(f, *f.offset_box(4.0))

    one = volume(0.0)
    assert volume(1.0) == pytest.approx(one, rel=0.03)  # the other rod alone: the same volume
    assert volume(0.5, level=False) < 0.5 * one  # the plain average: the rods' crossing and a bit
    for w in (0.3, 0.5, 0.8):
        assert volume(w) == pytest.approx(one, rel=0.06)
    # a scaled blend keeps the scaled volume (the level is in the shape frame)
    f = organ_field(rods, "x", "y", 0.5, (1.2, 1.0, 0.9), (0, 0, 30), (0, 0, 0), spacing_mm=(2.0, 2.0, 2.0))
    assert _count_ml(f, *f.offset_box(4.0)) == pytest.approx(one * 1.08, rel=0.06)


def test_slabs_cover_the_first_axis_once_in_order():
    from anatomix.grid import slabs

    for shape, voxels in (((10, 4, 5), 45), ((10, 4, 5), 1), ((3, 2, 2), 10**6), ((7,), 3)):
        parts = slabs(shape, voxels)
        covered = [i for s in parts for i in range(s.start, s.stop)]
        assert covered == list(range(shape[0]))  # every plane once, in order, none past the end
        plane = int(np.prod(shape[1:]))
        assert all(s.stop - s.start <= max(1, voxels // plane) for s in parts)


def test_eval_box_ticks_are_linspace_shared_and_left_unchanged():
    """eval_box's ramps share one ``torch.linspace(-1, 1, n)`` per box size (kept across calls):
    the same bytes as a fresh linspace, the same SDF whether or not the size was seen before,
    and never written to."""
    import torch

    from anatomix import shape_field
    from anatomix.shape_field import organ_field

    for n in (1, 2, 7, 96):
        want = torch.linspace(-1.0, 1.0, n) if n > 1 else torch.full((1,), -1.0)
        assert torch.equal(shape_field._ticks(n, torch.device("cpu")), want)
    rods = _Rods()
    elastic = [{"amplitude_mm": (1.5, -0.7, 0.9), "frequency_per_mm": (0.011, -0.02, 0.017), "phase": 0.4},
               {"amplitude_mm": (-0.6, 1.1, 0.3), "frequency_per_mm": (-0.03, 0.008, 0.022), "phase": 2.1}]
    fld = organ_field(rods, "x", "y", 0.3, (1.1, 0.9, 1.0), (12.0, -7.0, 25.0), (0.0, 0.0, 0.0), elastic)
    lo, step, n = np.array([-40.0, -20.0, -15.0]), np.array([1.5, 1.5, 2.0]), np.array([53, 29, 17])
    shape_field._TICKS.clear()
    first = fld.eval_box(lo, step, n).numpy().copy()
    kept = {k: v.clone() for k, v in shape_field._TICKS.items()}
    assert set(kept) == {(53, "cpu"), (29, "cpu"), (17, "cpu")}
    again = fld.eval_box(lo, step, n).numpy()
    assert np.array_equal(first, again)
    assert all(torch.equal(shape_field._TICKS[k], v) for k, v in kept.items())
    assert (first <= 0).any() and (first > 0).any()
