"""Organ meshes as label maps: STL, OBJ, PLY, OFF (and VTK/GLB where trimesh reads them).

MedShapeNet and many atlases ship organs as surface meshes. ``anatomix ingest-masks`` takes a
mesh file (one subject, one organ) or a folder of meshes (one subject, one organ per file); the
organ is named by the file name (``liver.stl``, ``right lung.obj``: vocabulary names and aliases,
or ``--labels`` renames). Each mesh is closed (trimesh's hole filling; a mesh that stays open is
refused, saying so), voxelised at the requested spacing into a solid (surface voxels, then the
inside filled) and placed on one grid shared by the subject's organs, as a layered
:class:`anatomix.io.LabeledVolume` (organs may touch or overlap, one layer each).

Coordinates: mesh vertices are taken as RAS+ millimetres. 3D Slicer exports surfaces in LPS by
default: negate x and y (or export in RAS).
"""

from __future__ import annotations

import math

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from anatomix.errors import InputError

__all__ = ["MESH_SUFFIXES", "is_mesh_file", "is_mesh_folder", "is_mesh_input", "load_closed_mesh",
           "read_mesh_subject", "voxelise"]

from anatomix.io import MESH_SUFFIXES, LabeledVolume  # noqa: E402  (io owns the file formats)
#: voxelisation pitch cap (mm): meshes are voxelised at min(spacing, this) and resampled by the bank
MAX_PITCH_MM = 1.0


def is_mesh_file(path: str | os.PathLike[str]) -> bool:
    """True for a file whose suffix is a mesh format (:data:`MESH_SUFFIXES`)."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in MESH_SUFFIXES


def is_mesh_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder holding mesh files and no label maps or sub-folders: one subject."""
    p = Path(path)
    if not p.is_dir():
        return False
    entries = [e for e in p.iterdir() if not e.name.startswith(".")]
    return bool(entries) and all(is_mesh_file(e) for e in entries)


def is_mesh_input(path: str | os.PathLike[str]) -> bool:
    """A mesh file or a folder of meshes."""
    return is_mesh_file(path) or is_mesh_folder(path)


def load_closed_mesh(path: str | os.PathLike[str]):  # type: ignore[no-untyped-def]
    """A watertight ``trimesh.Trimesh`` from ``path``, holes filled.

    Raises:
        InputError: unreadable file, no triangles, or a surface that stays open after filling holes.
    """
    import trimesh

    p = Path(path)
    try:
        mesh = trimesh.load(str(p), force="mesh", process=True)
    except Exception as exc:  # trimesh raises many types for bad files
        raise InputError([f"{p}: expected a mesh trimesh can read ({', '.join(MESH_SUFFIXES)}), found an "
                          f"unreadable file ({type(exc).__name__}: {exc}); re-export it as STL, OBJ or PLY"]) from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError([f"{p}: expected a triangle surface, found no triangles (a point cloud or an empty "
                          "scene); export the organ's closed surface"])
    mesh.merge_vertices()
    if not mesh.is_watertight:
        trimesh.repair.fill_holes(mesh)
        trimesh.repair.fix_normals(mesh)
    if not mesh.is_watertight:
        edges = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
        raise InputError([f"{p}: expected a closed surface (a solid organ), found an open mesh with {len(edges)} "
                          "boundary edge(s) that hole filling could not close; repair it (e.g. MeshLab "
                          "'Close Holes', Blender '3D Print Toolbox') or export the organ as a closed surface"])
    return mesh


