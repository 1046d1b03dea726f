"""Composition: objects (primitive + pose + displacement + mapper) -> image and label map.

Each object is evaluated only inside its world bounding box, expanded by the displacement bound
and the margin its mapper needs, in chunks of points (bounded memory). The image is the sum of
the mapped SDFs, clipped (FDIF: [0, 128], then truncated to integers); labels are painted from
the largest object to the smallest so that the smaller object wins where objects overlap, and
only where the (displaced) SDF is negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from anatomix.sdf.displacements import displacement_bound_mm, displacement_field
from anatomix.sdf.mappers import apply_mapper, mapper_margin_mm
from anatomix.sdf.pose import pose_matrices
from anatomix.sdf.primitives import local_half_extent, primitive_sdf

__all__ = ["Grid", "object_box", "object_sdf", "render_objects"]

CHUNK = 1 << 16


@dataclass(frozen=True)
class Grid:
    """A voxel grid centred on the world origin (FDIF's convention).

    Voxel i along an axis has world coordinate ``(i - n // 2) * spacing`` (mm), so the grid's
    origin (centre of voxel 0) is ``-(n // 2) * spacing``.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        return tuple(-(n // 2) * s for n, s in zip(self.shape, self.spacing_mm))  # type: ignore[return-value]

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        return tuple(n * s for n, s in zip(self.shape, self.spacing_mm))  # type: ignore[return-value]

    @property
    def half_extent_mm(self) -> float:
        """FDIF's displacement normaliser: the largest world x of the grid."""
        return float((self.shape[0] - 1 - self.shape[0] // 2) * self.spacing_mm[0])

    def axis_mm(self, axis: int, lo: int, hi: int, device: torch.device | str = "cpu") -> torch.Tensor:
        n = self.shape[axis]
        return (torch.arange(lo, hi, dtype=torch.float32, device=device) - float(n // 2)) * self.spacing_mm[axis]


def object_box(obj: dict[str, Any], grid: Grid) -> tuple[slice, slice, slice] | None:
    """Voxel slices covering an object plus its displacement bound and mapper margin (None if
    the box misses the grid)."""
    m, a, anorm = pose_matrices(obj["pose"])
    he = np.asarray(local_half_extent(obj["primitive"]), dtype=np.float64)
    extra = mapper_margin_mm(obj.get("mapper", "")) if obj.get("mapper") else 0.0
    disp = obj.get("displacement")
    if disp:
        extra += displacement_bound_mm(disp["name"], grid.half_extent_mm)
    # SDF values are divided by ||A||; expand generously in the local frame
    he = he + 2.0 * extra * anorm + 1e-3
    half_world = np.abs(m) @ he
    t = np.asarray(obj["pose"]["translation_mm"], dtype=np.float64)
    out = []
    for ax in range(3):
        sp = grid.spacing_mm[ax]
        c = grid.shape[ax] // 2
        lo = max(0, int(math.floor((t[ax] - half_world[ax]) / sp)) + c)
        hi = min(grid.shape[ax], int(math.ceil((t[ax] + half_world[ax]) / sp)) + c + 1)
        if hi <= lo:
            return None
        out.append(slice(lo, hi))
    return tuple(out)  # type: ignore[return-value]


def object_sdf(obj: dict[str, Any], pts_mm: torch.Tensor, grid: Grid, displaced: bool = True) -> torch.Tensor:
    """SDF (mm, 1-Lipschitz before displacement) of an object at world points (N, 3)."""
    _, a, anorm = pose_matrices(obj["pose"])
    at = torch.tensor(a.T, dtype=pts_mm.dtype, device=pts_mm.device)
    t = torch.tensor(obj["pose"]["translation_mm"], dtype=pts_mm.dtype, device=pts_mm.device)
    local = (pts_mm - t) @ at
    d = primitive_sdf(obj["primitive"], local)
    if anorm > 1.0:  # shear: divide by ||A|| to stay 1-Lipschitz in world mm
        d = d / anorm
    disp = obj.get("displacement")
    if displaced and disp:
        d = d + displacement_field(disp, pts_mm, grid.half_extent_mm)
    return d


def _box_points(grid: Grid, box: tuple[slice, slice, slice], device: torch.device | str) -> torch.Tensor:
    xs = [grid.axis_mm(ax, box[ax].start, box[ax].stop, device) for ax in range(3)]
    gx, gy, gz = torch.meshgrid(xs[0], xs[1], xs[2], indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1), gz.reshape(-1)], dim=1)


def render_objects(
    objects: Sequence[dict[str, Any]],
    labels: Sequence[int],
    grid: Grid,
    *,
    clip: tuple[float, float] = (0.0, 128.0),
    quantize: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Render objects into an image and a label map.

    Args:
        objects: dicts with ``primitive`` (params), ``pose``, ``displacement`` (or None),
            ``mapper`` (name).
        labels: label value of each object (1..255).
        grid: output grid.
        clip: image clipping range (FDIF: 0..128).
        quantize: truncate to integers after clipping (FDIF stores uint8).
        device: torch device.

    Returns:
        image float32 (x, y, z), label uint8 (x, y, z), voxel count inside each object.
    """
    image = torch.zeros(grid.shape, dtype=torch.float32, device=device)
    masks: list[tuple[tuple[slice, slice, slice], torch.Tensor] | None] = []
    volumes: list[int] = []
    for obj in objects:
        box = object_box(obj, grid)
        if box is None:
            masks.append(None)
            volumes.append(0)
            continue
        pts = _box_points(grid, box, device)
        n = pts.shape[0]
        mapped = torch.empty(n, dtype=torch.float32, device=device)
        inside = torch.empty(n, dtype=torch.bool, device=device)
        for s in range(0, n, CHUNK):
            d = object_sdf(obj, pts[s:s + CHUNK], grid)
            mapped[s:s + CHUNK] = apply_mapper(obj["mapper"], d)
            inside[s:s + CHUNK] = d < 0.0
        bshape = tuple(sl.stop - sl.start for sl in box)
        image[box] += mapped.view(bshape)
        inside = inside.view(bshape)
        masks.append((box, inside))
        volumes.append(int(inside.sum()))
    image.clamp_(clip[0], clip[1])
    if quantize:
        image.floor_()
    label = torch.zeros(grid.shape, dtype=torch.uint8, device=device)
    # largest first, so the smaller object is painted last and wins (stable for ties)
    order = sorted(range(len(objects)), key=lambda i: -volumes[i])
    for i in order:
        if masks[i] is None or volumes[i] == 0:
            continue
        box, inside = masks[i]
        sub = label[box]
        sub[inside] = int(labels[i])
    return image, label, volumes
