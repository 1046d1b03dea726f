"""Reading and writing medical images: the only module of anatomix that touches image files.

Everything inside anatomix works on numpy arrays in **(x, y, z) index order, RAS+ orientation**:
array axis 0 increases toward the subject's Right, axis 1 toward Anterior, axis 2 toward
Superior (the NIfTI / nibabel world convention). Files come in any orientation (RAS, LPS,
permuted axes, header-stripped); :func:`to_ras` converts once, here.

SimpleITK works in LPS world coordinates (DICOM convention); the RAS world point of an LPS
point ``(x, y, z)`` is ``(-x, -y, z)``. A :class:`Volume` keeps only an axis-aligned RAS grid
(spacing and origin); oblique inputs are resampled onto the nearest axis-aligned grid.

Label names embedded in files are read too: TotalSegmentator's NIfTI header extension
(CIFTI-style XML ``<LabelTable>`` with CDATA names) and 3D Slicer ``.seg.nrrd`` segments
(``SegmentN_Name``/``SegmentN_LabelValue``/``SegmentN_Layer``). A ``.seg.nrrd`` with
overlapping layers, and a folder of per-structure binary masks, are returned as a *layered*
:class:`LabeledVolume` (array of shape (x, y, z, layers)) whose values are renumbered 1..N so
that each value names one segment across all layers; use :meth:`LabeledVolume.mask`.
"""

# size: the only module that reads and writes medical images (NIfTI, NRRD, .seg.nrrd, MHA, DICOM;
# orientation, resampling, atomic writes), as DESIGN.md asks: one owner of image I/O by design.

from __future__ import annotations

import gzip
import os
import re
import struct
import tempfile
from zlib import error as zlib_error
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from anatomix.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "atomic_write",
    "atomic_write_text",
    "LabeledVolume",
    "Volume",
    "find_label_maps",
    "is_dicom_folder",
    "is_mask_folder",
    "read_embedded_names",
    "read_image",
    "read_image_sitk",
    "resample_label_map",
    "read_label_map",
    "resample_to_reference",
    "to_ras",
    "write_volume",
]

#: Suffixes of image files anatomix reads and writes (DICOM series are folders).
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: Suffixes read as label maps (longest first so ".seg.nrrd" wins over ".nrrd").
LABEL_SUFFIXES: tuple[str, ...] = (".seg.nrrd", *IMAGE_SUFFIXES)
#: Surface-mesh suffixes, read by :mod:`anatomix.mesh` (one organ per file).
MESH_SUFFIXES: tuple[str, ...] = (".stl", ".obj", ".ply", ".off", ".vtk", ".glb", ".gltf")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D array on an axis-aligned RAS+ grid.

    Attributes:
        array: (x, y, z) array; axis i increases along world +x (Right), +y (Anterior), +z (Superior).
        spacing_mm: voxel size along x, y, z in mm.
        origin_mm: RAS world position (mm) of the centre of voxel [0, 0, 0].
    """

    array: np.ndarray
    spacing_mm: tuple[float, ...]
    origin_mm: tuple[float, ...] = (0.0, 0.0, 0.0)

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-RAS-world matrix (diagonal spacing, translation = origin)."""
        a = np.eye(4)
        a[0, 0], a[1, 1], a[2, 2] = self.spacing_mm
        a[:3, 3] = self.origin_mm
        return a

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


@dataclass(frozen=True, eq=False)
class LabeledVolume(Volume):
    """An integer label map on a RAS grid, with the label names embedded in the file if any.

    Attributes:
        names: label value -> name as written in the file (not yet mapped to the anatomix
            vocabulary), or None when the file carries no names.
        layered: True when ``array`` has a 4th axis of layers (overlapping segments). Values
            are then unique across layers; use :meth:`mask` and :meth:`values`.
    """

    names: dict[int, str] | None = None
    layered: bool = False
    notes: tuple[str, ...] = field(default=())

    def values(self) -> list[int]:
        """Sorted non-zero label values present in the array."""
        v = np.unique(self.array)
        return [int(x) for x in v if x != 0]

    def mask(self, value: int) -> np.ndarray:
        """Boolean (x, y, z) mask of one label value (any layer)."""
        m = self.array == value
        return m.any(axis=3) if self.layered else m


def _problem(path: Path | str | os.PathLike[str], expected: str, found: str, todo: str = "") -> str:
    tail = f"; {todo}" if todo else ""
    return f"{path}: expected {expected}, found {found}{tail}"


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for s in LABEL_SUFFIXES:
        if name.endswith(s):
            return s
    return None


def _stem(path: Path) -> str:
    s = _suffix(path)
    return path.name[: -len(s)] if s else path.stem


# --------------------------------------------------------------------------------------------
# reading


#: Voxel size accepted on input (mm, each axis): SimpleITK substitutes 1 mm for a zero/NaN
#: NIfTI pixdim, so the header is checked too (:func:`_check_nifti_header`).
SPACING_RANGE_MM = (0.01, 100.0)
#: Largest input image read (voxels); 1 G voxels is a 1 GB uint8 label map.
MAX_VOXELS = 1 << 30


