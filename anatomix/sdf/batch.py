"""Batched FDIF rendering: the objects of many volumes in one pass per primitive class.

The per-volume renderer (:func:`anatomix.sdf.compose.render_objects`) issues a few hundred small
operations per object and syncs with the host in its block culling: on a GPU it should wait on
the launches, not the arithmetic (not yet measured). Here every voxel of every object's box (the
culled renderer's box: pose, displacement bound and mapper margin) that culling keeps is one point
of a flat batch, and the host loops over kinds, never over objects or volumes:

0. culling by 4^3 blocks, with the bound of the culled renderer's first level;
1. objects sorted by class; each class's points evaluated together, every point with its own
   object's parameters (:class:`anatomix.sdf.sections.PerObject`);
2. each displacement added over all the points of the objects that have it;
3. each mapper applied over its objects' points (tails truncated, as both other renderers) and
   summed into the images; inside voxels counted per object;
4. labels: at each voxel, of the objects whose displaced SDF is negative, the one
   :func:`render_objects` paints last wins (the smallest, then the later in the list).

So a part of a batch (up to ``max_points`` box voxels: 64 volumes at 96^3 are one part) costs
the host one loop over the classes (culling), one over the classes and displacements, one over the
mappers and one for the labels, each in steps of at most ``chunk_points`` points, whatever the
number of volumes; it syncs three times (the kept blocks' count and ids, the volume counts).
Counts per object are cumulative sums read at the objects' ends, not atomic adds. On a GPU the
images are summed with atomic float adds, so a GPU image may differ from run to run in the last
bit (labels and volumes do not).

A case does not depend on the batch it is rendered in: its points, parameters and sums are its
own and are summed in one fixed order (tests/test_sdf_batch.py compares bytes). Against
:func:`render_objects` it agrees within the tolerances stated for CPU against CUDA
(tests/test_cuda.py): the pose is applied as three multiply-adds, not a matrix product, and
mapped values are summed per mapper, not per object, so a value on an integer boundary may
truncate the other way and a voxel on a surface may flip.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from anatomix.device import resolve_device, to_device
from anatomix.grid import Grid
from anatomix.sdf.compose import block_half_diagonal_mm, object_box
from anatomix.sdf.displacements import DisplacementField, displacement_lipschitz, displacement_range_mm
from anatomix.sdf.mappers import apply_mapper_truncated, mapper_margin_mm
from anatomix.sdf.pose import affine_rows, pose_matrices
from anatomix.sdf.primitives import PrimitiveSDF
from anatomix.sdf.sections import PerObject

__all__ = ["render_batch"]

# points per step: up to about 560 bytes of temporaries each (9-gon prisms), so 1.2 GB on the
# CPU, 9 GB on a GPU, where fewer, larger steps are what pays. A step never splits an object, so
# one object's kept box voxels (at most the grid) make a step at least
CHUNK_POINTS = {"cpu": 1 << 21, "cuda": 1 << 24}
# box voxels of a part: a part holds 32 bytes per block (0.5 per box voxel) and 4 per kept voxel
# (FDIF 96^3: about 9.1 M box voxels a volume, 1.9 M kept); each part runs every step again
MAX_POINTS = 1 << 30
# the order of the passes (culling and SDFs by class, then displacements; mappers; labels)
_KIND_ORDER = ("class", "displacement", "mapper")
# culling blocks of 4^3 voxels: every object's points are whole blocks (voxels beyond its box
# padded and masked), so every step's length is a multiple of 64 and torch's vectorised CPU
# kernels never fall back to their scalar tail (whose sin, exp, ... round differently): a case's
# values never depend on the objects before it in a step
BLOCK = 4
_OFFSETS = np.stack(np.meshgrid(*[np.arange(BLOCK)] * 3, indexing="ij")).reshape(3, -1)


@dataclass
class _Points:
    """Voxels of the kept blocks of a selection of objects: ``pos`` (which selected object),
    ``valid`` (False on the padding beyond a box; its flat index is the box's nearest voxel),
    world mm rows (3, N), flat voxel index into the batch's images, and index into the SDF buffer."""

    pos: torch.Tensor
    valid: torch.Tensor
    world: torch.Tensor
    flat: torch.Tensor
    sdf_index: torch.Tensor


class _Objects:
    """A batch's objects on the host, sorted by class: boxes, poses, culling bounds; after
    :meth:`cull`, which of their 4^3 blocks are evaluated and where their values lie."""

    def __init__(self, cases: Sequence[Sequence[dict[str, Any]]], placed: Sequence[Sequence[tuple[Any, Any]]],
                 grid: Grid, device: torch.device) -> None:
        self.grid, self.device = grid, device
        rows = [(obj["primitive"]["class"], b, i, obj, pose, box)
                for b, (objects, poses) in enumerate(zip(cases, placed))
                for i, (obj, (pose, box)) in enumerate(zip(objects, poses)) if box is not None]
        rows.sort(key=lambda r: r[0])  # stable: within a class, batch order
        self.objects = [r[3] for r in rows]
        self.case = np.array([r[1] for r in rows], dtype=np.int64)
        self.index = np.array([r[2] for r in rows], dtype=np.int64)
        self.lo = np.array([[s.start for s in r[5]] for r in rows], dtype=np.int64).reshape(-1, 3)
        self.hi = np.array([[s.stop for s in r[5]] for r in rows], dtype=np.int64).reshape(-1, 3)
        nb = -(-(self.hi - self.lo) // BLOCK)
        self.blocks = nb.prod(axis=1)
        self.block_start = np.cumsum(self.blocks) - self.blocks
        self.block_columns = np.stack([nb[:, 1] * nb[:, 2], nb[:, 2], *self.lo.T, self.block_start]).reshape(6, -1)
        # per object, on the device once: world -> local map (9 + 3), the 1-Lipschitz factor of a
        # shear (as render_objects), and the culling slack below (displacement's inf less the
        # mapper's margin) and without the displacement (less the margin only)
        floats = []
        for obj, (_, a, anorm) in zip(self.objects, (r[4] for r in rows)):
            t = np.asarray(obj["pose"]["translation_mm"], dtype=np.float64)
            disp = obj.get("displacement")
            margin = mapper_margin_mm(obj["mapper"])
            dlo = displacement_range_mm(disp["name"], grid.half_extent_mm)[0] if disp else 0.0
            floats.append(np.concatenate([a.ravel(), -(a @ t), [1.0 / anorm if anorm > 1.0 else 1.0,
                                                                 dlo - margin, -margin]]))
        self.sheared = any(f[12] != 1.0 for f in floats)
        self.per_object = to_device(np.array(floats).reshape(-1, 15).T, dtype=torch.float32, device=device)
        nx, ny, nz = grid.shape
        self.centre = to_device([[nx // 2], [ny // 2], [nz // 2]], dtype=torch.float32, device=device)
        self.spacing = to_device(grid.spacing_mm, dtype=torch.float32, device=device)[:, None]
        self.shift = (to_device(grid.shift_mm, dtype=torch.float32, device=device)[:, None]
                      if any(grid.shift_mm) else None)
        self.offsets = to_device(_OFFSETS, device=device)
        self.offsets_mm = self.offsets.to(torch.float32).mul_(self.spacing)
        self.strides = to_device([[ny * nz], [nz], [1]], device=device)
        self.kept = np.zeros(len(rows), dtype=np.int64)  # kept blocks per object (after cull)

    def runs(self, ids: Sequence[int], per_object: np.ndarray, chunk: int) -> list[np.ndarray]:
        """``ids`` split into consecutive runs of at most ``chunk`` units (``per_object`` of each
        object; one object at least)."""
        out: list[np.ndarray] = []
        cur: list[int] = []
        n = 0
        for k in ids:
            if cur and n + per_object[k] > chunk:
                out.append(np.array(cur))
                cur, n = [], 0
            cur.append(k)
            n += int(per_object[k])
        if cur:
            out.append(np.array(cur))
        return out

    def world(self, voxels: torch.Tensor) -> torch.Tensor:
        """World mm (3, N) float32 of voxel indices (3, N) (float, block centres included)."""
        world = voxels.to(torch.float32).sub_(self.centre).mul_(self.spacing)
        return world.add_(self.shift) if self.shift is not None else world

    def _gather(self, counts: np.ndarray, columns: list[np.ndarray]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``pos`` (selected object of each of ``counts.sum()`` items) and the per-object
        ``columns`` gathered per item: one copy to the device, one gather."""
        n = int(counts.sum())
        small = to_device(np.stack([counts, np.cumsum(counts) - counts, *columns]), device=self.device)
        pos = torch.repeat_interleave(torch.arange(len(counts), device=self.device), small[0], output_size=n)
        per_item = torch.index_select(small[1:], 1, pos)
        local = torch.arange(n, device=self.device).sub_(per_item[0])
        return pos, [local, *per_item[1:].unbind(0)]

    def all_blocks(self, sel: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every block of the objects ``sel``: (pos, object id, corner voxel (3, n), block id)."""
        pos, (local, ids, nyz, nz, lo0, lo1, lo2, start) = self._gather(self.blocks[sel],
                                                                        [sel, *self.block_columns[:, sel]])
        i = torch.div(local, nyz, rounding_mode="floor")
        rest = local - i * nyz
        j = torch.div(rest, nz, rounding_mode="floor")
        corner = torch.stack([i * BLOCK + lo0, j * BLOCK + lo1, (rest - j * nz) * BLOCK + lo2])
        return pos, ids, corner, start + local

    def cull(self, keep: torch.Tensor, corners: torch.Tensor) -> None:
        """Keep the blocks where ``keep`` (over every block): two host syncs, the counts and the ids."""
        self.kept = segment_sums(keep, self.blocks, self.device).cpu().numpy()
        self.kept_first = np.cumsum(self.kept) - self.kept
        self.kept_corner = corners[:, torch.nonzero(keep).squeeze(1)]
        self.total = int(self.kept.sum()) * BLOCK ** 3

    def points(self, sel: np.ndarray, world: bool = True) -> _Points:
        """The voxels of the kept blocks of objects ``sel``, block by block (x-major in a block);
        world coordinates only where asked."""
        nvox = math.prod(self.grid.shape)
        pos, (local, first, hi0, hi1, hi2, case_base) = self._gather(
            self.kept[sel], [self.kept_first[sel], *self.hi[sel].T, self.case[sel] * nvox])
        block = first.add_(local)
        corner = self.kept_corner[:, block]  # (3, blocks)
        off = self.offsets
        # voxels beyond the box's upper faces (blocks on those faces only) are padding; their flat
        # index is the nearest voxel of the box (they add 0 there), not one shared address
        room = [(hi - corner[a] - 1)[:, None] for a, hi in enumerate((hi0, hi1, hi2))]
        valid = ((off[0] <= room[0]) & (off[1] <= room[1]) & (off[2] <= room[2])).view(-1)
        flat = ((corner * self.strides).sum(0) + case_base)[:, None]
        for a in range(3):
            flat = flat + torch.minimum(off[a], room[a]) * self.strides[a]
        flat = flat.view(-1)
        sdf_index = (block[:, None] * BLOCK ** 3 + torch.arange(BLOCK ** 3, device=self.device)).view(-1)
        mm = torch.empty(0, device=self.device)
        if world:
            mm = (self.world(corner)[:, :, None] + self.offsets_mm[:, None, :]).view(3, -1)
        return _Points(pos.repeat_interleave(BLOCK ** 3), valid, mm, flat, sdf_index)

    def sdf(self, sel: np.ndarray, pos: torch.Tensor, world: torch.Tensor) -> torch.Tensor:
        """Undisplaced SDF of objects ``sel`` (consecutive, one class) at world points, point n
        of ``sel[pos[n]]``."""
        cols = torch.index_select(self.per_object[:13, int(sel[0]):int(sel[-1]) + 1], 1, pos)
        local = affine_rows(cols[:9].view(3, 3, -1), cols[9:12], world)
        d = PrimitiveSDF.batched([self.objects[s]["primitive"] for s in sel], pos)(local[0], local[1], local[2])
        return d.mul_(cols[12]) if self.sheared else d

    def displacement(self, sel: np.ndarray, pos: torch.Tensor, world: torch.Tensor) -> torch.Tensor:
        """Displacement (mm) of objects ``sel`` (one displacement name) at world points."""
        field = DisplacementField.batched([self.objects[s]["displacement"] for s in sel], self.grid.half_extent_mm,
                                          PerObject(pos, torch.float32, self.device))
        return field(world)


def render_batch(
    cases: Sequence[Sequence[dict[str, Any]]],
    labels: Sequence[Sequence[int]],
    grid: Grid,
    *,
    clip: tuple[float, float] = (0.0, 128.0),
    quantize: bool = True,
    device: torch.device | str = "cpu",
    chunk_points: int | None = None,
    max_points: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Render several volumes' objects at once (as :func:`anatomix.sdf.compose.render_objects`
    renders one).

    Args:
        cases: per volume, its objects (``primitive``, ``pose``, ``displacement``, ``mapper``).
        labels: per volume, the label value (1..255) of each of its objects.
        grid: the output grid (every volume's).
        clip / quantize: as :func:`render_objects` (FDIF: clip to 0..128, truncate).
        device: torch device; checked by :func:`anatomix.device.resolve_device`.
        chunk_points: points evaluated per step (memory against launches; default
            :data:`CHUNK_POINTS` of the device type).
        max_points: box voxels held at once; a batch with more is rendered in consecutive parts
            (default :data:`MAX_POINTS`).

    Returns:
        images float32 (B, x, y, z), labels uint8 (B, x, y, z), per volume the voxel count
        inside each object.
    """
    device = resolve_device(device)
    chunk_points = CHUNK_POINTS[device.type] if chunk_points is None else int(chunk_points)
    max_points = MAX_POINTS if max_points is None else int(max_points)
    if len(labels) != len(cases) or any(len(a) != len(b) for a, b in zip(cases, labels)):
        raise ValueError("render_batch: labels must give one value per object of every case")
    n = len(cases)
    # every object's pose matrices and box, once: they size the parts and then place the points
    placed = [_placed(objects, grid) for objects in cases]
    images = torch.zeros((n,) + tuple(grid.shape), dtype=torch.float32, device=device)
    label_maps = torch.zeros((n,) + tuple(grid.shape), dtype=torch.uint8, device=device)
    volumes: list[list[int]] = []
    part: list[int] = []
    size = 0
    for b in range(n + 1):  # consecutive parts of at most max_points box voxels (one case at least)
        box_voxels = sum(math.prod(s.stop - s.start for s in box) for _, box in placed[b] if box) if b < n else 0
        if part and (b == n or size + box_voxels > max_points):
            sl = slice(part[0], part[-1] + 1)
            volumes += _render_part(cases[sl], placed[sl], labels[sl], grid, images[sl], label_maps[sl], device,
                                    chunk_points)
            part, size = [], 0
        part.append(b)
        size += box_voxels
    images.clamp_(clip[0], clip[1])
    if quantize:
        images.floor_()
    return images, label_maps, volumes


def segment_sums(values: torch.Tensor, counts: np.ndarray, device: torch.device) -> torch.Tensor:
    """Sums (int64) of consecutive segments of ``values`` (bool or integer, (N,)) of lengths
    ``counts`` (host): a cumulative sum read at the segments' ends, no atomic adds."""
    total = torch.zeros(values.numel() + 1, dtype=torch.int64, device=device)
    torch.cumsum(values, 0, dtype=torch.int64, out=total[1:])
    ends = to_device(np.stack([np.cumsum(counts) - counts, np.cumsum(counts)]), device=device)
    return total[ends[1]] - total[ends[0]]


def _placed(objects: Sequence[dict[str, Any]], grid: Grid) -> list[tuple[Any, Any]]:
    """Each object's pose matrices and its box on ``grid`` (None if it misses the grid)."""
    out = []
    for obj in objects:
        pose = pose_matrices(obj["pose"])
        out.append((pose, object_box(obj, grid, pose)))
    return out


def _render_part(cases, placed, labels, grid, images, label_maps, device, chunk_points) -> list[list[int]]:
    """Render ``cases`` (their objects' pose matrices and boxes: ``placed``) into ``images`` and
    ``label_maps`` (views of the batch's outputs)."""
    table = _Objects(cases, placed, grid, device)
    k = len(table.objects)
    if k == 0:  # nothing inside the grid
        return [[0] * len(objects) for objects in cases]
    by_kind: dict[tuple[str, str], list[int]] = defaultdict(list)
    for idx, obj in enumerate(table.objects):
        by_kind["class", obj["primitive"]["class"]].append(idx)
        if obj.get("displacement"):
            by_kind["displacement", obj["displacement"]["name"]].append(idx)
        by_kind["mapper", obj["mapper"]].append(idx)
    # kinds in a fixed order: a voxel's sum over its objects never depends on the rest of the batch
    kinds = sorted(by_kind.items(), key=lambda item: (_KIND_ORDER.index(item[0][0]), item[0][1]))

    # 0. culling, as render_objects at its first level: the undisplaced SDF at each block's
    # centre bounds the displaced SDF over the block (1-Lipschitz, +- the half-diagonal, the
    # displacement's range and, where it has one, its Lipschitz bound); blocks beyond the
    # mapper's margin outside are dropped (their truncated mapped values are exactly 0)
    rho = block_half_diagonal_mm(BLOCK, grid.spacing_mm)
    centre_sdf = torch.empty(int(table.blocks.sum()), dtype=torch.float32, device=device)
    low = torch.empty_like(centre_sdf)  # lower bound of the displaced SDF over the block, less the margin
    corners = torch.empty((3, low.numel()), dtype=torch.int64, device=device)
    for (kind, name), ids in kinds:
        if kind == "mapper" or (kind == "displacement" and not math.isfinite(displacement_lipschitz(name))):
            continue
        for sel in table.runs(ids, table.blocks, chunk_points):  # a block is one point here
            pos, owner, corner, rows = table.all_blocks(sel)
            centre = table.world(corner.to(torch.float32).add_((BLOCK - 1) / 2.0))
            if kind == "class":
                corners[:, rows] = corner
                c = table.sdf(sel, pos, centre)
                centre_sdf[rows] = c
                low[rows] = c.add_(table.per_object[13][owner]).sub_(rho)
            else:  # the displaced SDF at the centre, less (1 + L) rho
                c = centre_sdf[rows].add_(table.displacement(sel, pos, centre))
                c.sub_((1.0 + displacement_lipschitz(name)) * rho).add_(table.per_object[14][owner])
                low[rows] = torch.maximum(low[rows], c)
    table.cull(low <= 0.0, corners)
    del centre_sdf, low, corners
    sdf = torch.empty(table.total, dtype=torch.float32, device=device)

    # 1. primitives, class by class (each class's objects are consecutive in the table)
    # 2. displacements, name by name, added at each object's points
    for (kind, _), ids in kinds:
        if kind not in ("class", "displacement"):
            continue
        for sel in table.runs(ids, table.kept * BLOCK ** 3, chunk_points):
            pts = table.points(sel)
            if kind == "class":
                g0 = int(table.kept_first[sel[0]]) * BLOCK ** 3
                sdf[g0:g0 + pts.pos.numel()] = table.sdf(sel, pts.pos, pts.world)
            else:
                sdf.index_add_(0, pts.sdf_index, table.displacement(sel, pts.pos, pts.world))

    # 3. mappers, name by name in a fixed order (a voxel's sum never depends on the rest of the
    # batch), summed into the images; inside voxels counted per object
    volume = torch.zeros(k, dtype=torch.int64, device=device)
    for (kind, name), ids in kinds:
        if kind != "mapper":
            continue
        for sel in table.runs(ids, table.kept * BLOCK ** 3, chunk_points):
            pts = table.points(sel, world=False)
            d = sdf[pts.sdf_index]
            images.view(-1).index_add_(0, pts.flat, apply_mapper_truncated(name, d).masked_fill_(~pts.valid, 0.0))
            inside = (d < 0.0).logical_and_(pts.valid)
            volume.index_copy_(0, to_device(sel, device=device), segment_sums(inside, table.kept[sel] * BLOCK ** 3,
                                                                             device))

    # 4. labels: the object painted last wins, i.e. the largest key (smaller volume, then later index)
    nvox = math.prod(grid.shape)
    per_case = max(len(objects) for objects in cases) + 1
    order = (nvox + 1 - volume).mul_(per_case).add_(to_device(table.index, device=device))
    winner = torch.full((len(cases) * nvox,), -1, dtype=torch.int64, device=device)
    for sel in table.runs(range(k), table.kept * BLOCK ** 3, chunk_points):
        pts = table.points(sel, world=False)
        g0 = int(table.kept_first[sel[0]]) * BLOCK ** 3
        inside = (sdf[g0:g0 + pts.pos.numel()] < 0.0).logical_and_(pts.valid)
        key = torch.where(inside, order[to_device(sel, device=device)][pts.pos], -1)
        winner.scatter_reduce_(0, pts.flat, key, reduce="amax")
    lut_host = np.zeros((len(cases), per_case), dtype=np.uint8)
    for b, values in enumerate(labels):
        lut_host[b, :len(values)] = [int(v) for v in values]
    lut = to_device(lut_host, device=device)
    winner = winner.view(len(cases), nvox)
    painted = torch.gather(lut, 1, winner.remainder(per_case))  # -1 -> the unused last column (0)
    label_maps.view(len(cases), nvox).copy_(painted)

    counts = volume.cpu().tolist()  # the part's third host sync
    out = [[0] * len(objects) for objects in cases]
    for idx, v in enumerate(counts):
        out[int(table.case[idx])][int(table.index[idx])] = int(v)
    return out
