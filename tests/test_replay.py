"""Draw first, then apply: records replay their cases byte for byte; ablations are paired."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from anatomix import relations as rel
from anatomix.anatomy import AnatomyGenerator
from anatomix.config import AnatomySynthConfig
from anatomix.replay import ReplayError, replay_record, replay_to_folder
from anatomix.synth import SynthError, write_dataset

SMALL = {"mode": "anatomy", "grid": {"shape": [32, 32, 32], "spacing_mm": [4.0, 4.0, 4.0]},
         "placement": {"candidates": 8, "shape_attempts": 3},
         "appearance": {"lesion_probability": 1.0, "distractors": [1, 3]}}


def _gen(graph, bank, seed=0, **extra):
    data = json.loads(json.dumps(SMALL))
    for key, value in extra.items():
        data.setdefault(key, {}).update(value) if isinstance(value, dict) else data.update({key: value})
    return AnatomyGenerator(AnatomySynthConfig.model_validate(data), seed=seed, graph=graph, bank=bank)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_record_replays_the_written_case_byte_for_byte(tmp_path, anatomy_graph, anatomy_bank):
    g = _gen(anatomy_graph, anatomy_bank, seed=4)
    write_dataset(g, tmp_path / "run", n=3, progress=False)
    for case in ("anatomix_000000", "anatomix_000002"):
        record = tmp_path / "run" / "records" / f"{case}.json"
        image, label = replay_to_folder(record, tmp_path / "again", bank=anatomy_bank)
        assert _sha(image) == _sha(tmp_path / "run" / "imagesTr" / f"{case}_0000.nii.gz")
        assert _sha(label) == _sha(tmp_path / "run" / "labelsTr" / f"{case}.nii.gz")


def test_replay_refuses_another_bank(tmp_path, anatomy_graph, anatomy_bank):
    g = _gen(anatomy_graph, anatomy_bank)
    record = g.sample_record(0)
    with pytest.raises(ReplayError, match="pins shape bank"):
        replay_record(record)  # the embedded bank is not the toy bank the record pins
    path = tmp_path / "case.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ReplayError, match=f"^{path}: the record pins shape bank"):  # names the file
        replay_to_folder(path, tmp_path / "out")


def test_shipped_graph_case_replays_from_its_record_alone(tmp_path, repo_root):
    """The main job's output (shipped graph, embedded bank): the CLI replays a record it wrote."""
    from typer.testing import CliRunner

    from anatomix.cli import app

    runner = CliRunner()
    out = tmp_path / "synth"
    res = runner.invoke(app, ["synth", "--graph", str(repo_root / "graphs" / "abdomen.yaml"), "-n", "1",
                              "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["replay", str(out / "records" / "anatomix_000000.json"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert _sha(tmp_path / "r" / "anatomix_000000_0000.nii.gz") == _sha(out / "imagesTr" / "anatomix_000000_0000.nii.gz")
    assert _sha(tmp_path / "r" / "anatomix_000000.nii.gz") == _sha(out / "labelsTr" / "anatomix_000000.nii.gz")
    # --bank takes `default` (the embedded bank) as every other command does
    res = runner.invoke(app, ["replay", str(out / "records" / "anatomix_000000.json"), "--out", str(tmp_path / "d"),
                              "--bank", "default"])
    assert res.exit_code == 0, res.output
    assert _sha(tmp_path / "d" / "anatomix_000000.nii.gz") == _sha(out / "labelsTr" / "anatomix_000000.nii.gz")


def test_fdif_record_replays(tmp_path):
    from anatomix.config import FdifSynthConfig
    from anatomix.sdf.generator import FdifGenerator

    g = FdifGenerator(FdifSynthConfig(shape=(24, 24, 24), n_objects=(3, 5)), seed=2)
    s = g.sample(5)
    again = replay_record(json.loads(json.dumps(s.record)))
    assert again.image.tobytes() == s.image.tobytes() and again.label.tobytes() == s.label.tobytes()


def test_texture_off_changes_nothing_else(anatomy_graph, anatomy_bank):
    """Ablations are paired: `texture: none` keeps the label map and every other drawn parameter."""
    on = _gen(anatomy_graph, anatomy_bank, seed=1)
    off = _gen(anatomy_graph, anatomy_bank, seed=1, appearance={"texture": "none"})
    for i in range(4):
        a, b = on.sample_record(i), off.sample_record(i)
        assert any(o["texture"] for o in a["appearance"]["organs"].values())
        assert not any(o["texture"] for o in b["appearance"]["organs"].values())
        for key in ("scene", "grid", "lesions", "constraints"):
            assert a[key] == b[key], key
        strip = (lambda p: {**p, "texture": None, "organs": {k: {**v, "texture": None} for k, v in p["organs"].items()}})
        assert strip(a["appearance"]) == strip(b["appearance"])
        assert on.render_record(a).label.tobytes() == off.render_record(b).label.tobytes()


def test_lesion_probability_changes_no_other_draw(anatomy_graph, anatomy_bank):
    with_les = _gen(anatomy_graph, anatomy_bank, seed=2)
    without = _gen(anatomy_graph, anatomy_bank, seed=2, appearance={"lesion_probability": 0.0})
    a, b = with_les.sample_record(0), without.sample_record(0)
    assert a["lesions"] and not b["lesions"]
    assert {k: v for k, v in a.items() if k not in ("lesions", "config", "pins")} == \
           {k: v for k, v in b.items() if k not in ("lesions", "config", "pins")}


def test_edited_pose_renders_as_edited(anatomy_graph, anatomy_bank):
    """Rendering reads only the pose: a Scene edited after placement renders the edit."""
    g = _gen(anatomy_graph, anatomy_bank, appearance={"lesion_probability": 0.0}, grid={"fov": "whole"})
    record = g.sample_record(0)
    before = g.render_record(record).label
    edited = json.loads(json.dumps(record))
    for o in edited["scene"]["organs"]:
        if o["organ"] == "gallbladder":
            o["translation_mm"] = [o["translation_mm"][0] - 12.0, *o["translation_mm"][1:]]
    after = g.render_record(edited).label
    cx = [np.argwhere(lab == 4)[:, 0].mean() * 4.0 for lab in (before, after)]
    assert cx[0] - cx[1] == pytest.approx(12.0, abs=4.0)


def test_hard_constraints_hold_on_rendered_label_maps(anatomy_graph, anatomy_bank):
    """Every hard relation, re-measured on the rendered organs (not placement's lattice) with relations.py."""
    from anatomix.render import render_scene, scene_grid

    g = _gen(anatomy_graph, anatomy_bank)
    checked = 0
    for i in range(30):
        scene = g.scene(i)
        assert not scene.failed
        rendered = render_scene(scene, anatomy_bank, scene_grid(scene, (2.0, 2.0, 2.0)))
        masks, cents = rendered.organ_masks(), rendered.label_centroids_mm()
        for r in anatomy_graph.relations():
            if not r.hard or r.a not in masks or r.b not in masks or r.type == "attached_to":
                continue
            value = rel.relation_value(r.type, masks[r.a], masks[r.b], rendered.grid.spacing_mm, r.direction,
                                       centroids=(cents[r.a], cents[r.b]))
            # the lattice (4 mm) and the 2 mm render see an organ's surface up to a voxel apart
            slack = 0.02 if r.type == "avoid" else 2.0
            ok = r.holds(value - slack) if r.type == "avoid" else r.holds(value + slack)
            assert ok, (i, r.describe(), value)
            checked += 1
    assert checked > 30 * 8


def test_resume_refuses_a_changed_graph(tmp_path, anatomy_graph, anatomy_bank):
    from anatomix.graph import OrganGraph
    from conftest import anatomy_graph_dict

    write_dataset(_gen(anatomy_graph, anatomy_bank), tmp_path / "run", n=1, progress=False)
    data = anatomy_graph_dict()
    data["organs"]["liver"]["anchor"]["mean_mm"][2] += 5.0
    edited = OrganGraph.from_dict(data)
    with pytest.raises(SynthError, match="organ graph"):
        write_dataset(_gen(edited, anatomy_bank), tmp_path / "run", n=2, progress=False)


def test_written_images_are_int16_hu_and_uint8_fdif(tmp_path, anatomy_graph, anatomy_bank):
    """CT-like cases are written as int16 Hounsfield units (nnU-Net's CT normalisation applies);
    the CT window of the file gives the training image back to within the 1 HU step. FDIF's
    quantised 0..128 images are written as uint8."""
    from anatomix.config import FdifSynthConfig
    from anatomix.io import read_image
    from anatomix.sdf.generator import FdifGenerator

    g = _gen(anatomy_graph, anatomy_bank, seed=6)
    write_dataset(g, tmp_path / "ct", n=1, progress=False)
    import SimpleITK as sitk

    path = tmp_path / "ct" / "imagesTr" / "anatomix_000000_0000.nii.gz"
    assert sitk.ReadImage(str(path)).GetPixelID() == sitk.sitkInt16
    vol = read_image(path)
    sample = g.sample(0)
    lo, hi = sample.record["appearance"]["acquisition"]["window_hu"]
    windowed = np.clip((vol.array.astype(np.float32) - lo) / (hi - lo), 0, 1)
    assert np.abs(windowed - sample.image).max() <= 0.5 / (hi - lo) + 1e-5
    f = FdifGenerator(FdifSynthConfig(shape=(16, 16, 16), n_objects=(2, 3)), seed=0)
    write_dataset(f, tmp_path / "fdif", n=1, progress=False)
    fpath = tmp_path / "fdif" / "imagesTr" / "anatomix_000000_0000.nii.gz"
    assert sitk.ReadImage(str(fpath)).GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(read_image(fpath).array, f.sample(0).image)
