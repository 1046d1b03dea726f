"""The Scene: what placement draws and rendering applies (pure parameters, frozen, JSON-able).

A leaf module: it imports nothing of the pipeline, so placement, rendering, appearance, records
and the writer can all depend on it without depending on each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ElasticTerm", "PlacedOrgan", "RelationCheck", "Scene", "SurfaceBulge", "Vec3"]

Vec3 = tuple[float, float, float]


class ElasticTerm(BaseModel):
    """One sine term of the elastic deformation: ``amplitude * sin(2 pi frequency . u + phase)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    amplitude_mm: Vec3
    frequency_per_mm: Vec3
    phase: float


class SurfaceBulge(BaseModel):
    """A local bulge of an organ's surface (contact closing): ``sdf - depth * exp(-|x - c|^2 / (2 r^2))``.

    ``offset_mm`` is the bulge centre relative to the organ's ``translation_mm`` (world axes), so a
    translated organ keeps its bulge; the bulge moves the surface outward by about ``depth_mm`` at
    the centre and fades within a few ``radius_mm``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    offset_mm: Vec3
    radius_mm: float
    depth_mm: float


class PlacedOrgan(BaseModel):
    """One organ of a scene: the pose parameters rendering applies, plus values measured at placement.

    ``centroid_mm``, ``volume_ml``, ``organ_min_mm``/``organ_max_mm`` describe the organ as placed
    (scoring lattice); rendering does not read them, so an edited pose renders as edited.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    organ: str
    label: int
    priority: float = 0.0
    shape_id: str
    blend_shape_id: str | None = None
    blend_weight: float = 0.0
    scale: Vec3
    rotation_deg: Vec3
    translation_mm: Vec3
    elastic: tuple[ElasticTerm, ...] = ()
    bulges: tuple[SurfaceBulge, ...] = ()
    centroid_mm: Vec3
    volume_ml: float
    organ_min_mm: Vec3
    organ_max_mm: Vec3
    attempts: int = 1
    anchor_distance: float = 0.0


class RelationCheck(BaseModel):
    """A relation measured in the placed scene (value: overlap fraction, gap mm, margin mm, inside fraction)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    a: str
    b: str
    hard: bool
    implicit: bool = False
    value: float | None
    tolerance: float = 0.0
    direction: str | None = None
    margin_mm: float = 0.0
    holds: bool


class Scene(BaseModel):
    """A sampled scene: placed organs, dropped / failed organs and the constraint report."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    placement: str
    body_scale: float
    score_spacing_mm: float
    organs: tuple[PlacedOrgan, ...]
    dropped: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    not_in_bank: tuple[str, ...] = ()
    report: tuple[RelationCheck, ...] = ()
    box_min_mm: Vec3
    box_max_mm: Vec3

    @property
    def hard_ok(self) -> bool:
        """Every hard relation holds and no required organ failed."""
        return not self.failed and all(r.holds for r in self.report if r.hard)

    def organ(self, name: str) -> PlacedOrgan:
        for o in self.organs:
            if o.organ == name:
                return o
        raise KeyError(name)
