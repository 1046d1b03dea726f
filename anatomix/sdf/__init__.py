"""FDIF: formula-driven signed-distance primitives, displacements and mappers (torch).

Reusable pieces (all torch, float32, any device; distances in mm, negative inside):

- Primitives (:mod:`anatomix.sdf.primitives`): ``CLASS_NAMES`` (109 FDIF classes),
  ``sample_primitive(name, extent_mm, *, rng) -> params`` (FDIF's draws),
  ``primitive_sdf(params, pts_local) -> (N,)`` (1-Lipschitz), ``local_half_extent(params)``,
  2D helpers ``polygon_sdf2d``, ``star_sdf2d``.
- Poses (:mod:`anatomix.sdf.pose`): ``random_rotation(*, rng)`` (uniform SO(3)),
  ``sample_pose(extent_mm, *, rng)``, ``pose_matrices(pose)``.
- A primitive at a pose inside a box: ``object_sdf(obj, pts_mm, grid)`` and
  ``object_box(obj, grid)`` (:mod:`anatomix.sdf.compose`), ``obj = {"primitive", "pose",
  "displacement", "mapper"}``.
- Displacements (:mod:`anatomix.sdf.displacements`): ``DISPLACEMENT_NAMES`` (9),
  ``sample_displacement(name, *, rng)``, ``displacement_field(spec, pts_mm, half_extent_mm)``,
  ``displacement_bound_mm``.
- Mappers (:mod:`anatomix.sdf.mappers`): ``MAPPER_NAMES`` (10), ``apply_mapper(name, sdf)``,
  ``mapper_margin_mm(name)``.
- Composition: ``render_objects(objects, labels, grid) -> image, label, volumes``;
  ``add_mapped_objects(objects, weights, grid, image)`` (weighted mapped values only); ``Grid``;
  many volumes at once (the GPU path): ``render_batch(cases, labels, grid)`` (:mod:`anatomix.sdf.batch`).
- Generator (:mod:`anatomix.sdf.generator`): ``FdifSynthConfig``, ``FdifGenerator``.
"""

from anatomix.sdf.batch import render_batch
from anatomix.sdf.compose import Grid, add_mapped_objects, object_box, object_sdf, render_objects
from anatomix.sdf.displacements import (DISPLACEMENT_NAMES, displacement_bound_mm,
                                        displacement_field, sample_displacement)
from anatomix.sdf.mappers import MAPPER_NAMES, apply_mapper, mapper_margin_mm
from anatomix.sdf.pose import pose_matrices, random_rotation, sample_pose
from anatomix.sdf.primitives import (CLASS_NAMES, CLASSES, local_half_extent, polygon_sdf2d,
                                     primitive_sdf, sample_primitive, star_sdf2d)

__all__ = [
    "CLASSES", "CLASS_NAMES", "DISPLACEMENT_NAMES", "MAPPER_NAMES", "Grid", "add_mapped_objects", "apply_mapper",
    "displacement_bound_mm", "displacement_field", "local_half_extent", "mapper_margin_mm",
    "object_box", "object_sdf", "polygon_sdf2d", "pose_matrices", "primitive_sdf",
    "random_rotation", "render_batch", "render_objects", "sample_displacement", "sample_pose", "sample_primitive",
    "star_sdf2d",
]
