"""A synthetic case as arrays: what every generator returns and the writer and the training stream
consume (leaf module: imports nothing of the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Sample", "image_to_write"]


@dataclass
class Sample:
    """One synthetic case.

    Attributes:
        image: float32 array (x, y, z), RAS+ axes (array axes grow along world +x, +y, +z).
        label: uint8 array (x, y, z), same shape; 0 is background.
        spacing_mm: voxel size along x, y, z in mm.
        record: JSON-serialisable dict replaying the case: at least ``seed``, ``index``, ``mode``
            and every drawn parameter.
        origin_mm: RAS world position (mm) of the centre of voxel [0, 0, 0].
        image_hu: for CT-like cases, the image in Hounsfield units as int16 (what is written to
            disk, as real CT is; ``image`` is its CT window, what the training stream feeds).
    """

    image: np.ndarray
    label: np.ndarray
    spacing_mm: tuple[float, ...]
    record: dict[str, Any]
    origin_mm: tuple[float, ...] = field(default=(0.0, 0.0, 0.0))
    image_hu: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.dtype != np.float32:
            self.image = self.image.astype(np.float32)
        if self.label.dtype != np.uint8:
            self.label = self.label.astype(np.uint8)
        if self.image.ndim != 3 or self.image.shape != self.label.shape:
            raise ValueError(
                f"Sample image and label must be 3D arrays of one shape, got {self.image.shape} "
                f"and {self.label.shape}"
            )
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)  # type: ignore[assignment]
        self.origin_mm = tuple(float(s) for s in self.origin_mm)  # type: ignore[assignment]


def image_to_write(sample: Sample) -> np.ndarray:
    """The array written as a case's image: int16 Hounsfield units for CT-like cases; uint8 for
    integer-valued images in 0..255 (FDIF's quantised 0..128); float32 otherwise."""
    if sample.image_hu is not None:
        return sample.image_hu
    img = sample.image
    if img.size and float(img.min()) >= 0.0 and float(img.max()) <= 255.0 and np.array_equal(img, np.rint(img)):
        return img.astype(np.uint8)
    return img
