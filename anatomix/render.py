"""Rendering: a Scene (pure parameters) -> per-organ SDFs and a uint8 label map on any grid.

Deterministic: nothing here draws random numbers. Each placed organ's SDF
(:mod:`anatomix.shape_field`) is evaluated only inside the box its own pose gives (bank crop
box through scale, rotation and elastic bound), never over the whole grid, and never clipped to
a box measured during placement: an edited pose in a Scene renders as edited.

Label priority where organ volumes meet (documented rule): the organ with the higher graph
``priority`` wins; on a tie the smaller organ (by placed volume) wins, so small structures
(adrenal glands, gallbladder, lesions) are never swallowed by large ones. In ``render_scene``
organs are painted from the lowest to the highest precedence.

Device: ``render_scene(..., device="cuda")`` evaluates every organ SDF and paints the label map
on that torch device (crops cached there per device) and copies the results to numpy once at
the end; the result is the same :class:`Rendered` (numpy) on every device. On the CPU (the
default) the bytes are those of before the device existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from anatomix.device import resolve_device
from anatomix import relations as rel
from anatomix.grid import Grid
from anatomix.scene import PlacedOrgan, Scene
from anatomix.shape_field import ShapeSource, evaluate_upsampled, placed_field

__all__ = ["Grid", "Rendered", "label_precedence", "render_scene", "scene_grid"]


def label_precedence(organs: Sequence[PlacedOrgan]) -> list[PlacedOrgan]:
    """Organs in painting order: lowest precedence first (priority ascending, then larger first)."""
    return sorted(organs, key=lambda o: (o.priority, -o.volume_ml, o.label))


def scene_grid(scene: Scene, spacing_mm: Sequence[float] | np.ndarray, margin_mm: float = 20.0) -> Grid:
    """A grid at ``spacing_mm`` covering every organ of the scene plus ``margin_mm`` (whole field of view)."""
    lo = np.asarray(scene.box_min_mm, dtype=np.float64) - margin_mm
    hi = np.asarray(scene.box_max_mm, dtype=np.float64) + margin_mm
    sp = np.asarray(spacing_mm, dtype=np.float64)
    shape = np.maximum(np.ceil((hi - lo) / sp).astype(int) + 1, 1)
    return Grid(tuple(int(v) for v in shape), tuple(float(v) for v in sp), tuple(float(v) for v in lo))


@dataclass
class Rendered:
    """Rendering output.

    Attributes:
        label: uint8 (x, y, z) label map on the grid.
        sdfs: organ name -> (box slices into the grid, float32 SDF in mm on that box). Outside
            its box an organ's SDF is positive (outside the organ).
        labels: organ name -> label value.
        grid: the grid.
    """

    label: np.ndarray
    sdfs: dict[str, tuple[tuple[slice, slice, slice], np.ndarray]]
    labels: dict[str, int]
    grid: Grid

    def organ_masks(self) -> dict[str, np.ndarray]:
        """organ -> bool (x, y, z) mask of its own SDF on the whole grid (before label priority,
        so overlaps the label map hides are kept)."""
        masks = {}
        for organ, (sl, sdf) in self.sdfs.items():
            m = np.zeros(self.label.shape, bool)
            m[sl] = sdf <= 0
            masks[organ] = m
        return masks

    def label_centroids_mm(self) -> dict[str, np.ndarray]:
        """organ -> centroid (mm, grid offsets) of its voxels in the label map."""
        return {o: rel.centroid_mm(self.label == v, self.grid.spacing_mm) for o, v in self.labels.items()}


def render_scene(scene: Scene, bank: ShapeSource, grid: Grid, cache: dict[str, Any] | None = None,
                 margin_mm: float = 6.0,
                 coarse_spacing_mm: float = 2.5, device: torch.device | str | None = None) -> Rendered:
    """Render every organ of ``scene`` on ``grid``: per-organ SDFs in their boxes and the label map.

    Args:
        scene: a placement Scene.
        bank: the shape bank the scene's shape ids come from.
        grid: output grid (any shape and spacing).
        cache: optional dict of crop tensors reused across calls.
        margin_mm: extra SDF kept around each organ's tight box (for textures near the surface).
        coarse_spacing_mm: along axes with a finer output spacing, organ SDFs are evaluated at
            twice the spacing and upsampled trilinearly (0: always at full resolution).
        device: torch device of the SDF evaluation and label painting (default CPU; checked by
            :func:`anatomix.device.resolve_device`, never a silent fallback). The results are numpy.
    """
    dev = resolve_device(device)
    label_t = torch.zeros(grid.shape, dtype=torch.uint8, device=dev)
    sdf_t: dict[str, tuple[tuple[slice, slice, slice], torch.Tensor]] = {}
    labels: dict[str, int] = {}
    o = np.asarray(grid.origin_mm)
    sp = np.asarray(grid.spacing_mm)
    factors = np.where(sp < coarse_spacing_mm, 2, 1)
    for organ in label_precedence(scene.organs):
        fld = placed_field(organ, bank, cache, device=dev)
        lo, hi = fld.world_box(margin_mm)  # from the pose itself, never from placement's measurements
        sl = grid.box_slices(lo, hi)
        if sl is None:
            continue
        start = o + np.array([b.start for b in sl]) * sp - fld.translation
        n = np.array([b.stop - b.start for b in sl])
        sdf = evaluate_upsampled(fld, start, sp, n, factors)
        label_t[sl][sdf <= 0] = organ.label
        sdf_t[organ.organ] = (sl, sdf)
        labels[organ.organ] = organ.label
    # one copy to the host at the end (a no-op on the CPU: the arrays share the tensors' memory)
    sdfs = {name: (sl, t.cpu().numpy()) for name, (sl, t) in sdf_t.items()}
    return Rendered(label=label_t.cpu().numpy(), sdfs=sdfs, labels=labels, grid=grid)
