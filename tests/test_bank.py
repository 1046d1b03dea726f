"""bank.py: ingest geometry on phantoms, QC flags, bad inputs, determinism, the embedded bank."""

from __future__ import annotations

import warnings

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from anatomix import bank as bank_mod
from anatomix.bank import BankWarning, ShapeBank, default_bank_path, ingest_masks
from anatomix.cli import app
from anatomix.errors import AnatomixError, InputError
from anatomix.labels import ABDOMEN_13, preset

FIX = Path(__file__).resolve().parent / "fixtures"
TS = FIX / "totalsegmentator"
FL = {v: k for k, v in preset("flare22").items()}  # organ -> FLARE22 value

SP = 2.0  # phantom spacing (mm)
ORIGIN = (-90.0, -70.0, -70.0)  # RAS world of voxel 0
SHAPE = (90, 70, 70)
FRAME = np.array([0.0, -20.0, -20.0])  # kidney midpoint of the phantom


def _coords() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.meshgrid(*[ORIGIN[a] + SP * np.arange(SHAPE[a]) for a in range(3)], indexing="ij")


def bank_phantom(swap_kidneys: bool = False) -> np.ndarray:
    """A toy abdomen in RAS (x, y, z), FLARE22 label values."""
    x, y, z = _coords()
    a = np.zeros(SHAPE, dtype=np.uint16)

    def ball(c, r):
        return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1

    a[ball((50, 10, 20), (30, 25, 20))] = FL["liver"]
    a[ball((-55, -10, 20), (15, 15, 15))] = FL["spleen"]
    kr, kl = (FL["kidney_left"], FL["kidney_right"]) if swap_kidneys else \
        (FL["kidney_right"], FL["kidney_left"])
    a[ball((40, -20, -20), (18, 18, 18))] = kr
    a[ball((-40, -20, -20), (18, 18, 18))] = kl
    a[ball((-28, -15, 12), (3, 3, 3))] = FL["adrenal_gland_left"]  # tiny
    a[((x + 5) ** 2 + (y + 30) ** 2) <= 64] = FL["aorta"]  # cut by z- and z+
    a[ball((0, 10, -5), (8, 8, 8)) | ball((22, 10, -5), (5, 5, 5))] = FL["pancreas"]  # 2 pieces
    return a


def bank_write(path: Path, arr: np.ndarray, orient: str = "RAS", origin=ORIGIN,
               dtype=None) -> Path:
    data = arr if dtype is None else arr.astype(dtype)
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    img.SetSpacing([SP] * 3)
    img.SetDirection([-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0])
    img.SetOrigin([-origin[0], -origin[1], origin[2]])
    sitk.WriteImage(sitk.DICOMOrient(img, orient), str(path), True)
    return path


@pytest.fixture(scope="module")
def bank_phantom_bank(tmp_path_factory: pytest.TempPathFactory) -> ShapeBank:
    d = tmp_path_factory.mktemp("bank")
    f = bank_write(d / "phantom.nii.gz", bank_phantom())
    with pytest.warns(BankWarning):
        ingest_masks([f], d / "bank", labels="flare22", spacing_mm=1.5)
    return ShapeBank.load(d / "bank", verify=True)


def _only(bank: ShapeBank, organ: str):
    (r,) = bank.shapes(organ)
    return r


# ---- geometry -------------------------------------------------------------------------------


def test_volumes_centroids_sides(bank_phantom_bank: ShapeBank) -> None:
    b = bank_phantom_bank
    assert b.organs == sorted(["liver", "spleen", "kidney_left", "kidney_right", "aorta",
                               "pancreas", "adrenal_gland_left"])
    (s,) = b.manifest.subjects
    assert s.frame_reference == "kidney_midpoint" and s.frame_exact
    kl, kr, liver = _only(b, "kidney_left"), _only(b, "kidney_right"), _only(b, "liver")
    sphere_ml = 4 / 3 * np.pi * 18 ** 3 / 1000
    assert kl.volume_ml == pytest.approx(sphere_ml, rel=0.08)
    assert liver.volume_ml == pytest.approx(4 / 3 * np.pi * 30 * 25 * 20 / 1000, rel=0.05)
    assert np.allclose(kl.centroid_mm, (-40, 0, 0), atol=1.0)
    assert np.allclose(kr.centroid_mm, (40, 0, 0), atol=1.0)
    assert np.allclose(liver.centroid_mm, np.array((50, 10, 20)) - FRAME, atol=1.0)
    assert liver.centroid_mm[0] > _only(b, "spleen").centroid_mm[0]
    assert np.allclose(liver.extents_mm, (61, 51, 41), atol=3.5)
    assert np.allclose(np.abs(liver.principal_axes[0]), (1, 0, 0), atol=1e-3)
    assert liver.principal_std_mm[0] > liver.principal_std_mm[1] > liver.principal_std_mm[2]
    assert not kl.qc_flags and not kl.truncated and kl.dropped_fraction == 0


