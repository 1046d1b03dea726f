"""The bank's on-disk description: format constants, the manifest models (pydantic), errors."""

from __future__ import annotations

import hashlib
import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from anatomix.errors import AnatomixError

BANK_FORMAT_VERSION = 1
MARGIN_VOX = 8
STORAGE = "mask-packbits-zlib"

# Sane bounds, checked whenever a manifest is read (a manifest is input like any other file).
#: Bank spacing (mm), each axis: ingest accepts the same range.
SPACING_RANGE_MM = (0.1, 20.0)
#: Largest stored crop: voxels per axis, voxels in all, physical size per axis (mm). A liver
#: at 1.5 mm is ~150 voxels per axis; a whole 1 m field of view at 0.25 mm is 4,000.
MAX_CROP_VOX_PER_AXIS = 4096
MAX_CROP_VOX = 1 << 28
MAX_CROP_EXTENT_MM = 1000.0
#: Largest manifest.json read (bytes); the embedded bank's is ~40 kB.
MAX_MANIFEST_BYTES = 64 << 20

BODY_FRAME_DEFINITION = (
    "Axes: RAS+ world axes of the scan (x toward the subject's Right, y Anterior, z Superior), "
    "mm. Origin: the midpoint of the centroids of kidney_left and kidney_right (largest "
    "connected components, at bank spacing) when the subject has both kidneys "
    "(reference='kidney_midpoint'; exact=false when a kidney touches the field of view, in "
    "which case z in particular is approximate); otherwise the centroid of the union of all the "
    "subject's ingested organs (reference='organ_union_centroid', exact=false, not comparable "
    "between subjects). Centroids, crop origins and field-of-view bounds are stored relative to "
    "this origin."
)

class BankError(AnatomixError):
    """A shape bank folder is missing, damaged, or asked for something it does not hold."""


class BankWarning(UserWarning):
    """A shape kept in the bank but flagged (truncated, tiny, fragmented, wrong side)."""


# --------------------------------------------------------------------------------------------
# manifest models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ShapeRecord(_Model):
    """One organ of one subject.

    Attributes:
        shape_id: "<organ>/<subject_id>".
        file: path of the stored mask relative to the bank folder.
        shape_vox: (x, y, z) size of the stored crop.
        origin_mm: body-frame position (mm) of the centre of crop voxel [0, 0, 0].
        volume_ml: volume of the kept component.
        extents_mm: size of its tight bounding box along x, y, z.
        centroid_mm: body-frame centroid (mm).
        principal_axes: rows = unit principal axes, largest variance first (sign: largest
            absolute component positive).
        principal_std_mm: standard deviation along each principal axis.
        truncated: the organ touches the scan's field of view (shape incomplete).
        truncated_faces: which faces it touches: "x-", "x+", "y-", "y+", "z-", "z+".
        dropped_fraction: fraction of the organ's voxels outside its largest component.
        qc_flags: subset of "tiny", "fragmented", "wrong_side".
        sha256: hash of the stored file.
    """

    shape_id: str
    organ: str
    subject_id: str
    file: str
    shape_vox: tuple[int, int, int]
    origin_mm: tuple[float, float, float]
    volume_ml: float
    extents_mm: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    principal_axes: tuple[tuple[float, float, float], tuple[float, float, float],
                          tuple[float, float, float]]
    principal_std_mm: tuple[float, float, float]
    truncated: bool
    truncated_faces: list[str] = Field(default_factory=list)
    dropped_fraction: float
    qc_flags: list[str] = Field(default_factory=list)
    sha256: str

    @field_validator("file")
    @classmethod
    def _file_inside_bank(cls, v: str) -> str:
        # the manifest is input: its paths are joined to the bank folder, so they must stay in it
        parts = v.split("/")
        if (not v or "\\" in v or ":" in v or v.startswith("/")
                or any(p in ("", ".", "..") for p in parts)):
            raise ValueError("a relative path inside the bank folder "
                             "(shapes/<organ>/<subject>.bits.z)")
        return v

    @field_validator("shape_vox")
    @classmethod
    def _shape_bounded(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 1 or n > MAX_CROP_VOX_PER_AXIS for n in v) or math.prod(v) > MAX_CROP_VOX:
            raise ValueError(f"a crop size of 1..{MAX_CROP_VOX_PER_AXIS} voxels per axis and at "
                             f"most {MAX_CROP_VOX:,} voxels")
        return v

    @field_validator("sha256")
    @classmethod
    def _is_sha256(cls, v: str) -> str:
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError("a SHA-256 hex digest (64 lowercase hex digits)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ShapeRecord:
        if self.shape_id != f"{self.organ}/{self.subject_id}":
            raise ValueError(f"shape_id '<organ>/<subject_id>' ({self.organ}/{self.subject_id})")
        if self.file != f"shapes/{self.organ}/{self.subject_id}.bits.z":
            raise ValueError(f"file 'shapes/{self.organ}/{self.subject_id}.bits.z'")
        return self


class BodyFrame(_Model):
    """How body-frame coordinates are defined (recorded in every manifest)."""

    axes: str = "RAS"
    units: str = "mm"
    definition: str = BODY_FRAME_DEFINITION


class SubjectInfo(_Model):
    """One ingested subject (no identifying information).

    Attributes:
        subject_id: opaque id ("s" + 12 hex digits of the geometry hash).
        frame_reference: "kidney_midpoint" or "organ_union_centroid".
        frame_exact: False when the reference organs were truncated or absent.
        fov_min_mm / fov_max_mm: body-frame bounds of the scan's field of view (voxel centres).
        organs: organs of this subject kept in the bank (sorted).
    """

    subject_id: str
    frame_reference: str
    frame_exact: bool
    fov_min_mm: tuple[float, float, float]
    fov_max_mm: tuple[float, float, float]
    organs: list[str]


class BankManifest(_Model):
    """Everything about a bank except the masks themselves; saved as ``manifest.json``."""

    format_version: int = BANK_FORMAT_VERSION
    spacing_mm: tuple[float, float, float]
    margin_vox: int = MARGIN_VOX
    storage: str = STORAGE
    body_frame: BodyFrame = Field(default_factory=BodyFrame)
    subjects: list[SubjectInfo]
    shapes: list[ShapeRecord]
    content_hash: str = ""

    @field_validator("spacing_mm")
    @classmethod
    def _spacing_sane(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        lo, hi = SPACING_RANGE_MM
        if not all(lo <= s <= hi for s in v):
            raise ValueError(f"a spacing of {lo:g} to {hi:g} mm per axis")
        return v

    @model_validator(mode="after")
    def _shapes_sane(self) -> BankManifest:
        ids: set[str] = set()
        for i, r in enumerate(self.shapes):
            ext = [n * s for n, s in zip(r.shape_vox, self.spacing_mm)]
            if max(ext) > MAX_CROP_EXTENT_MM:
                raise ValueError(f"shapes[{i}] ({r.shape_id}): a crop of at most "
                                 f"{MAX_CROP_EXTENT_MM:g} mm per axis, found shape_vox "
                                 f"{list(r.shape_vox)} x spacing = {max(ext):.0f} mm")
            if r.shape_id in ids:
                raise ValueError(f"each shape once, found {r.shape_id} twice")
            ids.add(r.shape_id)
        return self

    def compute_hash(self) -> str:
        """SHA-256 of the manifest with ``content_hash`` blank (records hash every file)."""
        body = self.model_copy(update={"content_hash": ""}).model_dump_json(indent=1)
        return hashlib.sha256(body.encode()).hexdigest()

