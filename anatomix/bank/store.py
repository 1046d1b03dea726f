"""Loading a bank folder: ShapeBank (records, masks, SDFs on demand), the embedded default bank.

A bank is input like any other file and is checked every time it is loaded (cheap: the
embedded bank's 23 files are read and hashed in about a millisecond):

- ``manifest.json``: at most ``MAX_MANIFEST_BYTES``, valid against the models (spacing,
  crop sizes and extents within the bounds of :mod:`anatomix.bank.manifest`, finite numbers,
  paths inside the bank), format version, and its ``content_hash``;
- every shape file: a regular file reached without any symbolic link from the bank folder
  (opened with ``O_NOFOLLOW``), no larger than its declared crop can compress to, and with
  the SHA-256 its record names;
- when a mask is decoded, decompression stops at the size the declared crop needs
  (``zlib.decompressobj`` with ``max_length``): a stream that is shorter, longer, or not a
  complete zlib stream is refused, so a compression bomb costs at most one crop of memory.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from anatomix.bank.manifest import (
    BANK_FORMAT_VERSION,
    MAX_MANIFEST_BYTES,
    BankError,
    BankManifest,
    ShapeRecord,
)

_REBUILD = "rebuild the bank with `anatomix ingest-masks` (or restore it from its source)"


def default_bank_path() -> Path:
    """Folder of the embedded default bank (``shapebank/default/`` in the repository)."""
    env = os.environ.get("ANATOMIX_DEFAULT_BANK")
    if env:
        return Path(env)
    from anatomix.resources import shipped  # the checkout's shapebank/ or the wheel's copy

    return shipped("bank", "default")


def _packed_size(shape: Sequence[int]) -> int:
    """Bytes of the bit-packed mask of a crop of ``shape`` voxels."""
    return (int(np.prod(shape)) + 7) // 8


def _max_file_size(shape: Sequence[int]) -> int:
    """Largest zlib stream of ``_packed_size(shape)`` bytes (zlib's worst case, plus slack)."""
    n = _packed_size(shape)
    return n + n // 1000 + 1024


def _unpack(data: bytes, shape: Sequence[int]) -> np.ndarray:
    """Decode a stored mask; decompression is bounded by the declared crop.

    Raises:
        ValueError: the stream is not exactly one complete zlib stream of the packed size.
        zlib.error: a corrupt stream.
    """
    need = _packed_size(shape)
    d = zlib.decompressobj()
    raw = d.decompress(data, need)  # at most `need` bytes come out, whatever the input
    if len(raw) < need:
        if d.unconsumed_tail or not d.eof:
            raise ValueError(f"a zlib stream of {need} bytes, found a truncated stream "
                             f"({len(raw)} bytes)")
        raise ValueError(f"{need} bytes of packed mask, found {len(raw)} (shorter than the "
                         "declared shape)")
    if d.unconsumed_tail or not d.eof:
        if d.unconsumed_tail or d.decompress(b"", 1):
            raise ValueError(f"{need} bytes of packed mask, found more (longer than the "
                             "declared shape)")
        raise ValueError(f"a complete zlib stream of {need} bytes, found a truncated stream")
    if d.unused_data:
        raise ValueError(f"one zlib stream, found {len(d.unused_data)} trailing bytes")
    n = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n)
    return bits.view(bool).reshape(tuple(shape))


def _pack(mask: np.ndarray) -> bytes:
    return zlib.compress(np.packbits(np.ascontiguousarray(mask, dtype=bool).ravel()).tobytes(), 6)