def test_truncation_and_qc_flags(bank_phantom_bank: ShapeBank) -> None:
    b = bank_phantom_bank
    aorta = _only(b, "aorta")
    assert aorta.truncated and aorta.truncated_faces == ["z-", "z+"]
    assert not _only(b, "liver").truncated
    assert "tiny" in _only(b, "adrenal_gland_left").qc_flags
    pan = _only(b, "pancreas")
    assert "fragmented" in pan.qc_flags
    x, y, z = _coords()
    small = int((((x - 22) ** 2 + (y - 10) ** 2 + (z + 5) ** 2) <= 25).sum())
    big = int((((x - 0) ** 2 + (y - 10) ** 2 + (z + 5) ** 2) <= 64).sum())
    # nearest-neighbour 2 -> 1.5 mm duplicates every 3rd voxel row: small blobs vary by ~+-5%
    assert pan.dropped_fraction == pytest.approx(small / (small + big), abs=0.06)
    assert pan.volume_ml == pytest.approx(4 / 3 * np.pi * 512 / 1000, rel=0.1)


def test_crop_margin_and_rebuild(bank_phantom_bank: ShapeBank) -> None:
    b = bank_phantom_bank
    sp = np.array(b.spacing_mm)
    for r in b.manifest.shapes:
        m = b.mask(r.shape_id)
        assert m.shape == r.shape_vox
        for a in range(3):  # margin of >= 8 empty voxels on each side
            prof = m.any(axis=tuple(i for i in range(3) if i != a))
            assert not prof[:8].any() and not prof[-8:].any()
        # placing the crop at origin_mm reproduces the recorded centroid (body frame)
        c = np.array(r.origin_mm) + np.argwhere(m).mean(0) * sp
        assert np.allclose(c, r.centroid_mm, atol=1e-3)


