"""io.py: orientation to RAS, embedded label names, input forms, atomic writing."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from anatomix import io
from anatomix.errors import InputError

FIX = Path(__file__).resolve().parent / "fixtures"
TS = FIX / "totalsegmentator"


def _ras_image(arr: np.ndarray, spacing, origin_ras) -> sitk.Image:
    """A SimpleITK image whose world geometry is the RAS (x, y, z) array given."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0])
    img.SetOrigin([-origin_ras[0], -origin_ras[1], origin_ras[2]])
    return img


def _phantom() -> np.ndarray:
    a = np.zeros((20, 16, 12), dtype=np.uint8)
    a[14:18, 4:8, 3:6] = 1  # subject's right (large x)
    a[2:5, 10:14, 7:10] = 2  # left, anterior, superior
    return a


@pytest.mark.parametrize("orient", ["RAS", "LPS", "PIR", "SLA", "LAS"])
def test_any_orientation_gives_the_same_ras_array(tmp_path: Path, orient: str) -> None:
    arr = _phantom()
    img = sitk.DICOMOrient(_ras_image(arr, (1.0, 2.0, 3.0), (-10.0, 5.0, 20.0)), orient)
    f = tmp_path / f"p_{orient}.nii.gz"
    sitk.WriteImage(img, str(f))
    v = io.read_label_map(f)
    assert np.array_equal(v.array, arr)
    assert v.spacing_mm == pytest.approx((1.0, 2.0, 3.0))
    assert v.origin_mm == pytest.approx((-10.0, 5.0, 20.0))
    assert np.allclose(v.affine, np.diag([1.0, 2.0, 3.0, 1.0]) + np.pad(
        np.array([[-10.0], [5.0], [20.0]]), ((0, 1), (3, 0))))


def test_real_ts_fixture_liver_right_of_spleen() -> None:
    v = io.read_label_map(TS / "example_seg_fast_force_split.nii.gz")
    assert v.names is not None and v.names[5] == "liver" and v.names[1] == "spleen"
    cx = {k: np.argwhere(v.array == k)[:, 0].mean() for k in (1, 2, 3, 5)}
    assert cx[5] > cx[1]  # liver (subject's right) has larger x than spleen
    assert cx[2] > cx[3]  # kidney_right x > kidney_left x


def test_las_and_lps_twins(tmp_path: Path) -> None:
    v = io.read_label_map(TS / "example_seg_dicom.nii.gz")  # stored LAS
    img = sitk.ReadImage(str(TS / "example_seg_dicom.nii.gz"))
    f = tmp_path / "twin.nrrd"
    sitk.WriteImage(sitk.DICOMOrient(img, "LPS"), str(f), True)
    w = io.read_label_map(f)
    assert np.array_equal(v.array, w.array)
    assert np.allclose(v.origin_mm, w.origin_mm)


