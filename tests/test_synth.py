"""synth.py: config loading, FDIF generator determinism, dataset writer (workers, shards, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anatomix.errors import ConfigError
from anatomix.config import load_synth_config, validate_synth_config
from anatomix.synth import SynthError, build_generator, case_name, write_dataset

SMALL = {"mode": "fdif", "shape": [20, 18, 16], "spacing_mm": [1.5, 1.5, 2.0], "n_objects": [3, 4]}


@pytest.fixture()
def fdif_small_generator():
    return build_generator(validate_synth_config(dict(SMALL)), seed=7)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def test_fdif_config_file_loads(repo_root):
    cfg = load_synth_config(repo_root / "configs" / "fdif.yaml")
    assert cfg.mode == "fdif" and tuple(cfg.shape) == (96, 96, 96) and tuple(cfg.n_objects) == (20, 20)
    gen = build_generator(cfg, seed=0)
    names = gen.label_names()
    assert len(names) == 109 and min(names) == 1 and max(names) == 109


def test_fdif_bad_config_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: fdif\nshape: [96, 96, 2]\nn_objects: [5, 2]\nmapers: all\n"
                   "mappers: [inverse_cube, nope]\ndisplacement_probability: 1.5\n")
    with pytest.raises(ConfigError) as e:
        load_synth_config(bad)
    msg = str(e.value)
    assert str(bad) in msg
    for field in ("shape", "n_objects", "mapers", "mappers", "displacement_probability"):
        assert f"  - {field}" in msg, msg
    assert "'nope'" in msg and "unknown key" in msg and "found 1.5" in msg


@pytest.mark.parametrize("text, expected", [
    ("shape: [1, 2, 3\n", "not valid YAML"),
    ("mode: fdiff\n", "mode: expected one of fdif, anatomy"),
    ("- 1\n", "expected a mapping"),
    ("mode: fdif\nmapper_as_class: true\ndisplacement_as_class: true\n", "at most 255 labels"),
])
def test_fdif_config_rejections(tmp_path, text, expected):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_synth_config(p)


def test_fdif_sample_is_deterministic_and_recorded(fdif_small_generator):
    a = fdif_small_generator.sample(3)
    b = build_generator(validate_synth_config(dict(SMALL)), seed=7).sample(3)
    c = fdif_small_generator.sample(4)
    assert a.image.dtype == np.float32 and a.label.dtype == np.uint8 and a.image.shape == (20, 18, 16)
    assert a.image.tobytes() == b.image.tobytes() and a.label.tobytes() == b.label.tobytes()
    assert a.image.tobytes() != c.image.tobytes()
    rec = json.loads(json.dumps(a.record))
    assert rec["seed"] == 7 and rec["index"] == 3 and 3 <= len(rec["objects"]) <= 4
    for o in rec["objects"]:
        assert {"primitive", "pose", "displacement", "mapper", "label"} <= set(o)
    # the record replays the sample exactly
    again = fdif_small_generator.render_record(rec)
    assert again.image.tobytes() == a.image.tobytes()
    assert a.spacing_mm == (1.5, 1.5, 2.0)


def test_fdif_write_dataset_layout_and_worker_determinism(tmp_path, fdif_small_generator):
    import nibabel as nib

    s1 = write_dataset(fdif_small_generator, tmp_path / "w1", n=3, seed=7, workers=1, progress=False)
    write_dataset(fdif_small_generator, tmp_path / "w2", n=3, seed=7, workers=2, progress=False)
    assert s1["written"] == 3 and s1["generator_summary"]["cases"] == 3
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")
    root = tmp_path / "w1"
    ds = json.loads((root / "dataset.json").read_text())
    assert ds["numTraining"] == 3 and ds["file_ending"] == ".nii.gz"
    assert ds["channel_names"] == {"0": "synthetic"} and ds["labels"]["background"] == 0
    assert len(ds["labels"]) == 110
    dl = json.loads((root / "datalist.json").read_text())
    assert dl["training"][0] == {"image": "imagesTr/anatomix_000000_0000.nii.gz",
                                 "label": "labelsTr/anatomix_000000.nii.gz"}
    img = nib.load(root / "imagesTr" / "anatomix_000001_0000.nii.gz")
    lab = nib.load(root / "labelsTr" / "anatomix_000001.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert np.allclose(np.diag(img.affine)[:3], [1.5, 1.5, 2.0])
    sample = fdif_small_generator.sample(1)
    assert np.array_equal(np.asarray(img.dataobj), sample.image)
    assert np.array_equal(np.asarray(lab.dataobj), sample.label)
    assert np.allclose(img.affine[:3, 3], sample.origin_mm)


def test_fdif_resume_and_shards(tmp_path, fdif_small_generator):
    full = tmp_path / "full"
    write_dataset(fdif_small_generator, full, n=4, seed=7, progress=False)
    reference = _files(full)
    # shards into one folder give the same files
    sharded = tmp_path / "sharded"
    s0 = write_dataset(fdif_small_generator, sharded, n=4, seed=7, shard="0/2", progress=False)
    assert s0["written"] == 2 and json.loads((sharded / "dataset.json").read_text())["numTraining"] == 2
    write_dataset(fdif_small_generator, sharded, n=4, seed=7, shard=(1, 2), progress=False)
    assert _files(sharded) == reference
    # a killed run: one case lost its record (half written), a temp file left behind
    (full / "records" / f"{case_name(2)}.json").unlink()
    (full / "imagesTr" / f".{case_name(3)}_0000.nii.gz.123.tmp.nii.gz").write_bytes(b"junk")
    (full / "labelsTr" / ".tmp-abc123.nii.gz").write_bytes(b"junk")
    before = (full / "records" / f"{case_name(0)}.json").stat().st_mtime_ns
    s = write_dataset(fdif_small_generator, full, n=4, seed=7, progress=False)
    assert s["written"] == 1 and s["skipped"] == 3
    assert (full / "records" / f"{case_name(0)}.json").stat().st_mtime_ns == before
    assert _files(full) == reference
    assert not list(full.rglob(".tmp-*")) and not list(full.rglob(".*.tmp*"))
    # another seed into the same folder is refused
    other = build_generator(validate_synth_config(dict(SMALL)), seed=8)
    with pytest.raises(SynthError, match="different synthesis run"):
        write_dataset(other, full, n=4, seed=8, progress=False)
    with pytest.raises(SynthError, match="shard"):
        write_dataset(fdif_small_generator, full, n=4, seed=7, shard="3/2", progress=False)
