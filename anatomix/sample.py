"""A synthetic case as arrays: what every generator returns and the writer and the training stream
consume (leaf module: imports nothing of the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Sample"]


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
    """

    image: np.ndarray
    label: np.ndarray
    spacing_mm: tuple[float, ...]
    record: dict[str, Any]
    origin_mm: tuple[float, ...] = field(default=(0.0, 0.0, 0.0))

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