def test_embedded_names_and_slicer_segments() -> None:
    names = io.read_embedded_names(TS / "example_seg_mr.nii.gz")
    assert names is not None and names[23] == "aorta" and names[12] == "esophagus"
    s = io.read_label_map(FIX / "slicerio" / "Segmentation.seg.nrrd")
    assert not s.layered and s.names is not None and s.names[5] == "right lung"
    o = io.read_label_map(FIX / "slicerio" / "SegmentationOverlapping.seg.nrrd")
    assert o.layered and o.array.ndim == 4 and o.names is not None
    sphere = [k for k, n in o.names.items() if n == "overlapping sphere"][0]
    assert (o.mask(sphere) & o.mask(7)).any()  # the sphere overlaps "tissue"


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_write_volume_roundtrip(tmp_path: Path, suffix: str) -> None:
    arr = _phantom().astype(np.int16)
    f = io.write_volume(tmp_path / f"out{suffix}", arr, (1.5, 2.0, 2.5), (3.0, -4.0, 5.0))
    v = io.read_label_map(f)
    assert np.array_equal(v.array, arr)
    assert v.origin_mm == pytest.approx((3.0, -4.0, 5.0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_write_volume_affine_is_ras_for_nibabel(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    f = io.write_volume(tmp_path / "a.nii.gz", _phantom(), (1.5, 2.0, 2.5), (3.0, -4.0, 5.0))
    img = nib.load(str(f))
    assert np.allclose(img.affine, np.array([[1.5, 0, 0, 3], [0, 2, 0, -4], [0, 0, 2.5, 5],
                                             [0, 0, 0, 1]]))
    assert np.array_equal(np.asarray(img.dataobj), _phantom())


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, bool])
@pytest.mark.parametrize("gzip_module", ["isal", "stdlib"])
def test_nii_gz_has_simpleitks_geometry_and_header_and_same_bytes_each_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: type, gzip_module: str) -> None:
    # write_volume writes .nii.gz itself (fast gzip): what SimpleITK reads back, and the header
    # fields readers use, are those of SimpleITK's own writer; no time stamp, so equal bytes
    import sys

    nib = pytest.importorskip("nibabel")
    if gzip_module == "stdlib":
        monkeypatch.setitem(sys.modules, "isal", None)  # import fails: the stdlib fallback
    else:
        pytest.importorskip("isal")
    arr = (_phantom() * 3).astype(dtype)
    spacing, origin = (1.5, 1.25, 2.5), (3.0, -4.0, 5.5)
    ours = io.write_volume(tmp_path / "ours.nii.gz", arr, spacing, origin)
    ref = tmp_path / "ref.nii.gz"
    sitk.WriteImage(io._volume_to_sitk(arr, spacing, origin), str(ref), True)
    a, b = sitk.ReadImage(str(ours)), sitk.ReadImage(str(ref))
    assert (a.GetSpacing(), a.GetOrigin(), a.GetDirection(), a.GetPixelID()) == \
        (b.GetSpacing(), b.GetOrigin(), b.GetDirection(), b.GetPixelID())
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    ha, hb = nib.load(str(ours)).header, nib.load(str(ref)).header
    for field in ("dim", "pixdim", "datatype", "bitpix", "qform_code", "sform_code", "quatern_b", "quatern_c",
                  "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z",
                  "xyzt_units", "intent_code", "regular", "magic"):
        assert np.array_equal(ha[field], hb[field]), field
    again = io.write_volume(tmp_path / "again.nii.gz", arr, spacing, origin)
    assert again.read_bytes() == ours.read_bytes()
    with gzip.open(ours) as f:  # a plain gzip stream any reader opens
        assert len(f.read()) == 352 + arr.size * np.dtype(np.uint8 if dtype is bool else dtype).itemsize


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
@pytest.mark.parametrize("spacing,origin", [((-1.0, 2.0, 3.0), (0, 0, 0)), ((0.0, 1.0, 1.0), (0, 0, 0)),
                                            ((1.0, float("nan"), 1.0), (0, 0, 0)), ((1, 1, 1), (0, float("inf"), 0))])
def test_write_volume_refuses_bad_geometry_in_every_format(tmp_path: Path, suffix: str, spacing, origin) -> None:
    # a negative spacing would silently flip the .nii.gz affine; every format refuses it alike
    with pytest.raises(InputError, match="out" + suffix.replace(".", r"\.") + ".*expected 3 finite"):
        io.write_volume(tmp_path / f"out{suffix}", np.zeros((2, 2, 2), np.uint8), spacing, origin)
    assert not list(tmp_path.iterdir())


def test_oblique_is_resampled_to_axis_aligned(tmp_path: Path) -> None:
    arr = np.zeros((20, 20, 20), dtype=np.uint8)
    arr[8:12, 8:12, 8:12] = 1
    img = _ras_image(arr, (1, 1, 1), (0, 0, 0))
    c, s = np.cos(0.2), np.sin(0.2)
    img.SetDirection([-c, s, 0, -s, -c, 0, 0, 0, 1])
    v = io.to_ras(img)
    assert v.array.ndim == 3 and int(v.array.sum()) == pytest.approx(64, rel=0.3)


def test_float_labels(tmp_path: Path) -> None:
    f = tmp_path / "f.nii.gz"
    sitk.WriteImage(_ras_image(_phantom().astype(np.float32), (1, 1, 1), (0, 0, 0)), str(f))
    v = io.read_label_map(f)
    assert np.issubdtype(v.array.dtype, np.integer) and np.array_equal(v.array, _phantom())
    g = tmp_path / "g.nii.gz"
    sitk.WriteImage(_ras_image(_phantom().astype(np.float32) * 0.5, (1, 1, 1), (0, 0, 0)), str(g))
    with pytest.raises(InputError, match="non-integral"):
        io.read_label_map(g)


