"""The voxel grid: one definition shared by FDIF rendering (:mod:`anatomix.sdf`) and anatomy
rendering (:mod:`anatomix.render`, :mod:`anatomix.appearance`).

Voxel ``i`` along an axis has its centre at world ``origin_mm + i * spacing_mm`` (mm, RAS body
frame). Without an origin the grid is centred on the world origin (FDIF's convention):
``origin_mm = -(n // 2) * spacing_mm``, so voxel ``n // 2`` lies at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["SLAB_VOXELS", "Grid", "slabs"]


@dataclass(frozen=True)
class Grid:
    """A regular grid: ``shape`` voxels (x, y, z), ``spacing_mm``, ``origin_mm`` (centre of voxel 0).

    ``origin_mm=None`` (the default) centres the grid on the world origin.
    """

    shape: tuple[int, ...]
    spacing_mm: tuple[float, ...] = (1.0, 1.0, 1.0)
    origin_mm: tuple[float, ...] = field(default=None)  # type: ignore[arg-type]  # None: centred

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        object.__setattr__(self, "spacing_mm", tuple(float(v) for v in self.spacing_mm))
        origin = self.centred_origin_mm if self.origin_mm is None else tuple(float(v) for v in self.origin_mm)
        object.__setattr__(self, "origin_mm", origin)

    @property
    def centred_origin_mm(self) -> tuple[float, float, float]:
        """The origin of the centred grid of this shape and spacing."""
        return tuple(-(n // 2) * s for n, s in zip(self.shape, self.spacing_mm))  # type: ignore[return-value]

    @property
    def shift_mm(self) -> tuple[float, float, float]:
        """``origin_mm`` minus the centred origin (exactly 0 for a centred grid)."""
        return tuple(o - c for o, c in zip(self.origin_mm, self.centred_origin_mm))  # type: ignore[return-value]

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        return tuple(n * s for n, s in zip(self.shape, self.spacing_mm))  # type: ignore[return-value]

    @property
    def half_extent_mm(self) -> float:
        """FDIF's displacement normaliser: the largest x of the centred grid of this shape
        (a size: it does not depend on the origin)."""
        return float((self.shape[0] - 1 - self.shape[0] // 2) * self.spacing_mm[0])

    @property
    def end_mm(self) -> np.ndarray:
        """World position of the centre of the last voxel."""
        return np.asarray(self.origin_mm) + (np.asarray(self.shape) - 1) * np.asarray(self.spacing_mm)

    def world_mm(self, index: np.ndarray) -> np.ndarray:
        """World positions (mm) of voxel indices (..., 3)."""
        return np.asarray(self.origin_mm) + np.asarray(index, dtype=np.float64) * np.asarray(self.spacing_mm)

    def axis_mm(self, axis: int, lo: int, hi: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """World coordinates (mm, float32) of voxels ``lo..hi-1`` along ``axis``."""
        n = self.shape[axis]
        x = (torch.arange(lo, hi, dtype=torch.float32, device=device) - float(n // 2)) * self.spacing_mm[axis]
        shift = self.shift_mm[axis]
        return x + shift if shift != 0.0 else x

    def box_slices(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres lie in [lo_mm, hi_mm]; None when empty."""
        o = np.asarray(self.origin_mm)
        s = np.asarray(self.spacing_mm)
        i0 = np.maximum(np.ceil((lo_mm - o) / s - 1e-6).astype(int), 0)
        i1 = np.minimum(np.floor((hi_mm - o) / s + 1e-6).astype(int) + 1, np.asarray(self.shape))
        if np.any(i1 <= i0):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(i0, i1))  # type: ignore[return-value]


#: voxels per slab of :func:`slabs` by default (1 MiB of float32: several passes stay in the cache)
SLAB_VOXELS = 1 << 18


def slabs(shape: tuple[int, ...] | list[int], voxels: int = SLAB_VOXELS) -> list[slice]:
    """Slices along the first axis of a volume of ``shape``, about ``voxels`` voxels each (at
    least one plane): whole-volume passes run slab by slab, so several element-wise passes over
    one slab stay in the cache, and temporaries stay one slab big."""
    plane = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    step = max(1, int(voxels) // plane)
    n = int(shape[0])
    return [slice(x0, min(n, x0 + step)) for x0 in range(0, n, step)]