def test_sdf(bank_phantom_bank: ShapeBank) -> None:
    b = bank_phantom_bank
    r = _only(b, "kidney_left")
    sdf = b.sdf(r.shape_id)
    assert sdf.dtype == np.float32 and sdf.shape == r.shape_vox
    assert b.sdf(r.shape_id) is sdf and not sdf.flags.writeable
    m = b.mask(r.shape_id)
    assert (sdf[m] < 0).all() and (sdf[~m] > 0).all()
    assert sdf.min() == pytest.approx(-(18 - 0.75), abs=2.0)  # nearest-resampled sphere
    sp = np.array(b.spacing_mm)
    pin, pout = np.argwhere(m), np.argwhere(~m)
    for i in (0, len(pin) // 2, len(pin) - 1):  # brute force: nearest voxel of the other side
        d = np.sqrt((((pout - pin[i]) * sp) ** 2).sum(1)).min()
        assert sdf[tuple(pin[i])] == pytest.approx(-(d - 0.75), abs=1e-4)
    far = np.sqrt((((pin - 0) * sp) ** 2).sum(1)).min()
    assert sdf[0, 0, 0] == pytest.approx(far - 0.75, abs=1e-4)


def test_orientations_dtypes_formats_agree(tmp_path: Path) -> None:
    arr = bank_phantom()
    ref = None
    cases = [("RAS", ".nii.gz", None), ("LPS", ".nrrd", np.int16), ("PIR", ".mha", np.float32),
             ("SLA", ".mhd", np.uint8), ("LAS", ".nii", np.int32)]
    for i, (orient, suf, dt) in enumerate(cases):
        f = bank_write(tmp_path / f"in{i}{suf}", arr, orient, dtype=dt)
        with pytest.warns(BankWarning):
            m = ingest_masks([f], tmp_path / f"b{i}", labels="flare22", spacing_mm=2.0)
        if ref is None:
            ref = m
        assert m == ref, (orient, suf)
        assert (tmp_path / f"b{i}" / "manifest.json").read_bytes() == \
            (tmp_path / "b0" / "manifest.json").read_bytes()


def test_deidentified_and_translation_invariant(tmp_path: Path) -> None:
    f1 = bank_write(tmp_path / "Doe_John_1962.nii.gz", bank_phantom())
    d2 = tmp_path / "other"
    d2.mkdir()
    f2 = bank_write(d2 / "x.nii.gz", bank_phantom(), origin=(-1234.5, 600.25, 2000.0))
    with pytest.warns(BankWarning):
        ingest_masks([f1], tmp_path / "b1", labels="flare22", spacing_mm=2.0)
        ingest_masks([f2], tmp_path / "b2", labels="flare22", spacing_mm=2.0)
    files1 = sorted(p.relative_to(tmp_path / "b1") for p in (tmp_path / "b1").rglob("*"))
    files2 = sorted(p.relative_to(tmp_path / "b2") for p in (tmp_path / "b2").rglob("*"))
    assert files1 == files2
    for rel in files1:
        p1, p2 = tmp_path / "b1" / rel, tmp_path / "b2" / rel
        if p1.is_file():
            assert p1.read_bytes() == p2.read_bytes()  # no absolute scanner coordinate stored
    text = (tmp_path / "b1" / "manifest.json").read_text()
    for leak in ("Doe", "John", "1962", str(tmp_path), "nii"):
        assert leak not in text


def test_deterministic_bytes(tmp_path: Path) -> None:
    f = bank_write(tmp_path / "a.nii.gz", bank_phantom())
    g = bank_write(tmp_path / "b.nii.gz", bank_phantom(swap_kidneys=True))
    with pytest.warns(BankWarning):
        ingest_masks([f, g], tmp_path / "b1", labels="flare22", spacing_mm=2.0)
        ingest_masks([g, f], tmp_path / "b2", labels="flare22", spacing_mm=2.0)
    a = {p.relative_to(tmp_path / "b1"): p.read_bytes() for p in (tmp_path / "b1").rglob("*")
         if p.is_file()}
    b = {p.relative_to(tmp_path / "b2"): p.read_bytes() for p in (tmp_path / "b2").rglob("*")
         if p.is_file()}
    assert a == b and len(a) == 1 + 2 * 7
    bank = ShapeBank.load(tmp_path / "b1", verify=True)
    assert bank.manifest.content_hash == bank.manifest.compute_hash()


def test_wrong_side(tmp_path: Path) -> None:
    f = bank_write(tmp_path / "a.nii.gz", bank_phantom(swap_kidneys=True))
    with pytest.warns(BankWarning, match="wrong side"):
        m = ingest_masks([f], tmp_path / "b", labels="flare22", spacing_mm=2.0)
    flags = {r.organ: r.qc_flags for r in m.shapes}
    assert "wrong_side" in flags["kidney_left"] and "wrong_side" in flags["kidney_right"]
    assert "wrong_side" not in flags["adrenal_gland_left"]


def test_a_wrong_label_table_is_flagged_by_implausible_volumes(tmp_path: Path) -> None:
    """A real label map read with a wrong numbering (liver and spleen swapped with the adrenal
    glands): the warning asks whether --labels is right; with its own table, no such warning."""
    from anatomix.bank.qc import implausible_volumes
    from anatomix.labels import preset

    assert implausible_volumes({"liver": 1400.0, "spleen": 900.0, "adrenal_gland_left": 4.0}) == []
    assert implausible_volumes({"liver": 72.0, "adrenal_gland_left": 189.0}) == [
        "adrenal_gland_left 189 ml (typical 5)", "liver 72 ml (typical 1500)"]
    f = TS / "example_seg_fast_force_split.nii.gz"
    organs = ["liver", "spleen", "adrenal_gland_left", "adrenal_gland_right", "kidney_left"]
    swap = {"liver": "adrenal_gland_left", "adrenal_gland_left": "liver",
            "spleen": "adrenal_gland_right", "adrenal_gland_right": "spleen"}
    table = tmp_path / "wrong.yaml"
    table.write_text("".join(f"{v}: {swap.get(o, o)}\n" for v, o in preset("totalsegmentator").items()))
    with pytest.warns(BankWarning, match=r"2 organs have implausible volumes \(liver 6 ml .*is --labels the right label table"):
        ingest_masks([f], tmp_path / "w", labels=table, spacing_mm=3.0, organs=organs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ingest_masks([f], tmp_path / "r", labels="totalsegmentator", spacing_mm=3.0, organs=organs)
    assert not any("implausible" in str(w.message) for w in caught)


@pytest.mark.parametrize("spacing", [0.0, float("nan"), 0.05, 25.0])
def test_a_bad_spacing_is_refused_before_any_file_is_read(tmp_path: Path, spacing: float) -> None:
    f = bank_write(tmp_path / "a.nii.gz", bank_phantom())
    with pytest.raises(InputError, match=r"--spacing: expected 1 or 3 values from 0.1 to 20 mm") as e:
        ingest_masks([f], tmp_path / "b", labels="flare22", spacing_mm=spacing)
    assert len(e.value.problems) == 1 and not (tmp_path / "b").exists()


def test_strict_and_truncated_policies(tmp_path: Path) -> None:
    f = bank_write(tmp_path / "a.nii.gz", bank_phantom())
    with pytest.raises(InputError) as e:
        ingest_masks([f], tmp_path / "s", labels="flare22", spacing_mm=2.0, strict=True)
    assert "tiny" in str(e.value) and "truncated" in str(e.value)
    assert not (tmp_path / "s").exists()
    with pytest.warns(BankWarning):
        m = ingest_masks([f], tmp_path / "d", labels="flare22", spacing_mm=2.0,
                         truncated="drop", organs=["aorta", "liver", "kidney_left", "right_kidney"])
    assert sorted(r.organ for r in m.shapes) == ["kidney_left", "kidney_right", "liver"]
    with pytest.raises(InputError, match=r"--truncated drop: expected shapes left to write, found none"):
        ingest_masks([f], tmp_path / "e", labels="flare22", spacing_mm=2.0, truncated="drop", organs=["aorta"])
    assert not (tmp_path / "e").exists()  # no empty bank


def test_label_file_and_auto(tmp_path: Path) -> None:
    arr = bank_phantom()
    f = bank_write(tmp_path / "a.nii.gz", arr)
    lab = tmp_path / "labels.yaml"
    lab.write_text("".join(f"{v}: {o}\n" for o, v in FL.items() if o != "pancreas")
                   + f"{FL['pancreas']}: null\n")
    with pytest.warns(BankWarning):
        m = ingest_masks([f], tmp_path / "b", labels=lab, spacing_mm=2.0)
    assert "pancreas" not in {r.organ for r in m.shapes}
    with pytest.raises(InputError) as slicer_error:  # Slicer's "right lung" is known (lung_right)
        ingest_masks([FIX / "slicerio" / "Segmentation.seg.nrrd"], tmp_path / "s")
    assert "'right lung'" not in str(slicer_error.value) and "--organs lung_left,lung_right" in str(slicer_error.value)
    with pytest.raises(InputError, match="flare22"):  # no names embedded: suggest presets
        ingest_masks([f], tmp_path / "c", spacing_mm=2.0)
    assert not (tmp_path / "c").exists()


def test_mask_folder_and_overlapping_seg_nrrd(tmp_path: Path) -> None:
    from anatomix.io import write_volume

    subj = tmp_path / "case7"
    subj.mkdir()
    arr = bank_phantom()
    for organ in ("liver", "kidney_left", "kidney_right"):
        write_volume(subj / f"{organ}.nii.gz", (arr == FL[organ]).astype(np.uint8), (SP,) * 3,
                     ORIGIN)
    m = ingest_masks([tmp_path], tmp_path / "bank", spacing_mm=2.0)
    assert [s.organs for s in m.subjects] == [["kidney_left", "kidney_right", "liver"]]
    lab = tmp_path / "slicer.json"
    lab.write_text(json.dumps({"right lung": "lung_right", "left lung": "lung_left",
                               "overlapping sphere": "lesion", "tissue": None, "ribs": None,
                               "cervical vertebral column": None,
                               "thoracic vertebral column": None,
                               "lumbar vertebral column": "vertebrae"}))
    with pytest.warns(BankWarning):
        m = ingest_masks([FIX / "slicerio" / "SegmentationOverlapping.seg.nrrd"],
                         tmp_path / "slicer", labels=lab, spacing_mm=3.0)
    assert sorted({r.organ for r in m.shapes}) == ["lesion", "lung_left", "lung_right",
                                                   "vertebrae"]
    b = ShapeBank.load(tmp_path / "slicer")
    assert _only(b, "lung_left").centroid_mm[0] < _only(b, "lung_right").centroid_mm[0]


# ---- bad inputs: every case lists its problem and writes nothing -----------------------------


def _bad_inputs(d: Path) -> dict[str, tuple[list[Path], str, dict]]:
    arr = bank_phantom()
    good = bank_write(d / "good.nii.gz", arr)
    junk = d / "junk.nii.gz"
    junk.write_bytes(b"\x00garbage")
    cut = d / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[:300])
    four = d / "four.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 4, 4), np.uint8)), str(four))
    flt = bank_write(d / "float.nii.gz", arr.astype(np.float32) + 0.25)
    extra = arr.copy()
    extra[0:3, 0:3, 30:33] = 99
    extra_f = bank_write(d / "extra.nii.gz", extra)
    empty = bank_write(d / "empty.nii.gz", np.zeros_like(arr))
    dup = d / "dup.nrrd"
    bank_write(dup, arr, "LPS")
    folder = d / "masks"
    folder.mkdir()
    from anatomix.io import write_volume

    write_volume(folder / "liver.nii.gz", (arr == FL["liver"]).astype(np.uint8), (SP,) * 3)
    write_volume(folder / "spleen.nii.gz", np.zeros(SHAPE, np.uint8), (SP,) * 3)
    return {
        "unreadable": ([junk], "junk.nii.gz: expected a readable image", {}),
        "truncated": ([cut], "cut.nii.gz: expected a readable image", {}),
        "4d": ([four], "4D", {}),
        "float": ([flt], "non-integral float values", {}),
        "missing_value": ([extra_f], "found values 99 not in the label table", {}),
        "empty_organ": ([folder], "empty organ(s): spleen", {"labels": "auto"}),
        "background": ([empty], "all-background", {}),
        "duplicate": ([good, dup], "duplicate subject", {}),
        "unknown_organ": ([good], "closest known", {"organs": ["livr"]}),
        "missing_path": ([d / "nope.nii"], "nothing at that path", {}),
    }


@pytest.fixture(scope="module")
def bank_bad_cases(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", ["unreadable", "truncated", "4d", "float", "missing_value",
                                  "empty_organ", "background", "duplicate", "unknown_organ",
                                  "missing_path"])
