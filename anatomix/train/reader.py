"""A MONAI ``ImageReader`` backed by :mod:`anatomix.io` (SimpleITK), the project's only image reader.

``LoadImaged(keys, reader=AnatomixReader("image"))`` loads .nii/.nii.gz/.nrrd/.mha/.mhd files and
DICOM-series folders as (x, y, z) RAS arrays with their RAS affine (diagonal spacing + origin), so
MONAI's ``Orientationd(axcodes="RAS")`` is a no-op and ``Spacingd`` resamples as usual. Label maps
use ``AnatomixReader("label")`` (:func:`anatomix.io.read_label_map`: integer values, nearest
neighbour for oblique inputs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from monai.data.image_reader import ImageReader
from monai.utils import MetaKeys, SpaceKeys

from anatomix.errors import InputError
from anatomix import io
from anatomix.io import LABEL_SUFFIXES, is_dicom_folder

__all__ = ["AnatomixReader", "READABLE_SUFFIXES"]

#: file endings read by :mod:`anatomix.io` (DICOM series are folders).
READABLE_SUFFIXES = LABEL_SUFFIXES


class AnatomixReader(ImageReader):
    """Reads images (float32) or label maps (integers) through :mod:`anatomix.io`.

    Args:
        kind: ``"image"`` (:func:`anatomix.io.read_image`, linear resampling of oblique inputs) or
            ``"label"`` (:func:`anatomix.io.read_label_map`).

    Raises (when reading):
        anatomix.io.InputError: missing/unreadable file, 4D image, overlapping label layers.
    """

    def __init__(self, kind: Literal["image", "label"] = "image") -> None:
        super().__init__()
        if kind not in ("image", "label"):
            raise ValueError(f"kind must be 'image' or 'label', found {kind!r}")
        self.kind = kind

    def verify_suffix(self, filename: Sequence[str | os.PathLike[Any]] | str | os.PathLike[Any]) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return all(str(n).lower().endswith(READABLE_SUFFIXES) or is_dicom_folder(n) for n in names)

    def read(self, data: Sequence[str | os.PathLike[Any]] | str | os.PathLike[Any], **kwargs: Any) -> Any:
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        if len(names) != 1:
            if self.kind == "label":
                raise InputError([f"{names}: expected one label map per item"])
            return [io.read_image(Path(n)) for n in names]  # one file per channel (stacked in get_data)
        path = Path(names[0])
        if self.kind == "label":
            vol = io.read_label_map(path)
            if getattr(vol, "layered", False):
                raise InputError([f"{path}: expected one label value per voxel, found overlapping segments "
                                  "(layers); export a non-overlapping label map for training"])
            return vol
        return io.read_image(path)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        if isinstance(img, list):  # channels: same grid required, stacked channels first
            first = img[0]
            for k, other in enumerate(img[1:], start=1):
                if other.array.shape != first.array.shape or not np.allclose(other.affine, first.affine, atol=1e-3):
                    raise InputError([f"image channel {k}: expected the grid of channel 0 "
                                      f"{first.array.shape}, found {other.array.shape} (or another "
                                      "affine); resample the channels onto one grid"])
            _, channel_meta = self.get_data(first)
            channel_meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
            return np.stack([np.ascontiguousarray(v.array) for v in img]), channel_meta
        array = np.ascontiguousarray(img.array)
        affine = np.asarray(img.affine, dtype=np.float64)
        meta: dict[str, Any] = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(array.shape[:3]),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
        }
        return array, meta