def _nifti_header_fields(head: bytes) -> tuple[str, int, int, list[float], int, int] | None:
    """(endian, datatype, vox_offset, pixdim[1:4], n_voxels, bitpix) of a NIfTI-1/2 header, or None."""
    for e in ("<", ">"):
        hsize = struct.unpack(e + "i", head[:4])[0]
        if hsize == 348:
            dims = struct.unpack(e + "8h", head[40:56])
            dtype = struct.unpack(e + "h", head[70:72])[0]
            bitpix = struct.unpack(e + "h", head[72:74])[0]
            pix = list(struct.unpack(e + "8f", head[76:108]))
            off = int(struct.unpack(e + "f", head[108:112])[0])
            break
        if hsize == 540 and len(head) >= 540:
            dtype = struct.unpack(e + "h", head[12:14])[0]
            bitpix = struct.unpack(e + "h", head[14:16])[0]
            dims = struct.unpack(e + "8q", head[16:80])
            pix = list(struct.unpack(e + "8d", head[104:168]))
            off = int(struct.unpack(e + "q", head[168:176])[0])
            break
    else:
        return None
    n = 1
    for k in range(1, min(max(int(dims[0]), 1), 7) + 1):
        n *= max(int(dims[k]), 1)
    return e, int(dtype), max(off, hsize), pix[1:4], n, int(bitpix)


#: NIfTI datatype codes of floating-point voxels -> numpy dtype (without byte order).
_NIFTI_FLOATS = {16: "f4", 64: "f8", 1536: "f16"}