def test_bad_input(bank_bad_cases: dict, tmp_path: Path, case: str) -> None:
    inputs, message, kw = bank_bad_cases[case]
    kw = {"labels": "flare22", **kw}
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        ingest_masks(inputs, out, spacing_mm=2.0, **kw)
    assert message in str(e.value)
    assert "nothing was written" in str(e.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_all_problems_at_once(bank_bad_cases: dict, tmp_path: Path) -> None:
    cases = bank_bad_cases
    inputs = [p for k in ("unreadable", "4d", "float", "background", "missing_path")
              for p in cases[k][0]]
    with pytest.raises(InputError) as e:
        ingest_masks(inputs, tmp_path / "out", labels="flare22")
    assert len(e.value.problems) == 5
    assert not (tmp_path / "out").exists()


def test_existing_output_and_atomic_overwrite(tmp_path: Path, monkeypatch) -> None:
    f = bank_write(tmp_path / "a.nii.gz", bank_phantom())
    out = tmp_path / "bank"
    with pytest.warns(BankWarning):
        ingest_masks([f], out, labels="flare22", spacing_mm=2.0)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="--overwrite"):
        ingest_masks([f], out, labels="flare22", spacing_mm=3.0)
    calls = {"n": 0}
    real = Path.write_bytes

    def interrupted(self, data):  # Ctrl-C in the middle of writing the new bank
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    with pytest.warns(BankWarning), pytest.raises(KeyboardInterrupt):
        ingest_masks([f], out, labels="flare22", spacing_mm=3.0, overwrite=True)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "bank"]
    with pytest.warns(BankWarning):
        ingest_masks([f], out, labels="flare22", spacing_mm=3.0, overwrite=True)
    assert ShapeBank.load(out).spacing_mm == (3.0, 3.0, 3.0)
    notbank = tmp_path / "docs"
    notbank.mkdir()
    (notbank / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="without manifest.json"):
        ingest_masks([f], notbank, labels="flare22", overwrite=True)
    assert (notbank / "keep.txt").exists()


