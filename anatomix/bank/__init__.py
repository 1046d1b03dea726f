"""The shape bank: de-identified, label-only organ shapes ingested from real label maps.

A bank is a folder::

    manifest.json                      BankManifest (pydantic, JSON): format, spacing, body frame,
                                       subjects, one ShapeRecord per (organ, subject), content hash
    shapes/<organ>/<subject_id>.bits.z one organ of one subject: its binary mask on the stored crop

Storage choice: each shape is stored as its **binary mask** (crop = bounding box of the organ's
largest connected component + a margin of ``MARGIN_VOX`` = 8 voxels on every side), bit-packed
(``np.packbits``, C order over (x, y, z)) and zlib-compressed. Masks are exact (the SDF zero
level set is reproduced from them), compress ~50-100x (the embedded bank is well under 1 MB;
an int16 SDF would be ~30x larger and lossy), and contain nothing but geometry. The signed
distance field is computed on demand by :meth:`ShapeBank.sdf` with
``scipy.ndimage.distance_transform_edt(sampling=spacing)`` (distance to the nearest voxel of
the other side minus half a voxel, so the zero level lies half-way between the last inside and
first outside voxel centres; negative inside, mm; see ``mask_to_sdf``) and cached per bank
instance: ~0.05-0.5 s once per shape per process, then free. Placement/rendering resample that
cached float32 array with grid_sample; outside the crop the SDF is not defined (clamp to the
border value, which is >= 8 voxels).

Geometry: every subject is resampled (:func:`anatomix.io.resample_label_map`: volume-exact for an
integer refinement, thin structures kept otherwise) onto an axis-aligned RAS+ grid at the bank
spacing (default 1.5 mm isotropic) covering its voxel extent; arrays are (x, y, z) with axes
along world +x (Right), +y (Anterior), +z (Superior). Positions are stored in the subject's
**body frame**: RAS axes, origin at an anatomical landmark (see ``BODY_FRAME_DEFINITION``), in mm,
so no absolute scanner coordinate is kept. Placing every shape of a subject at its record's
``origin_mm`` rebuilds that subject's label map (up to the dropped fragments).

De-identification: no intensities, no header text, no file names or paths, no absolute scanner
coordinates; subject ids are a truncated SHA-256 of the resampled label geometry itself
("s" + 12 hex digits), so re-ingesting the same data in any order gives the same ids and the
same bytes, and two inputs with the same anatomy are caught as duplicates.

Modules: ``manifest`` (format constants, sane bounds, the pydantic manifest models), ``store``
(loading and verifying a bank on every load, ShapeBank, bounded mask decoding), ``ingest`` (label
maps -> checked shapes), ``geometry`` (resampling, cutting one organ, body frame), ``qc`` (flags,
summary table), ``write`` (atomic write under a lock beside the output).
"""

from anatomix.bank.ingest import (
    LabelSpec,
    TruncatedPolicy,
    ingest_masks,
    resolve_labels,
)
from anatomix.bank.manifest import (
    BANK_FORMAT_VERSION,
    BODY_FRAME_DEFINITION,
    MARGIN_VOX,
    STORAGE,
    BankError,
    BankManifest,
    BankWarning,
    BodyFrame,
    ShapeRecord,
    SubjectInfo,
)
from anatomix.bank.qc import TYPICAL_VOLUME_ML, bank_table
from anatomix.bank.store import ShapeBank, default_bank_path, mask_to_sdf

__all__ = [
    "BANK_FORMAT_VERSION",
    "BODY_FRAME_DEFINITION",
    "MARGIN_VOX",
    "STORAGE",
    "TYPICAL_VOLUME_ML",
    "BankError",
    "BankManifest",
    "BankWarning",
    "BodyFrame",
    "LabelSpec",
    "ShapeBank",
    "ShapeRecord",
    "SubjectInfo",
    "TruncatedPolicy",
    "bank_table",
    "default_bank_path",
    "ingest_masks",
    "mask_to_sdf",
    "resolve_labels",
]