def test_bad_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="junk.nii.gz.*unreadable"):
        io.read_label_map(junk)
    good = tmp_path / "good.nii.gz"
    sitk.WriteImage(_ras_image(_phantom(), (1, 1, 1), (0, 0, 0)), str(good))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(InputError, match="cut.nii.gz"):
        io.read_label_map(cut)
    four = tmp_path / "four.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.uint8), isVector=False),
                    str(four))
    with pytest.raises(InputError, match="4D"):
        io.read_label_map(four)


def test_mask_folder_and_find_label_maps(tmp_path: Path) -> None:
    subj = tmp_path / "data" / "subject1"
    subj.mkdir(parents=True)
    arr = _phantom()
    for name, k in (("liver", 1), ("kidney_left", 2)):
        io.write_volume(subj / f"{name}.nii.gz", (arr == k).astype(np.uint8), (1, 1, 1))
    single = tmp_path / "data" / "s2.nrrd"
    io.write_volume(single, arr, (1, 1, 1))
    found = io.find_label_maps([tmp_path / "data"])
    assert [p.name for p in found] == ["s2.nrrd", "subject1"]
    v = io.read_label_map(subj)
    assert v.layered and v.names == {1: "kidney_left", 2: "liver"}
    assert np.array_equal(v.mask(2), arr == 1)
    with pytest.raises(InputError, match="nothing at that path"):
        io.find_label_maps([tmp_path / "missing"])


def test_read_image_float32() -> None:
    v = io.read_image(TS / "example_ct.nii.gz")
    assert v.array.dtype == np.float32 and v.array.shape == (122, 101, 112)
    ref = io.read_image_sitk(TS / "example_seg_fast_force_split.nii.gz")
    back = io.resample_to_reference(io.read_label_map(TS / "example_seg_fast_force_split.nii.gz"),
                                    ref, nearest=True)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(ref))


def test_gzip_header_only_read() -> None:
    raw = io._nifti_extension_bytes(TS / "example_seg.nii.gz")
    assert b"LabelTable" in raw and len(raw) < len(gzip.open(TS / "example_seg.nii.gz").read())


def test_resample_to_reference_with_general_affine() -> None:
    """A (flipped, permuted, oblique) voxel->RAS affine lands each voxel at its world place."""
    ref = io.read_image_sitk(TS / "example_seg_fast_force_split.nii.gz")
    v = io.read_label_map(TS / "example_seg_fast_force_split.nii.gz")
    # the same data with axis 0 flipped and axes 1/2 swapped, described by its affine
    arr = np.ascontiguousarray(v.array[::-1].transpose(0, 2, 1))
    a = np.zeros((4, 4))
    a[3, 3] = 1.0
    a[0, 0] = -v.spacing_mm[0]
    a[2, 1] = v.spacing_mm[2]
    a[1, 2] = v.spacing_mm[1]
    a[:3, 3] = v.origin_mm
    a[0, 3] += (v.array.shape[0] - 1) * v.spacing_mm[0]
    back = io.resample_to_reference(io.Volume(arr, (1.0, 1.0, 1.0)), ref, nearest=True, affine_ras=a)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(ref))
    # oblique (10 degrees about z): most voxels still land on the same label
    t = np.deg2rad(10.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])
    ob = v.affine.copy()
    ob[:3, :3] = rot @ ob[:3, :3]
    img = io.resample_to_reference(v, ref, nearest=True, affine_ras=ob)
    assert img.GetSize() == ref.GetSize() and img.GetPixelID() == sitk.sitkUInt8
    assert not np.array_equal(sitk.GetArrayViewFromImage(img), sitk.GetArrayViewFromImage(ref))


def test_atomic_write_gives_usual_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o027)
    try:
        p = io.atomic_write(tmp_path / "a" / "x.txt", lambda t: t.write_text("hi"))
    finally:
        os.umask(umask)
    assert p.read_text() == "hi" and (p.stat().st_mode & 0o777) == 0o640
    assert [f.name for f in p.parent.iterdir()] == ["x.txt"]


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nrrd", "v.mha", "v.mhd"])
def test_write_volume_leaves_no_temp_files_and_normal_permissions(tmp_path, name):
    import os
    import stat

    from anatomix.io import read_label_map, write_volume

    a = np.zeros((4, 5, 6), dtype=np.uint8)
    a[1:3, 2:4, 3:5] = 2
    write_volume(tmp_path / name, a, (1.0, 2.0, 3.0), (5.0, 6.0, 7.0))
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]
    umask = os.umask(0)
    os.umask(umask)
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask
    back = read_label_map(tmp_path / name)
    assert np.array_equal(back.array, a)