# ---- real data, CLI, embedded bank ----------------------------------------------------------


def test_real_fixture_end_to_end_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ts"
    res = runner.invoke(app, ["ingest-masks", str(TS / "example_seg_fast_force_split.nii.gz"),
                              "--out", str(out), "--spacing", "3",
                              "--organs", "liver,spleen,kidney_left,kidney_right,gallbladder"])
    assert res.exit_code == 0, res.output
    assert "truncated" in res.output
    b = ShapeBank.load(out, verify=True)
    liver, spleen = _only(b, "liver"), _only(b, "spleen")
    assert liver.centroid_mm[0] > spleen.centroid_mm[0]
    assert liver.truncated and "z+" in liver.truncated_faces
    assert not _only(b, "kidney_left").truncated and not _only(b, "gallbladder").truncated
    assert 900 < liver.volume_ml < 1400
    res = runner.invoke(app, ["bank", "info", str(out)])
    assert res.exit_code == 0 and "liver" in res.output and "T" in res.output and "verified" not in res.output
    res = runner.invoke(app, ["bank", "info", str(out), "--verify"])
    assert res.exit_code == 0 and f"all {len(b.manifest.shapes)} shape mask(s) decode and are non-empty" in res.output
    res = runner.invoke(app, ["ingest-masks", str(TS / "example_seg.nii.gz"), "--out",
                              str(tmp_path / "x"), "--labels", "flare22"])
    assert res.exit_code == 1 and "not in the label table" in res.output
    assert not (tmp_path / "x").exists()
    res = runner.invoke(app, ["bank", "info", str(tmp_path / "nothing")])
    assert res.exit_code == 1 and "manifest.json" in res.output