def _check_nifti_header(p: Path) -> None:
    """pixdim from the raw header (not SimpleITK's 1 mm substitute); NaN/Inf float voxels.

    SimpleITK reads NaN voxels of a float NIfTI as 0, so float data are scanned here (in
    chunks, streaming through gzip).

    Raises:
        InputError: pixdim zero/negative/NaN/out of range, or NaN/Inf voxels.
    """
    gz = p.name.lower().endswith(".gz")
    with (gzip.open(p, "rb") if gz else open(p, "rb")) as f:
        head = f.read(544)
        fields = _nifti_header_fields(head)
        if fields is None:
            return
        endian, dtype, off, pix, n, _bitpix = fields
        lo, hi = SPACING_RANGE_MM
        if not all(np.isfinite(s) and lo <= abs(s) <= hi for s in pix):
            raise InputError([_problem(p, f"voxel sizes (NIfTI pixdim[1:4]) of {lo:g} to "
                                       f"{hi:g} mm", f"{[float(s) for s in pix]}",
                                       "fix the header (e.g. nibabel: img.header.set_zooms); "
                                       "SimpleITK would silently use 1 mm")])
        if dtype not in _NIFTI_FLOATS:
            return
        item = np.dtype(endian + _NIFTI_FLOATS[dtype])
        f.seek(off)
        left = n * item.itemsize
        chunk = (1 << 22) // item.itemsize * item.itemsize
        while left > 0:
            buf = f.read(min(chunk, left))
            if not buf:
                return  # truncated: reported by _check_nifti_complete
            buf = buf[: len(buf) // item.itemsize * item.itemsize]
            if not np.isfinite(np.frombuffer(buf, dtype=item)).all():
                raise InputError([_problem(p, "finite voxel values", "NaN or infinite values "
                                           "(SimpleITK would read NaN as 0)",
                                           "this looks like an image or a damaged label map")])
            left -= len(buf)


def _check_geometry(p: Path, spacing: Sequence[float], size: Sequence[int]) -> None:
    """Spacing finite and within :data:`SPACING_RANGE_MM`, at most :data:`MAX_VOXELS` voxels."""
    lo, hi = SPACING_RANGE_MM
    sp = [float(s) for s in spacing]
    if not all(np.isfinite(s) and lo <= s <= hi for s in sp):
        raise InputError([_problem(p, f"voxel sizes of {lo:g} to {hi:g} mm", f"{sp}",
                                   "fix the file's spacing")])
    n = int(np.prod([int(s) for s in size], dtype=object))
    if n > MAX_VOXELS:
        raise InputError([_problem(p, f"at most {MAX_VOXELS:,} voxels", f"{n:,} "
                                   f"({' x '.join(str(int(s)) for s in size)})",
                                   "crop or downsample the image first")])


def read_image_sitk(path: str | os.PathLike) -> "sitk.Image":
    """Read an image file (or a DICOM series folder) with SimpleITK, in its own geometry.

    Raises:
        InputError: missing, unreadable or truncated file.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.exists():
        raise InputError([_problem(p, "an existing file or folder", "nothing at that path")])
    try:
        if p.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(p))
            if not series:
                raise InputError([_problem(p, "a DICOM series folder", "no DICOM series")])
            if len(series) > 1:
                raise InputError([_problem(p, "one DICOM series", f"{len(series)} series",
                                           "give one series folder per subject")])
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(p), series[0]))
            img = reader.Execute()
            _check_geometry(p, img.GetSpacing(), img.GetSize())
            return img
        if _suffix(p) in (".nii", ".nii.gz"):
            try:
                _check_nifti_header(p)
            except (OSError, EOFError, zlib_error, struct.error):
                pass  # unreadable: SimpleITK's own error below says so
        info = sitk.ImageFileReader()
        info.SetFileName(str(p))
        info.ReadImageInformation()  # header only: geometry checked before allocating
        _check_geometry(p, info.GetSpacing(), info.GetSize())
        img = info.Execute()
        if _suffix(p) in (".nii", ".nii.gz"):
            _check_nifti_complete(p)
        if img.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64) and \
                not np.isfinite(sitk.GetArrayViewFromImage(img)).all():
            raise InputError([_problem(p, "finite voxel values", "NaN or infinite values",
                                       "this looks like an image or a damaged label map")])
        return img
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        detail = msg[-1] if msg else "unknown error"
        detail = detail.split("sitk::ERROR:")[-1].strip()
        raise InputError([_problem(p, "a readable image (NIfTI, NRRD, MHA/MHD, DICOM)",
                                   f"unreadable or truncated file ({detail[:160]})",
                                   "re-export or re-download the file")]) from None


def _nifti_expected_bytes(head: bytes) -> int | None:
    """vox_offset + data size from a NIfTI-1/2 header, or None if it is not one."""
    fields = _nifti_header_fields(head)
    if fields is None:
        return None
    _endian, _dtype, off, _pix, n, bitpix = fields
    return off + n * max(bitpix, 8) // 8


def _check_nifti_complete(p: Path) -> None:
    """SimpleITK reads a truncated NIfTI without complaint (zero-filled): check the size."""
    gz = p.name.lower().endswith(".gz")
    with (gzip.open(p, "rb") if gz else open(p, "rb")) as f:
        head = f.read(544)
    need = _nifti_expected_bytes(head)
    if need is None:
        return
    if not gz:
        have = p.stat().st_size
    else:
        with open(p, "rb") as f:  # gzip trailer: uncompressed size mod 2**32
            f.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", f.read(4))[0]
        if isize == need % (1 << 32):
            return
        have = 0
        try:  # trailer disagrees (or multi-member file): decompress to be sure
            with gzip.open(p, "rb") as f:
                while chunk := f.read(1 << 22):
                    have += len(chunk)
        except (EOFError, OSError, zlib_error):
            raise RuntimeError(f"sitk::ERROR: compressed stream ends early after {have} bytes "
                               f"of {need}") from None
    if have < need:
        raise RuntimeError(f"sitk::ERROR: file holds {have} bytes of the {need} its header "
                           "announces")


def _axis_map(direction_ras: np.ndarray) -> tuple[list[int], list[bool], bool]:
    """For each world axis: which array axis runs along it, whether it runs backwards, oblique?"""
    d = direction_ras
    perm = [-1, -1, -1]
    flip = [False, False, False]
    oblique = False
    for j in range(3):  # array axis j = column j
        col = d[:, j]
        w = int(np.argmax(np.abs(col)))
        if abs(abs(col[w]) - 1.0) > 1e-4:
            oblique = True
        if perm[w] != -1:
            oblique = True
            w = [k for k in range(3) if perm[k] == -1][0]
        perm[w] = j
        flip[w] = col[w] < 0
    return perm, flip, oblique


def _ras_grid_of(img: "sitk.Image", spacing_mm: Sequence[float] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An axis-aligned RAS grid covering ``img``'s voxel centres: (origin_ras, spacing, size)."""
    size = np.array(img.GetSize()[:3])
    corner_list = []
    for c in np.ndindex(2, 2, 2):
        idx = [int(c[k] * (size[k] - 1)) for k in range(3)]
        corner_list.append(np.array(img.TransformIndexToPhysicalPoint(idx)) * np.array([-1, -1, 1]))
    corners = np.array(corner_list)
    lo, hi = corners.min(0), corners.max(0)
    if spacing_mm is None:
        d = np.array(img.GetDirection()).reshape(3, 3)
        sp = np.array(img.GetSpacing()[:3])
        spacing = np.array([sp[int(np.argmax(np.abs(d[k, :])))] for k in range(3)])
    else:
        spacing = np.asarray(spacing_mm, dtype=float)
    n = np.floor((hi - lo) / spacing + 1e-6).astype(int) + 1
    return lo, spacing, n


def _resample_to_ras_grid(img: "sitk.Image", origin_ras: np.ndarray, spacing: np.ndarray,
                          size: np.ndarray, nearest: bool) -> "sitk.Image":
    import SimpleITK as sitk

    ref = sitk.Image([int(s) for s in size], img.GetPixelID(), img.GetNumberOfComponentsPerPixel())
    ref.SetSpacing([float(s) for s in spacing])
    ref.SetOrigin([float(-origin_ras[0]), float(-origin_ras[1]), float(origin_ras[2])])
    ref.SetDirection([-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0])
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(img, ref, sitk.Transform(), interp, 0.0)


def _sitk_to_array_xyz(img: "sitk.Image") -> np.ndarray:
    import SimpleITK as sitk

    a = sitk.GetArrayFromImage(img)  # (z, y, x[, c])
    return np.ascontiguousarray(np.moveaxis(a, (0, 1, 2), (2, 1, 0))) if a.ndim == 3 else \
        np.ascontiguousarray(a.transpose(2, 1, 0, 3))


def to_ras(img: "sitk.Image", nearest: bool = True) -> Volume:
    """Convert a SimpleITK image to a :class:`Volume` on an axis-aligned RAS+ grid.

    Axis permutations and flips are exact (no interpolation); an oblique direction matrix is
    resampled (nearest neighbour if ``nearest``, else linear) onto the axis-aligned RAS grid
    with the input's spacing that covers the same voxel centres.

    Args:
        img: a 3D SimpleITK image (vector pixels become a trailing axis).
        nearest: interpolation for oblique inputs (True for label maps).

    Returns:
        Volume with array (x, y, z[, c]) whose axes increase along world +x, +y, +z. The array
        is not necessarily C-contiguous (it is a transposed view of the file's layout); use
        ``np.ascontiguousarray`` where C order matters.
    """
    import SimpleITK as sitk

    if img.GetDimension() != 3:
        raise InputError([_problem("<image>", "a 3D image", f"{img.GetDimension()}D image")])
    d_ras = _LPS_TO_RAS @ np.array(img.GetDirection()).reshape(3, 3)
    perm, flip, oblique = _axis_map(d_ras)
    if oblique:
        lo, sp, n = _ras_grid_of(img)
        img = _resample_to_ras_grid(img, lo, sp, n, nearest)
        return Volume(_sitk_to_array_xyz(img), tuple(float(s) for s in sp),
                      tuple(float(o) for o in lo))
    # Work on SimpleITK's C-ordered (k, j, i[, c]) array: flip there (one streaming copy only
    # when something is flipped), then transpose to (x, y, z) as a view (no copy). The result is
    # therefore often Fortran-ordered; values and shape are what matter.
    raw = sitk.GetArrayFromImage(img)
    size = img.GetSize()
    spacing_in = img.GetSpacing()
    corner = [0, 0, 0]  # image index that becomes voxel [0, 0, 0]
    idx_flip = [False, False, False]
    for w in range(3):
        j = perm[w]
        if flip[w]:
            corner[j] = size[j] - 1
            idx_flip[j] = True
    if any(idx_flip):
        raw = np.ascontiguousarray(raw[tuple(slice(None, None, -1) if idx_flip[2 - k] else
                                             slice(None) for k in range(3))])
    trailing = list(range(3, raw.ndim))
    a = raw.transpose([2, 1, 0] + trailing)  # image index axes i, j, k
    a = a.transpose([perm[0], perm[1], perm[2]] + trailing)
    p = np.array(img.TransformIndexToPhysicalPoint(corner)) * np.array([-1, -1, 1])
    spacing = tuple(float(spacing_in[perm[w]]) for w in range(3))
    del sitk
    return Volume(a, spacing, tuple(float(x) for x in p))


# ---- embedded label names -------------------------------------------------------------------

_LABEL_RE = re.compile(
    rb"<Label\b[^>]*?\bKey\s*=\s*\"(-?\d+)\"[^>]*>\s*(?:<!\[CDATA\[(.*?)\]\]>|([^<]*))\s*</Label>",
    re.S,
)


def _nifti_extension_bytes(path: Path, limit: int = 8 << 20) -> bytes:
    """Raw bytes of all NIfTI-1/2 header extensions (b'' if none). Reads only the header."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(544)
        if len(head) < 352:
            return b""
        for endian in ("<", ">"):
            hsize = struct.unpack(endian + "i", head[:4])[0]
            if hsize in (348, 540):
                break
        else:
            return b""
        if hsize == 348:
            vox_offset = int(struct.unpack(endian + "f", head[108:112])[0])
        else:
            vox_offset = int(struct.unpack(endian + "q", head[168:176])[0])
        if len(head) < hsize + 4 or head[hsize] == 0:
            return b""
        vox_offset = min(max(vox_offset, hsize + 4), limit)
        rest = head + f.read(max(0, vox_offset - len(head)))
    out = []
    pos = hsize + 4
    while pos + 8 <= len(rest):
        esize, _ecode = struct.unpack(endian + "ii", rest[pos:pos + 8])
        if esize < 8:
            break
        out.append(rest[pos + 8:pos + esize])
        pos += esize
    return b"".join(out)


def read_embedded_names(path: str | os.PathLike, img: "sitk.Image | None" = None
                        ) -> dict[int, str] | None:
    """Label names stored in a file: TotalSegmentator NIfTI extension or .seg.nrrd segments.

    Returns:
        value -> name as written in the file, or None when the file names no labels. For a
        multi-layer .seg.nrrd the values are those of :func:`read_label_map` (renumbered).
    """
    p = Path(path)
    s = _suffix(p)
    if s in (".nii", ".nii.gz"):
        try:
            raw = _nifti_extension_bytes(p)
        except (OSError, EOFError, struct.error):
            return None
        names: dict[int, str] = {}
        for key, cdata, text in _LABEL_RE.findall(raw):
            name = (cdata or text).decode("utf-8", "replace").strip()
            if name and int(key) != 0:
                names[int(key)] = name
        return names or None
    if s in (".seg.nrrd", ".nrrd") and img is not None:
        segs = _slicer_segments(img)
        if segs:
            return {v: n for v, n in zip(_renumber_segments(segs), (sg[0] for sg in segs))} \
                if _is_layered(img, segs) else {sg[2]: sg[0] for sg in segs}
    return None


def _slicer_segments(img: "sitk.Image") -> list[tuple[str, int, int]]:
    """(name, layer, label value) of each Slicer segment, in segment order."""
    keys = set(img.GetMetaDataKeys())
    out = []
    i = 0
    while f"Segment{i}_Name" in keys or f"Segment{i}_ID" in keys:
        name = img.GetMetaData(f"Segment{i}_Name") if f"Segment{i}_Name" in keys else \
            img.GetMetaData(f"Segment{i}_ID")
        layer = int(img.GetMetaData(f"Segment{i}_Layer")) if f"Segment{i}_Layer" in keys else 0
        value = int(img.GetMetaData(f"Segment{i}_LabelValue")) \
            if f"Segment{i}_LabelValue" in keys else 1
        out.append((name.strip(), layer, value))
        i += 1
    return out


def _is_layered(img: "sitk.Image", segs: list[tuple[str, int, int]]) -> bool:
    return img.GetNumberOfComponentsPerPixel() > 1


def _renumber_segments(segs: list[tuple[str, int, int]]) -> list[int]:
    return list(range(1, len(segs) + 1))


def read_label_map(path: str | os.PathLike) -> LabeledVolume:
    """Read a label map (file, DICOM series folder or per-structure mask folder) as RAS.

    Args:
        path: .nii/.nii.gz/.nrrd/.seg.nrrd/.mha/.mhd file, a DICOM-series folder, or a folder of
            per-structure binary masks named by organ (``liver.nii.gz``, ...): one subject.

    Returns:
        LabeledVolume with integer array (x, y, z) (or (x, y, z, layers) when ``layered``) and
        the names embedded in the file, if any. Float files whose values are all integral are
        converted to integers.

    Raises:
        InputError: unreadable/truncated file, 4D image, non-integral float values, masks that
            do not share one grid.
    """
    p = Path(path)
    if p.is_dir() and is_mask_folder(p):
        return _read_mask_folder(p)
    img = read_image_sitk(p)
    if img.GetDimension() != 3:
        raise InputError([_problem(p, "a 3D label map", f"a {img.GetDimension()}D image "
                                   f"of size {img.GetSize()}",
                                   "split time series/channels into one 3D file per subject")])
    segs = _slicer_segments(img) if _suffix(p) in (".seg.nrrd", ".nrrd") else []
    ncomp = img.GetNumberOfComponentsPerPixel()
    if ncomp > 1 and not segs:
        raise InputError([_problem(p, "a scalar 3D label map", f"{ncomp} values per voxel (4D)",
                                   "give one 3D label map per subject")])
    vol = to_ras(img, nearest=True)
    arr = _integral(vol.array, p)
    if ncomp > 1:
        # overlapping Slicer layers: renumber (layer, value) -> 1..N across layers
        out = np.zeros(arr.shape, dtype=np.uint16 if len(segs) > 255 else np.uint8)
        layer_names: dict[int, str] = {}
        for k, (name, layer, value) in enumerate(segs, start=1):
            if layer >= ncomp:
                continue
            out[..., layer][arr[..., layer] == value] = k
            layer_names[k] = name
        return LabeledVolume(out, vol.spacing_mm, vol.origin_mm, names=layer_names, layered=True)
    names: dict[int, str] | None = ({value: name for name, _layer, value in segs} if segs
                                    else read_embedded_names(p))
    return LabeledVolume(arr, vol.spacing_mm, vol.origin_mm, names=names or None)


def _integral(a: np.ndarray, p: Path) -> np.ndarray:
    if a.dtype == bool:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.signedinteger) and a.size and int(a.min()) < 0:
            raise InputError([_problem(p, "non-negative label values", f"minimum {int(a.min())}",
                                       "label maps use 0 for background and positive values")])
        return a
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        if not finite.all():
            raise InputError([_problem(p, "integral label values", "NaN or infinite values",
                                       "this looks like an image, not a label map")])
        r = np.rint(a)
        bad = np.abs(a - r) > 1e-3
        if bad.any():
            ex = np.unique(a[bad])[:5]
            raise InputError([_problem(p, "integral label values (a label map)",
                                       f"{int(bad.sum())} non-integral float values, e.g. "
                                       f"{', '.join(f'{x:g}' for x in ex)}",
                                       "give the label map, not an image or probability map")])
        lo, hi = float(r.min()), float(r.max())
        if lo < 0:
            raise InputError([_problem(p, "non-negative label values", f"minimum {lo:g}")])
        if hi >= 2**31:
            raise InputError([_problem(p, "label values below 2^31", f"maximum {hi:g}",
                                       "give the label map, not an image")])
        dt = np.uint8 if hi < 256 else np.uint16 if hi < 65536 else np.int64
        return r.astype(dt)
    raise InputError([_problem(p, "an integer label map", f"pixel type {a.dtype}")])


def is_mask_folder(path: Path) -> bool:
    """True when ``path`` is a folder of per-structure binary masks named by organ.

    The rule: it holds at least one label file, no sub-folders with label files, and every
    file's name (without suffix) is a known organ name of :mod:`anatomix.labels`.
    """
    from anatomix.labels import UnknownOrganError, canonical_organ

    if not path.is_dir():
        return False
    files = [f for f in sorted(path.iterdir()) if f.is_file() and _suffix(f)]
    if not files or any(f.is_dir() for f in path.iterdir()):
        return False
    for f in files:
        try:
            canonical_organ(_stem(f))
        except UnknownOrganError:
            return False
    return True


def _read_mask_folder(folder: Path) -> LabeledVolume:
    """Combine per-structure binary masks into one layered label map (value k = k-th file)."""
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and _suffix(f)]
    problems: list[str] = []
    vols: list[tuple[str, np.ndarray]] = []
    ref: Volume | None = None
    for f in files:
        try:
            img = read_image_sitk(f)
            if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
                problems.append(_problem(f, "a 3D binary mask", f"{img.GetDimension()}D image "
                                         f"with {img.GetNumberOfComponentsPerPixel()} component(s)"))
                continue
            v = to_ras(img, nearest=True)
            a = _integral(v.array, f)
        except InputError as e:
            problems.extend(e.problems)
            continue
        if ref is None:
            ref = v
        elif a.shape != ref.array.shape or not np.allclose(v.spacing_mm, ref.spacing_mm, atol=1e-3) \
                or not np.allclose(v.origin_mm, ref.origin_mm, atol=1e-2):
            problems.append(_problem(f, f"the grid of {files[0].name} ({ref.array.shape})",
                                     f"grid {a.shape}", "all masks of a subject share one grid"))
            continue
        vols.append((_stem(f), a != 0))
    if problems:
        raise InputError(problems)
    assert ref is not None
    layers: list[np.ndarray] = []
    names: dict[int, str] = {}
    dtype = np.uint8 if len(vols) < 256 else np.uint16
    for k, (name, m) in enumerate(vols, start=1):
        names[k] = name
        for layer in layers:  # first layer where the mask does not overlap
            if not (layer[m] != 0).any():
                layer[m] = k
                break
        else:
            layer = np.zeros(m.shape, dtype=dtype)
            layer[m] = k
            layers.append(layer)
    if not layers:
        layers.append(np.zeros(ref.array.shape, dtype=dtype))
    return LabeledVolume(np.stack(layers, axis=3), ref.spacing_mm, ref.origin_mm, names=names,
                         layered=True)


def read_image(path: str | os.PathLike) -> Volume:
    """Read an intensity image as float32 on its RAS grid (oblique inputs: linear resampling)."""
    img = read_image_sitk(path)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError([_problem(path, "a scalar 3D image", f"{img.GetDimension()}D image with "
                                   f"{img.GetNumberOfComponentsPerPixel()} component(s)")])
    v = to_ras(img, nearest=False)
    return Volume(v.array.astype(np.float32, copy=False), v.spacing_mm, v.origin_mm)


def resample_to_reference(volume: Volume, reference: "sitk.Image", nearest: bool, *,
                          affine_ras: np.ndarray | None = None) -> "sitk.Image":
    """Resample a RAS :class:`Volume` into ``reference``'s grid (e.g. to write a prediction
    back in the input image's own geometry).

    Args:
        volume: data on a RAS grid.
        reference: the target geometry (any orientation).
        nearest: nearest-neighbour (labels) or linear (images).
        affine_ras: 4x4 voxel -> RAS world mm matrix of ``volume.array`` when its grid is not
            axis-aligned (oblique or permuted axes, e.g. a MONAI tensor's affine); it replaces
            ``volume.spacing_mm`` / ``origin_mm``.

    Returns:
        ``sitk.Image`` on the reference grid, with the pixel type of ``volume.array`` (bool as uint8).
    """
    import SimpleITK as sitk

    img = _volume_to_sitk(volume.array, volume.spacing_mm, volume.origin_mm, affine_ras=affine_ras)
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(img, reference, sitk.Transform(), interp, 0.0, img.GetPixelID())


def _storable(array: np.ndarray) -> np.ndarray:
    """The array in a dtype every output format stores: bool as uint8, float16 as float32."""
    a = np.asarray(array)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype == np.float16:
        return a.astype(np.float32)
    return a


def _volume_to_sitk(array: np.ndarray, spacing_mm: Sequence[float],
                    origin_mm: Sequence[float], affine_ras: np.ndarray | None = None) -> "sitk.Image":
    import SimpleITK as sitk

    a = _storable(array)
    img = sitk.GetImageFromArray(np.ascontiguousarray(a.transpose(2, 1, 0)))
    if affine_ras is not None:
        # RAS -> LPS: world x and y reversed; columns of the 3x3 are the voxel axes (spacing x direction)
        m = np.asarray(affine_ras, dtype=np.float64)
        lps = np.diag([-1.0, -1.0, 1.0]) @ m[:3, :3]
        spacing = np.linalg.norm(lps, axis=0)
        img.SetSpacing([float(x) for x in spacing])
        img.SetDirection([float(d) for d in (lps / spacing).flatten()])
        img.SetOrigin([float(-m[0, 3]), float(-m[1, 3]), float(m[2, 3])])
        return img
    img.SetSpacing([float(s) for s in spacing_mm])
    # RAS axes expressed in LPS world: x and y reversed
    img.SetDirection([-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0])
    o = [float(x) for x in origin_mm]
    img.SetOrigin([-o[0], -o[1], o[2]])
    return img


def _file_mode() -> int:
    """Mode a new file gets under the current umask (0o666 & ~umask), read without changing it
    where /proc allows (the os.umask round trip is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], suffix: str = ".tmp") -> Path:
    """Write a file atomically: ``write(tmp)`` fills a temp file beside ``path``, then
    ``os.replace`` moves it into place; on any failure the temp file is removed and ``path`` is
    left as it was. The one atomic-write helper of anatomix (images, JSON, YAML, figures).
    The file gets the usual permissions of a new file (0o666 minus the umask), not the
    temp file's 0o600.

    Args:
        path: the final file (its folder is created).
        write: called with the temp file's path; must write the whole content there.
        suffix: temp file suffix (temp files are dot-files: ``.<name>.<random><suffix>``);
            give the real one (``.nii.gz``) when the writer picks the format by suffix.

    Returns:
        The path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix, dir=p.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _file_mode())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically (see :func:`atomic_write`)."""
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, write)


