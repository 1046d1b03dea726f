"""Rendering a Scene on grids."""

from __future__ import annotations

import numpy as np

from anatomix.placement import sample_scene
from anatomix.render import Grid, label_precedence, render_scene, rotation_matrix, scene_grid


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