def test_embedded_default_bank() -> None:
    b = ShapeBank.default()
    assert ShapeBank.default() is b
    assert b.root == default_bank_path()
    b.verify()
    assert b.spacing_mm == (1.5, 1.5, 1.5)
    missing = set(ABDOMEN_13) - set(b.organs)
    assert missing == {"esophagus"}  # no Apache-2.0 fixture labels the esophagus
    assert "portal_splenic_vein" in b.organs
    assert _only(b, "liver").truncated
    assert _only(b, "liver").centroid_mm[0] > _only(b, "spleen").centroid_mm[0]
    assert sum(p.stat().st_size for p in b.root.rglob("*") if p.is_file()) < 20e6
    with pytest.raises(AnatomixError, match="it holds"):
        b.shapes("esophagus")


def test_embedded_bank_rebuilds_byte_identical(tmp_path: Path) -> None:
    organs = ("liver,spleen,kidney_left,kidney_right,gallbladder,stomach,pancreas,duodenum,"
              "esophagus,aorta,inferior_vena_cava,portal_splenic_vein,adrenal_gland_left,"
              "adrenal_gland_right,small_bowel,colon,urinary_bladder")
    inputs = [TS / n for n in ("example_seg_fast_force_split.nii.gz", "example_seg.nii.gz",
                               "example_seg_dicom.nii.gz", "example_seg_mr.nii.gz")]
    with pytest.warns(BankWarning):
        ingest_masks(inputs, tmp_path / "d", organs=organs.split(","),
                     truncated="prefer-complete")
    ref = default_bank_path()
    a = sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*")
               if p.is_file() and not p.relative_to(ref).as_posix().startswith("context/"))  # own bank: test_context
    b = sorted(p.relative_to(tmp_path / "d").as_posix() for p in (tmp_path / "d").rglob("*")
               if p.is_file())
    assert a == b
    for rel in a:
        assert (ref / rel).read_bytes() == (tmp_path / "d" / rel).read_bytes(), rel


def test_bank_errors(tmp_path: Path) -> None:
    with pytest.raises(AnatomixError, match="manifest.json"):
        ShapeBank.load(tmp_path)
    d = tmp_path / "b"
    shutil.copytree(default_bank_path(), d)
    rec = ShapeBank.load(d).manifest.shapes[0]
    (d / rec.file).write_bytes(b"xx")
    with pytest.raises(AnatomixError, match="SHA-256"):
        ShapeBank.load(d, verify=True)
    with pytest.raises(AnatomixError, match="SHA-256"):  # checked on every load, not only --verify
        ShapeBank.load(d)
    (d / "manifest.json").write_text("{}")
    with pytest.raises(AnatomixError, match="valid bank manifest"):
        ShapeBank.load(d)


def test_bank_module_has_no_global_rng() -> None:
    src = "".join(p.read_text() for p in Path(bank_mod.__file__).parent.glob("*.py"))
    assert "np.random." not in src and "import random" not in src


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "shapes/../../x.bits.z",
                                 "shapes\\liver\\s1.bits.z", "C:/x.bits.z", ""])
def test_manifest_file_paths_stay_inside_the_bank(tmp_path: Path, bad: str) -> None:
    dst = tmp_path / "bank"
    shutil.copytree(default_bank_path(), dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["shapes"][0]["file"] = bad
    (dst / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(bank_mod.BankError, match=r"shapes\.0\.file: expected a relative path"):
        ShapeBank.load(dst)
