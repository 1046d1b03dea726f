"""Mesh ingest: trimesh primitives, a mesh exported from a committed label map (round trip), bad meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from anatomix.bank import ingest_masks
from anatomix.errors import InputError
from anatomix.mesh import is_mesh_folder, load_closed_mesh, read_mesh_subject

ROOT = Path(__file__).resolve().parents[1]


def _subject(folder: Path) -> Path:
    folder.mkdir()
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=20.0)
    sphere.export(folder / "liver.stl")
    box = trimesh.creation.box(extents=(20.0, 30.0, 24.0))
    box.apply_translation((45.0, 0.0, 0.0))
    box.export(folder / "right kidney.ply")         # a Slicer-style name
    cyl = trimesh.creation.cylinder(radius=6.0, height=40.0)
    cyl.apply_translation((-45.0, 0.0, 0.0))
    cyl.export(folder / "kidney_left.obj")
    return folder


def test_folder_of_meshes_is_one_subject(tmp_path: Path) -> None:
    folder = _subject(tmp_path / "s")
    assert is_mesh_folder(folder)
    manifest = ingest_masks([folder], tmp_path / "bank", spacing_mm=1.5)
    assert len(manifest.subjects) == 1
    got = {r.organ: r for r in manifest.shapes}
    assert set(got) == {"liver", "kidney_right", "kidney_left"}
    assert got["liver"].volume_ml == pytest.approx(4 / 3 * np.pi * 20 ** 3 / 1000, rel=0.12)
    assert got["kidney_right"].volume_ml == pytest.approx(20 * 30 * 24 / 1000, rel=0.15)
    assert got["kidney_left"].volume_ml == pytest.approx(np.pi * 36 * 40 / 1000, rel=0.2)
    assert np.allclose(got["kidney_right"].extents_mm, (20, 30, 24), atol=1.6)   # within a voxel
    # kidneys 90 mm apart along x: the body frame puts them symmetric about x = 0
    assert got["kidney_right"].centroid_mm[0] - got["kidney_left"].centroid_mm[0] == pytest.approx(90.0, abs=1.5)
    # closed meshes are whole organs: none is taken as cut by the grid's faces, alone or together
    assert not any(r.truncated for r in manifest.shapes), [(r.organ, r.truncated_faces) for r in manifest.shapes]
    one = ingest_masks([folder / "liver.stl"], tmp_path / "bank1", spacing_mm=3.0, truncated="drop")
    assert [(r.organ, r.truncated) for r in one.shapes] == [("liver", False)]


def test_a_hole_is_filled_and_an_open_mesh_is_refused(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=10.0)
    holed = sphere.copy()
    holed.update_faces(np.arange(len(holed.faces)) != 0)  # one missing triangle: closable
    holed.export(tmp_path / "spleen.stl")
    assert load_closed_mesh(tmp_path / "spleen.stl").is_watertight
    open_ = sphere.copy()
    open_.update_faces(np.arange(len(open_.faces)) >= len(open_.faces) // 2)  # a hemisphere: not closable
    open_.remove_unreferenced_vertices()
    open_.export(tmp_path / "liver.stl")
    with pytest.raises(InputError) as e:
        ingest_masks([tmp_path / "liver.stl"], tmp_path / "bank")
    msg = str(e.value)
    assert "liver.stl" in msg and "closed surface" in msg and "boundary edge" in msg
    assert "re-download" not in msg and "truncated" not in msg
    assert not (tmp_path / "bank").exists()


def test_unreadable_mesh_says_so(tmp_path: Path) -> None:
    (tmp_path / "liver.stl").write_bytes(b"not a mesh at all")
    with pytest.raises(InputError, match="liver.stl.*(mesh|triangle)"):
        read_mesh_subject(tmp_path / "liver.stl")


def test_round_trip_of_a_committed_label_map(tmp_path: Path) -> None:
    from skimage import measure

    from anatomix import io
    from anatomix.labels import preset

    lv = io.read_label_map(ROOT / "tests/fixtures/totalsegmentator/example_seg.nii.gz")
    value = {v: k for k, v in preset("totalsegmentator").items()}["kidney_right"]
    mask = lv.array == value
    assert mask.sum() > 100
    verts, faces, _, _ = measure.marching_cubes(np.pad(mask, 1).astype(np.float32), 0.5,
                                                spacing=tuple(lv.spacing_mm))
    verts = verts - np.asarray(lv.spacing_mm) + np.asarray(lv.origin_mm)  # RAS mm of the label map
    folder = tmp_path / "meshes"
    folder.mkdir()
    trimesh.Trimesh(verts, faces).export(folder / "kidney_right.stl")
    from_mesh = ingest_masks([folder], tmp_path / "b_mesh", spacing_mm=1.5)
    from_map = ingest_masks([ROOT / "tests/fixtures/totalsegmentator/example_seg.nii.gz"], tmp_path / "b_map",
                            spacing_mm=1.5, labels="totalsegmentator", organs=["kidney_right"])
    a, b = from_mesh.shapes[0], from_map.shapes[0]
    assert a.organ == b.organ == "kidney_right"
    assert a.volume_ml == pytest.approx(b.volume_ml, rel=0.12)
    assert np.allclose(a.extents_mm, b.extents_mm, atol=3.0)  # within one voxel at each end
    va = read_mesh_subject(folder / "kidney_right.stl", 1.5)
    centre_mesh = np.argwhere(va.array > 0).mean(axis=0) * va.spacing_mm[0] + np.asarray(va.origin_mm)
    centre_map = np.argwhere(mask).mean(axis=0) * np.asarray(lv.spacing_mm) + np.asarray(lv.origin_mm)
    assert np.linalg.norm(centre_mesh - centre_map) < 1.0   # same place in RAS, within a voxel