def _nifti_gz_bytes(array: np.ndarray, spacing_mm: Sequence[float], origin_mm: Sequence[float]) -> bytes:
    """The .nii.gz file of :func:`write_volume`: the header SimpleITK writes for the same image
    (qform and sform scanner, RAS affine diag(spacing) + origin, mm), gzip with ISA-L's igzip.

    Why not SimpleITK: its gzip (zlib, a fixed level) costs about 30 ms for a 96^3 int16 CT, the
    largest share of writing a case; igzip level 2 compresses it in about 5 ms (7 ms with the
    header and serialisation) into a file 2 % larger. The gzip
    header's time stamp is 0 (as SimpleITK's), so the same array gives the same bytes. Without
    the ``isal`` package, the standard library's zlib at level 1.
    """
    import nibabel as nib

    a = _storable(array)
    affine = np.diag([*(float(v) for v in spacing_mm), 1.0])
    affine[:3, 3] = [float(v) for v in origin_mm]
    img = nib.Nifti1Image(a, affine, dtype=a.dtype)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4:] = 0.0  # no time axis (nibabel writes 1)
    img.header["regular"] = b"r"  # the ANALYZE field as SimpleITK sets it
    raw = img.to_bytes()
    try:
        from isal import igzip
    except ImportError:
        import gzip

        return gzip.compress(raw, compresslevel=1, mtime=0)
    return igzip.compress(raw, 2, mtime=0)