def voxelise(mesh, pitch_mm: float) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Solid voxelisation of a closed mesh: (centres (N, 3) in mm, the lattice origin used).

    On a lattice of half the pitch: surface voxels by trimesh's subdivision, the inside filled
    (scipy hole filling); then each output voxel is inside when most of its 2 x 2 x 2 fine voxels
    are, which cancels the surface voxels' outward bias (no ray tests). Voxel centres lie on the
    lattice ``(k + 1/4) * pitch_mm`` (shared by every mesh voxelised at this pitch).
    """
    from scipy import ndimage

    fine = pitch_mm / 2.0
    lo = np.floor(mesh.bounds[0] / pitch_mm) - 1           # output lattice index of the grid start
    hi = np.ceil(mesh.bounds[1] / pitch_mm) + 1
    shape = (hi - lo + 1).astype(int)
    start = lo * pitch_mm                                    # fine voxel centres: start + j * fine (trimesh's lattice)
    surface = mesh.voxelized(fine, method="subdivide").points
    idx = np.rint((surface - start) / fine).astype(int)
    fshape = 2 * shape
    idx = idx[np.all((idx >= 0) & (idx < fshape), axis=1)]
    grid = np.zeros(tuple(fshape), dtype=bool)
    grid[tuple(idx.T)] = True
    grid = ndimage.binary_fill_holes(grid)
    votes = grid.reshape(shape[0], 2, shape[1], 2, shape[2], 2).sum(axis=(1, 3, 5))
    solid = votes > 4  # a strict majority: a tie at the surface stays out (>= 4 made a 20 mm box 21 mm)
    # an output voxel's centre is the centre of its 2 x 2 x 2 block: k * pitch + pitch / 4
    return (np.argwhere(solid) + lo) * pitch_mm + fine / 2.0, lo * pitch_mm + fine / 2.0


def read_mesh_subject(path: str | os.PathLike[str], spacing_mm: float | Sequence[float] = 1.0):  # type: ignore[no-untyped-def]
    """A mesh file or a folder of meshes as a layered label map (one organ per file).

    Args:
        path: mesh file (one organ) or folder of mesh files (one subject).
        spacing_mm: the bank spacing; meshes are voxelised at min(spacing, 1 mm).

    Returns:
        :class:`anatomix.io.LabeledVolume` (x, y, z, organs) with ``names`` {1: file stem, ...}.

    Raises:
        InputError: every mesh that cannot be read or closed, all listed at once.
    """
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if is_mesh_file(f))
    pitch = float(min(np.min(np.atleast_1d(np.asarray(spacing_mm, float))), MAX_PITCH_MM))
    problems: list[str] = []
    solids: list[tuple[str, np.ndarray]] = []
    for f in files:
        try:
            centres, _ = voxelise(load_closed_mesh(f), pitch)
        except InputError as e:
            problems.extend(e.problems)
            continue
        if len(centres) == 0:
            problems.append(f"{f}: expected a solid organ, found a mesh smaller than one {pitch:g} mm voxel")
            continue
        name = f.name[: -len(f.suffix)]
        solids.append((name, centres))
    if problems:
        raise InputError(problems)
    # a closed mesh is a whole organ: leave empty voxels around the union (two bank voxels), or
    # every organ touching the grid's faces would be taken as cut by a field of view
    pad = pitch * math.ceil(2.0 * float(np.max(np.atleast_1d(np.asarray(spacing_mm, float)))) / pitch)
    lo = np.min([c.min(axis=0) for _, c in solids], axis=0) - pad
    hi = np.max([c.max(axis=0) for _, c in solids], axis=0) + pad
    shape = tuple(int(s) for s in np.rint((hi - lo) / pitch).astype(int) + 1)
    layers = np.zeros(shape + (len(solids),), dtype=np.uint8)
    names: dict[int, str] = {}
    for k, (name, centres) in enumerate(solids):
        idx = np.rint((centres - lo) / pitch).astype(int)
        layers[idx[:, 0], idx[:, 1], idx[:, 2], k] = k + 1
        names[k + 1] = name
    array = layers[..., 0] if len(solids) == 1 else layers
    return LabeledVolume(array=array, spacing_mm=(pitch, pitch, pitch), origin_mm=tuple(float(v) for v in lo),
                         names=names, layered=len(solids) > 1)
