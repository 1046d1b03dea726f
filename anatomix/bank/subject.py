"""One ingested subject and its shapes, between reading label maps and writing the bank
(intermediate models shared by ingest and QC; nothing here is stored as is)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IngestedShape", "IngestedSubject"]


@dataclass
class IngestedShape:
    organ: str
    packed: bytes
    shape_vox: tuple[int, int, int]
    origin_world: np.ndarray  # RAS world of crop voxel 0
    centroid_world: np.ndarray
    n_vox: int
    extents_mm: tuple[float, float, float]
    axes: np.ndarray
    std: np.ndarray
    faces: list[str]
    dropped: float


@dataclass
class IngestedSubject:
    subject_id: str
    source: str  # only for messages, never stored
    shapes: list[IngestedShape]
    fov_lo: np.ndarray
    fov_hi: np.ndarray