def write_volume(path: str | os.PathLike, array: np.ndarray, spacing_mm: Sequence[float],
                 origin_mm: Sequence[float] = (0.0, 0.0, 0.0)) -> Path:
    """Write a RAS (x, y, z) array as NIfTI (.nii/.nii.gz), NRRD (.nrrd) or MHA/MHD, atomically.

    The file's affine is diag(spacing) + origin in RAS (what nibabel, nnU-Net and MONAI read):
    SimpleITK writes it as an LPS direction diag(-1, -1, 1), which NIfTI stores as that RAS affine.
    ``.nii.gz`` is written without SimpleITK, with the same header fields and a faster gzip
    (:func:`_nifti_gz_bytes`); the other formats by SimpleITK.

    Args:
        path: output file; its suffix picks the format.
        array: (x, y, z) array, any numeric dtype (bool is written as uint8).
        spacing_mm: voxel size (x, y, z) in mm.
        origin_mm: RAS world position of voxel [0, 0, 0] centre.

    Returns:
        The path written.
    """
    import SimpleITK as sitk

    p = Path(path)
    suf = _suffix(p)
    if suf is None or suf == ".seg.nrrd":
        raise InputError([_problem(p, "a .nii, .nii.gz, .nrrd, .mha or .mhd output path",
                                   f"suffix {''.join(p.suffixes) or '(none)'}")], what="output")
    a = np.asarray(array)
    if a.ndim != 3:
        raise InputError([_problem(p, "a 3D (x, y, z) array", f"shape {a.shape}")], what="output")
    sp, org = np.asarray(spacing_mm, dtype=np.float64), np.asarray(origin_mm, dtype=np.float64)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError([_problem(p, "3 finite voxel sizes > 0 mm", f"spacing {tuple(spacing_mm)}",
                                   "the grid's spacing_mm is wrong")], what="output")
    if org.shape != (3,) or not np.all(np.isfinite(org)):
        raise InputError([_problem(p, "3 finite origin coordinates (mm)", f"origin {tuple(origin_mm)}",
                                   "the grid's origin_mm is wrong")], what="output")
    if suf == ".nii.gz":
        data = _nifti_gz_bytes(a, spacing_mm, origin_mm)

        def write_gz(tmp: Path) -> None:
            tmp.write_bytes(data)

        return atomic_write(p, write_gz, suffix=".tmp.nii.gz")
    img = _volume_to_sitk(a, spacing_mm, origin_mm)
    if suf != ".mhd":
        # ".tmp" keeps the temp name matched by synth's resume clean-up (".*.tmp*"); the real
        # suffix last lets SimpleITK pick the format.
        return atomic_write(p, lambda tmp: sitk.WriteImage(img, str(tmp), True), suffix=f".tmp{suf}")
    # .mhd writes a side-car .raw: write both in a temp dir, then move both into place
    p.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".tmp-", dir=p.parent))
    try:
        sitk.WriteImage(img, str(tmpdir / p.name), False)
        for f in sorted(tmpdir.iterdir()):
            os.chmod(f, _file_mode())
            os.replace(f, p.parent / f.name)
    finally:
        for f in tmpdir.iterdir():
            f.unlink()
        tmpdir.rmdir()
    return p