def _read_inside(root: Path, rel: str, max_bytes: int, checked_dirs: set[str] | None = None
                 ) -> bytes:
    """Read ``root/rel``: every component below ``root`` a real folder/file (no symlink).

    Raises:
        BankError: (located) a symlink, not a regular file, missing, or larger than
            ``max_bytes``.
    """
    parts = rel.split("/")
    cur = root
    for k, part in enumerate(parts[:-1]):
        cur = cur / part
        key = "/".join(parts[: k + 1])
        if checked_dirs is not None and key in checked_dirs:
            continue
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            raise BankError(f"{root}: {rel}: expected a stored file, found its folder {key} "
                            f"missing; {_REBUILD}") from None
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
            raise BankError(f"{root}: {key}: expected a folder inside the bank, found {what}; "
                            f"a bank holds no links; {_REBUILD}")
        if checked_dirs is not None:
            checked_dirs.add(key)
    f = root / rel
    try:
        fd = os.open(f, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise BankError(f"{f}: expected a stored file, found it missing; {_REBUILD}") from None
    except OSError as e:
        if os.path.islink(f):
            raise BankError(f"{f}: expected a regular file inside the bank, found a symbolic "
                            f"link; a bank holds no links; {_REBUILD}") from None
        raise BankError(f"{f}: expected a readable file, found {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BankError(f"{f}: expected a regular file, found a special file; {_REBUILD}")
        if st.st_size > max_bytes:
            raise BankError(f"{f}: expected at most {max_bytes:,} bytes (what its declared shape "
                            f"can take), found {st.st_size:,}; {_REBUILD}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise BankError(f"{f}: expected at most {max_bytes:,} bytes, found more; {_REBUILD}")
    return data


def _read_shape_file(root: Path, r: ShapeRecord, checked_dirs: set[str] | None = None) -> bytes:
    """The stored bytes of one shape, checked against its record's SHA-256 (BankError)."""
    data = _read_inside(root, r.file, _max_file_size(r.shape_vox), checked_dirs)
    if hashlib.sha256(data).hexdigest() != r.sha256:
        raise BankError(f"{root / r.file}: shape {r.shape_id}: expected the SHA-256 its manifest "
                        f"record names ({r.sha256[:16]}...), found "
                        f"{hashlib.sha256(data).hexdigest()[:16]}... (the file was changed or "
                        f"swapped); {_REBUILD}")
    return data


class ShapeBank:
    """A loaded shape bank (read-only). Masks and SDFs are computed on demand and cached.

    Thread-safe for reads; each process keeps its own cache.
    """

    def __init__(self, root: Path, manifest: BankManifest) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self._by_id = {r.shape_id: r for r in manifest.shapes}
        self._by_organ: dict[str, list[ShapeRecord]] = {}
        for r in manifest.shapes:
            self._by_organ.setdefault(r.organ, []).append(r)
        self._sdf_cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = False) -> ShapeBank:
        """Load and check a bank folder (manifest, content hash, every file's SHA-256).

        Masks are decoded lazily; see the module docstring for what is checked.

        Args:
            path: the bank folder.
            verify: also decode every stored mask (``bank info --verify``).

        Raises:
            BankError: missing folder/manifest, unsupported format, out-of-bounds geometry,
                links, changed or damaged files (the file and what was wrong).
        """
        root = Path(path)
        mf = root / "manifest.json"
        if not mf.is_file():
            raise BankError(f"{root}: expected a shape bank folder with manifest.json, found "
                            f"{'no such folder' if not root.exists() else 'no manifest.json'}; "
                            "build one with `anatomix ingest-masks INPUT... --out DIR`")
        from pydantic import ValidationError

        from anatomix.errors import validation_problems

        try:
            text = _read_inside(root, "manifest.json", MAX_MANIFEST_BYTES)
            manifest = BankManifest.model_validate_json(text)
        except ValidationError as e:  # also JSON syntax errors (type json_invalid)
            raise BankError(f"{mf}: expected a valid bank manifest (format "
                            f"{BANK_FORMAT_VERSION}), found: "
                            f"{'; '.join(validation_problems(e)[:10])}; {_REBUILD}") from None
        if manifest.format_version != BANK_FORMAT_VERSION:
            raise BankError(f"{mf}: expected bank format {BANK_FORMAT_VERSION}, found "
                            f"{manifest.format_version}; rebuild it with this anatomix version")
        if manifest.compute_hash() != manifest.content_hash:
            raise BankError(f"{mf}: expected the content hash it records "
                            f"({manifest.content_hash[:16] or 'none'}...), found "
                            f"{manifest.compute_hash()[:16]}... (the manifest was edited); "
                            f"{_REBUILD}")
        bank = cls(root, manifest)
        checked: set[str] = set()
        for r in manifest.shapes:
            _read_shape_file(root, r, checked)
        if verify:
            bank.verify()
        return bank

    @classmethod
    def default(cls) -> ShapeBank:
        """The embedded default bank (memoised: one instance, one cache per process)."""
        return _default_bank(str(default_bank_path()))

    def verify(self) -> None:
        """Decode every stored mask (on top of the checks of :meth:`load`); BankError if one fails.

        Also checks that each mask is non-empty (the organ is in its crop).
        """
        for r in self.manifest.shapes:
            m = self.mask(r.shape_id)
            if not m.any():
                raise BankError(f"{self.root / r.file}: shape {r.shape_id}: expected an organ "
                                f"mask, found an empty crop; {_REBUILD}")

    @property
    def organs(self) -> list[str]:
        """Sorted organ names present in the bank."""
        return sorted(self._by_organ)

    @property
    def subjects(self) -> list[str]:
        """Subject ids, in manifest order (sorted)."""
        return [s.subject_id for s in self.manifest.subjects]

    def __getstate__(self) -> dict[str, Any]:
        # worker processes get the manifest; each rebuilds its own cache and lock
        return {"root": self.root, "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["manifest"])  # type: ignore[misc]

    @property
    def frame_exact(self) -> dict[str, bool]:
        """subject id -> whether its body frame is exact (both kidneys complete), see the manifest."""
        return {s.subject_id: s.frame_exact for s in self.manifest.subjects}

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.manifest.spacing_mm

    def shapes(self, organ: str) -> list[ShapeRecord]:
        """All shapes of one organ (sorted by subject id).

        Raises:
            BankError: the bank holds no such organ (message lists those it has).
        """
        if organ not in self._by_organ:
            raise BankError(f"shape bank {self.root}: expected an organ it holds, found "
                            f"{organ!r}; it holds: {', '.join(self.organs)}")
        return list(self._by_organ[organ])

    def record(self, shape_id: str) -> ShapeRecord:
        """The record of one shape ("<organ>/<subject_id>")."""
        try:
            return self._by_id[shape_id]
        except KeyError:
            raise BankError(f"shape bank {self.root}: no shape {shape_id!r}") from None

    def mask(self, shape_id: str) -> np.ndarray:
        """Binary mask (x, y, z) of the stored crop at bank spacing (a fresh array).

        The bytes decoded are the bytes hashed (checked again here, not only at load).
        """
        r = self.record(shape_id)
        data = _read_shape_file(self.root, r)
        try:
            return _unpack(data, r.shape_vox)
        except (zlib.error, ValueError) as e:
            raise BankError(f"{self.root / r.file}: shape {r.shape_id}: expected a stored mask "
                            f"of shape {tuple(r.shape_vox)}: {e} (an unreadable file); "
                            f"{_REBUILD}") from None

    def sdf(self, shape_id: str) -> np.ndarray:
        """Signed distance (mm, float32, negative inside) on the stored crop, (x, y, z).

        Computed once from the mask with exact Euclidean distance transforms at the bank
        spacing (see :func:`mask_to_sdf`), then cached; the returned array is read-only (copy it to modify).
        """
        with self._lock:
            hit = self._sdf_cache.get(shape_id)
        if hit is not None:
            return hit
        out = mask_to_sdf(self.mask(shape_id), self.spacing_mm)
        out.setflags(write=False)
        with self._lock:
            self._sdf_cache[shape_id] = out
        return out

    def clear_cache(self) -> None:
        with self._lock:
            self._sdf_cache.clear()

    def __repr__(self) -> str:
        return (f"ShapeBank({str(self.root)!r}, {len(self.subjects)} subjects, "
                f"{len(self.organs)} organs, {len(self.manifest.shapes)} shapes)")


@lru_cache(maxsize=4)
def _default_bank(path: str) -> ShapeBank:
    return ShapeBank.load(path)


def mask_to_sdf(mask: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """Signed distance (mm, float32, negative inside) of a binary mask's boundary.

    A voxel outside gets its distance to the nearest inside voxel centre, a voxel inside minus
    its distance to the nearest outside voxel centre (exact EDT with ``sampling=spacing``);
    both are then moved half a voxel (``min(spacing) / 2``) toward zero, because the surface
    lies half-way between the last inside and the first outside voxel centre. The zero level
    set is that boundary and the gradient is ~1 everywhere, also across the surface.
    """
    from scipy.ndimage import distance_transform_edt

    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.full(m.shape, np.inf, dtype=np.float32)
    sp = tuple(float(s) for s in spacing_mm)
    half = np.float32(min(sp) / 2)
    out = distance_transform_edt(~m, sampling=sp).astype(np.float32)
    out[~m] -= half
    if (~m).any():
        inside = distance_transform_edt(m, sampling=sp).astype(np.float32)
        out[m] = half - inside[m]
    else:
        out[m] = -np.inf
    return out