# --------------------------------------------------------------------------------------------
# finding inputs


def find_label_maps(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand inputs into subjects: label files, per-structure mask folders, DICOM folders.

    A file is one subject. A folder is one subject if it is a per-structure mask folder
    (:func:`is_mask_folder`) or holds a DICOM series; otherwise each label file in it, and each
    sub-folder that is itself a subject, is one subject (sorted by name).

    Raises:
        InputError: paths that do not exist or hold no label maps (all listed at once).
    """
    out: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            problems.append(_problem(p, "a label-map file or folder", "nothing at that path"))
            continue
        if p.is_file():
            out.append(p)
            continue
        found = _expand_folder(p)
        if not found:
            problems.append(_problem(p, "label maps (" + ", ".join(LABEL_SUFFIXES) +
                                     ") or per-structure mask files", "none in that folder"))
        out.extend(found)
    if problems:
        raise InputError(problems)
    seen: set[Path] = set()
    uniq = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq


def _expand_folder(p: Path, depth: int = 0) -> list[Path]:
    entries_ = [e for e in p.iterdir() if not e.name.startswith(".")]
    meshes = bool(entries_) and all(e.is_file() and e.suffix.lower() in MESH_SUFFIXES for e in entries_)
    if is_mask_folder(p) or meshes:  # a folder of organ meshes is one subject (read by anatomix.mesh)
        return [p]
    entries = sorted(p.iterdir())
    files = [f for f in entries if f.is_file() and _suffix(f)]
    if not files and any(f.is_file() and f.suffix.lower() in (".dcm", "") for f in entries):
        if is_dicom_folder(p):
            return [p]
    out = list(files)
    if depth < 4:
        for d in entries:
            if d.is_dir() and not d.name.startswith("."):
                out.extend(_expand_folder(d, depth + 1))
    return out


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding DICOM files (``DICM`` magic in one of its first files)."""
    p = Path(path)
    if not p.is_dir():
        return False
    for f in sorted(p.iterdir())[:20]:
        if f.is_file():
            try:
                with open(f, "rb") as fh:
                    if fh.read(132)[128:132] == b"DICM":
                        return True
            except OSError:
                pass
    return False


# ---- label-map resampling (the one resampler of the package) --------------------------------


def _axis_weights(n_in: int, sp_in: float, o_in: float, n_out: int, sp_out: float, o_out: float
                  ) -> np.ndarray:
    """(n_out, n_in) 1-D resampling weights of one axis, rows normalised over the whole input axis.

    Downsampling (``sp_out > sp_in``): a Gaussian of sigma ``sp_out / 2`` mm around each output
    voxel centre (an anti-aliasing low-pass + sampling). Upsampling or equal spacing: the overlap
    of each output voxel's box with each input voxel's box, as a fraction of the output voxel (the
    input is a piecewise-constant box model): a coarse voxel is then replicated, not rounded off, and
    an integer refinement of a nested grid (3 mm into 1.5 mm) or the same grid is exact.
    """
    x_in = o_in + np.arange(n_in) * sp_in
    x_out = o_out + np.arange(n_out) * sp_out
    d = np.round(x_out[:, None] - x_in[None, :], 4)  # 0.1 um: float noise in origins changes nothing
    if sp_out > sp_in:
        d = d / (0.5 * sp_out)
        w = np.exp(-0.5 * d * d)
        w[np.abs(d) > 4.0] = 0.0
    else:
        w = np.clip(np.minimum(d + 0.5 * sp_out, 0.5 * sp_in) - np.maximum(d - 0.5 * sp_out, -0.5 * sp_in),
                    0.0, None) / sp_out
        w = np.round(w, 6)  # exact 0 / 1 for nested grids, whatever the float noise
    s = w.sum(axis=1, keepdims=True)
    return (w / np.where(s > 0, s, 1.0)).astype(np.float32)


def resample_label_map(labels: np.ndarray, spacing_mm: Sequence[float], origin_mm: Sequence[float],
                       out_spacing_mm: Sequence[float], out_origin_mm: Sequence[float],
                       out_shape: Sequence[int]) -> np.ndarray:
    """Resample an axis-aligned (x, y, z) label map onto another axis-aligned grid without aliasing.

    Each label's one-hot mask is weighted separably per axis, giving a weight p in [0, 1] per output
    voxel: along an axis that is downsampled, a Gaussian low-pass (sigma half the output spacing);
    along an axis that is upsampled or kept, the overlap of the voxel boxes (so a coarse voxel is
    replicated, volume-exact for an integer refinement such as 3 mm into 1.5 mm). A label
    claims the voxels where p > 1/2 (the usual anti-aliased boundary); a structure thinner than
    the output voxels, which would keep less than half its volume so, instead claims the voxels
    of largest p (its centre line) down to the level that keeps its input volume. Where labels
    compete, the larger p wins.
    So a thin structure (adrenal gland, vessel) stays connected and keeps its volume instead of
    losing or keeping slices by how the two grids happen to line up (nearest neighbour), and
    does not vanish against the background (plain Gaussian/linear argmax). Output voxels outside
    the input get background.

    Args:
        labels: integer array (x, y, z).
        spacing_mm / origin_mm: input voxel size and the position of voxel [0, 0, 0]'s centre (mm).
        out_spacing_mm / out_origin_mm / out_shape: the output grid, same frame.

    Returns:
        Array of ``out_shape``, ``labels.dtype``.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((12, 12, 12), np.uint8); a[2:10, 5:7, 5:7] = 3   # a 2-voxel-thick rod
        >>> b = resample_label_map(a, (1, 1, 1), (0, 0, 0), (1.5, 1.5, 1.5), (0, 0, 0), (8, 8, 8))
        >>> b.dtype.name, sorted(np.unique(b).tolist()), int((b == 3).sum()) > 0
        ('uint8', [0, 3], True)
    """
    from scipy import ndimage

    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"labels must be a 3D array (x, y, z), found shape {lab.shape}")
    sp_in = [float(s) for s in spacing_mm]
    o_in = [float(s) for s in origin_mm]
    sp_out = [float(s) for s in out_spacing_mm]
    o_out = [float(s) for s in out_origin_mm]
    shape_out = tuple(int(s) for s in out_shape)
    out = np.zeros(shape_out, dtype=lab.dtype)
    if lab.dtype.kind in "ui" and lab.size and lab.min() >= 0 and lab.max() < (1 << 16):
        # one pass gives both the labels present and their boxes (np.unique sorts the whole map)
        if lab.flags.f_contiguous and not lab.flags.c_contiguous:  # readers give (x, y, z) views of (z, y, x)
            boxes = [b[::-1] if b is not None else None for b in ndimage.find_objects(lab.T)]  # 8x faster
        else:
            boxes = ndimage.find_objects(lab)
        box_of = {k + 1: b for k, b in enumerate(boxes) if b is not None}
    else:
        box_of = {int(v): ndimage.find_objects((lab == v).astype(np.int8))[0] for v in np.unique(lab) if v != 0}
    if not box_of:
        return out
    weights = [_axis_weights(lab.shape[a], sp_in[a], o_in[a], shape_out[a], sp_out[a], o_out[a])
               for a in range(3)]
    best = np.zeros(shape_out, dtype=np.float32)
    vox_ratio = float(np.prod(sp_in) / np.prod(sp_out))
    for v, box in sorted(box_of.items()):
        sub = (lab[box] == v).astype(np.float32)
        ws = [weights[a][:, box[a]] for a in range(3)]
        rows = [np.flatnonzero(w.any(axis=1)) for w in ws]
        if any(len(r) == 0 for r in rows):
            continue
        p = np.tensordot(ws[0][rows[0]], sub, axes=(1, 0))              # (x', y, z)
        p = np.tensordot(ws[1][rows[1]], p, axes=(1, 1)).transpose(1, 0, 2)  # (x', y', z)
        p = np.tensordot(ws[2][rows[2]], p, axes=(1, 2)).transpose(1, 2, 0)  # (x', y', z')
        region = np.ix_(rows[0], rows[1], rows[2])
        # volume-keeping level: the input volume in output voxels, never a level above 1/2
        want = int(round(float(sub.sum()) * vox_ratio))
        flat = p.ravel()
        claim = p > 0.5  # the usual anti-aliased boundary (strict: a boundary voxel at 1/2 stays out)
        if want > 0 and int(claim.sum()) < want // 2 and want < flat.size:  # thinner than the grid
            level = max(0.05, float(np.partition(flat, flat.size - want)[flat.size - want]))
            claim = p >= level
        better = claim & (p > best[region])
        best[region] = np.where(better, p, best[region])
        o = out[region]
        o[better] = v
        out[region] = o
    covered = np.ones(shape_out, dtype=np.float32)  # weight of the input's extent at each output voxel
    for a in range(3):
        shape = [1, 1, 1]
        shape[a] = shape_out[a]
        covered = covered * weights[a].sum(axis=1).reshape(shape)
    out[covered < 0.5] = 0
    return out
