"""Sequential, structure-aware placement of bank shapes: ``sample_scene(graph, bank, rng, config) -> Scene``.

A Scene is pure parameters (frozen pydantic, JSON-able): for every placed organ the bank shape
(and the second subject's shape it is blended with in SDF space), scale, rotation, translation
and elastic deformation, plus the constraint report. Rendering it (:mod:`anatomix.render`) is
deterministic.

Algorithm (``placement: structured``):

1. A virtual subject: ``body_scale`` drawn in ``config.body_scale``; anchors and parent offsets
   are multiplied by it, organ scales too.
2. Organs in ``graph.placement_order()``; an optional organ appears with its graph probability.
3. For each organ, up to ``shape_attempts`` shape draws: a bank shape (complete shapes preferred
   over truncated ones), with probability ``interpolation_probability`` blended with another
   subject's shape of the same organ (crops aligned about their centroids, SDFs mixed with a
   uniform weight), a scale and rotation within the graph's ranges (proper rotations only, no
   mirroring), and a smooth random elastic deformation (a few long-wavelength sine terms).
   The organ's SDF is evaluated once on a coarse lattice (``score_spacing_mm``, default 3 mm) in
   its bounding box.
4. ``candidates`` positions are drawn from the anchor (or, for an organ with an ``attached_to``
   parent, from the parent's placed centroid plus the graph's offset statistics), snapped to the
   lattice so every candidate reuses that one evaluation (integer shifts).
5. Each candidate is measured against every relation with the organs already placed (explicit
   ones and the implicit ``avoid`` between unrelated pairs), with the definitions of
   :mod:`anatomix.relations`: hard relations reject (avoid: overlap fraction above tolerance;
   direction: centroid margin; inside: inside fraction), soft ones rank (contact: surface gap;
   anchor: Mahalanobis distance). The best valid candidate is then moved towards its unmet
   contact partners, one lattice step at a time, while every hard relation keeps holding.
6. No valid candidate: a new shape draw; after ``shape_attempts``, an optional organ is dropped
   and a required one is recorded as failed (and left out: a missing organ is less wrong than
   an overlapping one).

The constraint report is measured at the end with :mod:`anatomix.relations` on the lattice
SDFs, for every relation of the graph between organs present (implicit avoids included).

``placement: random`` (ablation, like FDIF/PrimGeoSeg placing primitives): shapes at uniform
random positions inside the body box and random rotations, no constraint check; the report
is still measured, so the violations show.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from anatomix import relations as rel
from anatomix.errors import AnatomixError
from anatomix.render import OrganField, _eval_upsampled, organ_field

__all__ = [
    "ElasticTerm",
    "PlacedOrgan",
    "PlacementConfig",
    "PlacementError",
    "RelationCheck",
    "Scene",
    "check_inputs",
    "graph_organs",
    "graph_relations",
    "missing_organs",
    "sample_scene",
]

Vec3 = tuple[float, float, float]


class PlacementError(AnatomixError):
    """The graph and the bank cannot make a scene (missing shapes, unknown organs, ...)."""


# ---------------------------------------------------------------------------------------------
# configuration and the Scene
# ---------------------------------------------------------------------------------------------


class PlacementConfig(BaseModel):
    """Placement settings (section ``placement`` of configs/synth.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["structured", "random"] = "structured"
    candidates: int = Field(16, ge=1, le=256, description="candidate poses per shape draw (K)")
    shape_attempts: int = Field(6, ge=1, le=50, description="shape draws before dropping an organ")
    score_spacing_mm: float = Field(4.0, gt=0.5, le=10.0, description="lattice spacing for scoring, mm")
    body_scale: tuple[float, float] = (0.92, 1.08)
    interpolation_probability: float = Field(0.8, ge=0.0, le=1.0)
    truncated_weight: float = Field(0.05, ge=0.0, le=1.0,
                                    description="draw weight of a truncated shape relative to a complete one")
    elastic_amplitude_mm: float = Field(3.0, ge=0.0, le=15.0)
    elastic_wavelength_mm: tuple[float, float] = (70.0, 160.0)
    elastic_terms: int = Field(3, ge=0, le=8)
    default_rotation_deg: float = Field(8.0, ge=0.0, le=180.0)
    default_scale: tuple[float, float] = (0.9, 1.1)
    anisotropy: float = Field(0.05, ge=0.0, le=0.3, description="per-axis scale jitter around the organ scale")
    neighbour_spread: float = Field(0.4, gt=0.0, le=2.0,
                                    description="candidate spread around the contact partners' prediction, "
                                                "in units of the anchor std")
    position_spread: float = Field(1.0, gt=0.0, le=5.0, description="candidate spread in units of the anchor std")
    anchor_source: Literal["shape", "graph"] = Field(
        "shape", description="shape: a bank shape's own body-frame centroid is its anchor (subjects whose "
                             "frame is exact), the graph anchor otherwise; graph: always the graph anchor")
    subject_coherence: float = Field(
        0.5, ge=0.0, le=1.0, description="probability that a shape comes from the subject of its placed parent "
                                         "or contact partners (always on retries)")
    contact_weight: float = Field(1.0, ge=0.0)
    anchor_weight: float = Field(0.3, ge=0.0)
    fallback: bool = Field(True, description="after the shape draws, one more try with the bank shape "
                                             "unaltered, 4x the candidates, all pushed out of overlaps")
    repair: int = Field(2, ge=0, le=10, description="blockers lifted out and placed again when a required "
                                                   "organ fits nowhere (0: off)")
    push_candidates: int = Field(8, ge=0, le=64, description="rejected candidates pushed out of overlaps")
    push_keep: int = Field(2, ge=1, le=64, description="stop pushing once this many pushed candidates are valid")
    push_steps: int = Field(6, ge=0, le=20, description="lattice steps of one push-out")
    contact_steps: int = Field(12, ge=0, le=50, description="lattice steps towards unmet contacts")
    default_avoid_tolerance: float = Field(0.02, ge=0.0, le=1.0)
    lattice_margin_mm: float = Field(9.0, ge=0.0, le=50.0)

    @field_validator("body_scale", "default_scale", "elastic_wavelength_mm")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1]):
            raise ValueError(f"a range (min, max) with 0 < min <= max, found {v}")
        return v


class ElasticTerm(BaseModel):
    """One sine term of the elastic deformation: ``amplitude * sin(2 pi frequency . u + phase)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    amplitude_mm: Vec3
    frequency_per_mm: Vec3
    phase: float


class PlacedOrgan(BaseModel):
    """One organ of a scene: pure parameters plus a few values measured at placement."""

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


# ---------------------------------------------------------------------------------------------
# reading the graph (duck-typed on the contract API, tolerant to field naming)
# ---------------------------------------------------------------------------------------------


@dataclass
class OrganInfo:
    name: str
    label: int
    mean: np.ndarray
    cov: np.ndarray
    required: bool
    probability: float
    rot_lo: np.ndarray
    rot_hi: np.ndarray
    scale_lo: float
    scale_hi: float
    priority: float
    parent: str | None
    offset_mean: np.ndarray | None
    offset_cov: np.ndarray | None


@dataclass
class Rel:
    kind: str
    a: str
    b: str
    hard: bool
    tolerance: float
    direction: str | None
    margin_mm: float
    implicit: bool = False


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if obj is None:
            return default
        if isinstance(obj, dict):
            if n in obj and obj[n] is not None:
                return obj[n]
        elif getattr(obj, n, None) is not None:
            return getattr(obj, n)
    return default


def _range3(value: Any, default: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotation range -> per-axis (lo, hi) degrees. Accepts a number, (lo, hi), or 3 pairs."""
    if value is None:
        return np.full(3, -default), np.full(3, default)
    if isinstance(value, (int, float)):
        return np.full(3, -abs(float(value))), np.full(3, abs(float(value)))
    if isinstance(value, dict):
        value = (_get(value, "min", "lo"), _get(value, "max", "hi"))
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (2,):
        return np.full(3, arr[0]), np.full(3, arr[1])
    if arr.shape == (3, 2):
        return arr[:, 0].copy(), arr[:, 1].copy()
    if arr.shape == (3,):
        return -np.abs(arr), np.abs(arr)
    raise PlacementError(f"rotation range: expected a number, (min, max) or 3 x (min, max); found {value!r}")


def _scale_range(value: Any, default: tuple[float, float]) -> tuple[float, float]:
    if value is None:
        return default
    if isinstance(value, dict):
        return float(_get(value, "min", "lo")), float(_get(value, "max", "hi"))
    lo, hi = value
    return float(lo), float(hi)


def graph_organs(graph: Any, config: PlacementConfig) -> dict[str, OrganInfo]:
    """Organ specs of a graph (contract ``OrganGraph``), in placement order."""
    out: dict[str, OrganInfo] = {}
    for name in graph.placement_order():
        spec = graph.organ(name)
        anchor = _get(spec, "anchor")
        mean = np.asarray(_get(anchor, "mean_mm", "mean", default=_get(spec, "anchor_mean_mm")), dtype=np.float64)
        cov = np.asarray(_get(anchor, "cov_mm", "cov", "covariance_mm", default=_get(spec, "anchor_cov_mm")),
                         dtype=np.float64)
        if cov.shape == (3,):
            cov = np.diag(cov)
        prob = _get(spec, "probability", default=1.0)
        required = bool(_get(spec, "required", default=prob is None or float(prob) >= 1.0))
        rlo, rhi = _range3(_get(spec, "rotation_deg", "rotation"), config.default_rotation_deg)
        slo, shi = _scale_range(_get(spec, "scale", "scale_range"), config.default_scale)
        parent = graph.parent(name) if hasattr(graph, "parent") else _get(spec, "parent")
        off = _get(spec, "offset", "parent_offset")
        om = _get(off, "mean_mm", "mean", default=_get(spec, "offset_mean_mm"))
        oc = _get(off, "cov_mm", "cov", default=_get(spec, "offset_cov_mm"))
        om_a = None if om is None else np.asarray(om, dtype=np.float64)
        oc_a = None if oc is None else np.asarray(oc, dtype=np.float64)
        if oc_a is not None and oc_a.shape == (3,):
            oc_a = np.diag(oc_a)
        out[name] = OrganInfo(
            name=name, label=int(_get(spec, "label", "value", "label_value")), mean=mean, cov=cov,
            required=required, probability=1.0 if required else float(prob if prob is not None else 1.0),
            rot_lo=rlo, rot_hi=rhi, scale_lo=slo, scale_hi=shi,
            priority=float(_get(spec, "priority", default=0.0)), parent=parent,
            offset_mean=om_a, offset_cov=oc_a)
    return out


def graph_relations(graph: Any, organs: Iterable[str], config: PlacementConfig) -> list[Rel]:
    """Every relation between ``organs`` (explicit ones, plus implicit avoids if the graph omits them)."""
    names = list(organs)
    present = set(names)
    rels: list[Rel] = []
    related: set[frozenset[str]] = set()
    contact_overlap: dict[frozenset[str], float] = {}
    for r in graph.relations():
        kind = str(_get(r, "type", "kind"))
        a, b = str(_get(r, "a")), str(_get(r, "b"))
        if a not in present or b not in present:
            continue
        related.add(frozenset((a, b)))
        if kind == "contact" and _get(r, "max_overlap") is not None:
            contact_overlap[frozenset((a, b))] = float(_get(r, "max_overlap"))
        if kind == "attached_to":
            continue
        tol = _get(r, "tolerance", "tolerance_mm")
        if tol is None:
            tol = config.default_avoid_tolerance if kind == "avoid" else (3.0 if kind == "contact" else 0.0)
        rels.append(Rel(kind=kind, a=a, b=b, hard=bool(_get(r, "hard", default=kind != "contact")),
                        tolerance=float(tol), direction=_get(r, "direction"),
                        margin_mm=float(_get(r, "margin_mm", "margin", default=0.0)),
                        implicit=bool(_get(r, "implicit", default=False))))
    no_overlap = {frozenset((r.a, r.b)) for r in rels if r.kind in ("avoid", "inside")}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if frozenset((a, b)) not in no_overlap:
                # unrelated, or related by contact / direction / attached_to only: organs touch at
                # most, their volumes never overlap (implicit hard avoid)
                tol = contact_overlap.get(frozenset((a, b)), config.default_avoid_tolerance)
                rels.append(Rel("avoid", a, b, True, tol, None, 0.0, implicit=True))
    return rels


def missing_organs(graph: Any, bank: Any) -> list[str]:
    """Graph organs the bank has no shape of, in placement order (they are left out of every scene)."""
    bank_organs = set(getattr(bank, "organs", []) or [])
    return [n for n in graph.placement_order() if n not in bank_organs or not list(bank.shapes(n))]


def check_inputs(graph: Any, bank: Any, config: PlacementConfig | None = None, strict: bool = False) -> list[str]:
    """Problems that make the (graph, bank) pair unusable, all at once (empty list: fine).

    A graph organ without shapes in the bank is not a problem (it is left out of every scene,
    see :func:`missing_organs`) unless ``strict``; a bank holding none of the graph's organs is.
    """
    config = config or PlacementConfig()
    problems: list[str] = []
    try:
        organs = graph_organs(graph, config)
    except Exception as exc:  # noqa: BLE001 - reported as a problem line
        return [f"graph: cannot read the organ specs ({exc})"]
    bank_organs = set(getattr(bank, "organs", []) or [])
    missing = set(missing_organs(graph, bank))
    if organs and missing >= set(organs):
        problems.append(f"the bank has no shape of any of the graph's {len(organs)} organs "
                        f"(graph: {', '.join(organs)}; bank: {', '.join(sorted(bank_organs)) or 'none'}); "
                        f"use a bank made from label maps of these organs, or a graph of the bank's organs")
    elif strict:
        for name in organs:
            if name in missing:
                problems.append(f"organ {name!r}: the bank has no shape of it (bank organs: "
                                f"{', '.join(sorted(bank_organs)) or 'none'}); add its shapes to the bank "
                                f"or remove it from the graph")
    for name, info in organs.items():
        if info.mean.shape != (3,) or info.cov.shape != (3, 3):
            problems.append(f"organ {name!r}: anchor needs mean (3) and cov (3x3), found "
                            f"{info.mean.shape} and {info.cov.shape}")
        elif not np.all(np.linalg.eigvalsh(info.cov) > 0):
            problems.append(f"organ {name!r}: anchor covariance is not positive definite")
        if not 0 <= info.label <= 255:
            problems.append(f"organ {name!r}: label {info.label} does not fit a uint8 label map")
    return problems


# ---------------------------------------------------------------------------------------------
# lattice representation of a shape draw
# ---------------------------------------------------------------------------------------------


@dataclass
class _Lattice:
    """An organ's SDF on the scoring lattice, in offsets from its (lattice-snapped) translation."""

    sdf: np.ndarray  # float32 (nx, ny, nz), mm
    mask: np.ndarray  # sdf <= 0
    k0: np.ndarray  # int (3,): lattice index of sdf[0,0,0] relative to the translation's index
    count: int
    centroid_off: np.ndarray  # (3,) mm, centroid relative to the translation
    tight_lo: np.ndarray  # (3,) int, mask box within sdf
    tight_hi: np.ndarray
    mask_t: np.ndarray = None  # type: ignore[assignment]  # mask over its tight box
    shape: np.ndarray = None  # type: ignore[assignment]  # sdf.shape as an int array

    def __post_init__(self) -> None:
        self.mask_t = np.ascontiguousarray(self.mask[tuple(slice(int(a), int(b) + 1)
                                                           for a, b in zip(self.tight_lo, self.tight_hi))])
        self.shape = np.asarray(self.sdf.shape)


def _lattice(fld: OrganField, h: float, margin_mm: float) -> _Lattice | None:
    lo, hi = fld.offset_box(margin_mm)
    k_lo = np.floor(lo / h).astype(int)
    k_hi = np.ceil(hi / h).astype(int)
    n = k_hi - k_lo + 1
    # large organs (every extent > 45 mm): evaluate at 2 h and upsample, like rendering does
    llo, lhi = fld.local_box()
    factors = np.full(3, 2 if np.min(lhi - llo) > 45.0 else 1)
    sdf = _eval_upsampled(fld, k_lo * h, np.full(3, h), n, factors).numpy()
    mask = sdf <= 0
    if not mask.any():
        return None
    near = sdf <= margin_mm
    idx = [np.nonzero(near.any(axis=tuple(j for j in range(3) if j != d)))[0] for d in range(3)]
    sl = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    sdf = np.ascontiguousarray(sdf[sl])
    mask = np.ascontiguousarray(mask[sl])
    k0 = k_lo + np.array([s.start for s in sl])
    nz = np.nonzero(mask)
    cnt = int(nz[0].size)
    cen = np.array([(nz[d].mean() + k0[d]) * h for d in range(3)])
    tlo = np.array([nz[d].min() for d in range(3)])
    thi = np.array([nz[d].max() for d in range(3)])
    return _Lattice(sdf, mask, k0, cnt, cen, tlo, thi)


@dataclass
class _Placed:
    info: OrganInfo
    lat: _Lattice
    m: np.ndarray  # int (3,) lattice index of the translation
    params: dict[str, Any]

    def __post_init__(self) -> None:
        self.start = self.m + self.lat.k0  # lattice index of sdf[0, 0, 0]
        self.start_t = tuple(int(v) for v in self.start)
        self.end = self.start + np.asarray(self.lat.sdf.shape)
        self.tight_lo = self.start + self.lat.tight_lo
        self.tight_hi = self.start + self.lat.tight_hi
        self.tight_t = tuple(int(v) for v in self.tight_lo)
        self._centroid: dict[float, np.ndarray] = {}

    def centroid(self, h: float) -> np.ndarray:
        c = self._centroid.get(h)
        if c is None:
            c = self._centroid[h] = self.m * h + self.lat.centroid_off
        return c


def _overlap_region(a_start: tuple[int, int, int], a: np.ndarray, b_start: tuple[int, int, int], b: np.ndarray
                    ) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices of ``a`` and ``b`` (lattice arrays placed at integer starts, python int tuples) over
    their common box (:func:`anatomix.relations.offset_common_box`)."""
    return rel.offset_common_box(a_start, a.shape, b_start, b.shape)


def _pair_values(a_start: tuple[int, int, int], la: _Lattice, b_start: tuple[int, int, int], lb: _Lattice,
                 need_gap: bool) -> tuple[int, float]:
    """(intersection voxel count, surface gap mm) on the lattice, measured by :mod:`anatomix.relations`
    (``offset_overlap_count``, ``offset_surface_gap_mm``); the gap is ``inf`` unless needed."""
    box = rel.offset_common_box(a_start, la.sdf.shape, b_start, lb.sdf.shape)
    if box is None:
        return 0, math.inf
    inter = rel.offset_overlap_count(la.mask, a_start, lb.mask, b_start, box=box)
    if inter or not need_gap:
        return inter, 0.0 if inter else math.inf
    return 0, rel.offset_surface_gap_mm(la.sdf, a_start, lb.sdf, b_start, masks=(la.mask, lb.mask), box=box)


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------


def _records(bank: Any, organ: str) -> list[Any]:
    return list(bank.shapes(organ))


def _choose_shapes(bank: Any, organ: str, rng: np.random.Generator, config: PlacementConfig,
                   prefer: set[str] | None = None, coherence: float = 0.0, blend_scale: float = 1.0
                   ) -> tuple[str, str | None, float]:
    """(shape id, blend shape id or None, blend weight). With probability ``coherence`` the first
    shape comes from one of the ``prefer`` subjects (those of the placed neighbours) when the bank
    has this organ for one of them: organs of one subject fit together."""
    recs = _records(bank, organ)
    w = np.array([config.truncated_weight if bool(_get(r, "truncated", default=False)) else 1.0 for r in recs])
    if w.sum() <= 0:
        w = np.ones(len(recs))
    w1 = w
    if prefer and coherence > 0 and rng.random() < coherence:
        same = np.array([str(_get(r, "subject_id")) in prefer for r in recs])
        if (w * same).sum() > 0:
            w1 = w * same
    i = int(rng.choice(len(recs), p=w1 / w1.sum()))
    first = recs[i]
    blend_id, weight = None, 0.0
    if config.interpolation_probability > 0 and rng.random() < config.interpolation_probability:
        sid = _get(first, "subject_id")
        others = [j for j, r in enumerate(recs) if j != i and _get(r, "subject_id") != sid]
        if others:
            wo = w[others]
            if wo.sum() > 0:
                j = others[int(rng.choice(len(others), p=wo / wo.sum()))]
                blend_id = str(_get(recs[j], "shape_id"))
                weight = float(rng.uniform(0.0, 1.0)) * blend_scale
    return str(_get(first, "shape_id")), blend_id, weight


def _elastic(rng: np.random.Generator, config: PlacementConfig) -> list[dict[str, Any]]:
    terms = []
    n = config.elastic_terms
    if n == 0 or config.elastic_amplitude_mm == 0:
        return terms
    for _ in range(n):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-12
        wavelength = rng.uniform(*config.elastic_wavelength_mm)
        amp = rng.normal(size=3) * (config.elastic_amplitude_mm / math.sqrt(n))
        terms.append({"amplitude_mm": tuple(float(v) for v in amp),
                      "frequency_per_mm": tuple(float(v) for v in direction / wavelength),
                      "phase": float(rng.uniform(0, 2 * math.pi))})
    return terms


def _draw_shape(bank: Any, info: OrganInfo, body_scale: float, rng: np.random.Generator,
                config: PlacementConfig, cache: dict[str, Any] | None, random_rotation: bool = False,
                shrink: float = 1.0, prefer: set[str] | None = None) -> tuple[dict[str, Any], OrganField]:
    """Draw a shape variant; ``shrink`` < 1 (later attempts) narrows the variation towards the bank
    shape (and the blend towards the first, neighbour-coherent, subject)."""
    coherence = config.subject_coherence if shrink >= 1.0 else 1.0
    shape_id, blend_id, weight = _choose_shapes(bank, info.name, rng, config, prefer, coherence,
                                                blend_scale=min(1.0, shrink))
    base = (1.0 + shrink * (rng.uniform(info.scale_lo, info.scale_hi) - 1.0)) * body_scale
    scale = base * (1.0 + shrink * rng.uniform(-config.anisotropy, config.anisotropy, size=3))
    if random_rotation:
        rot = rng.uniform(-180.0, 180.0, size=3)
    else:
        rot = shrink * rng.uniform(info.rot_lo, info.rot_hi)
    elastic = _elastic(rng, config)
    for e in elastic:
        e["amplitude_mm"] = tuple(float(v) * shrink for v in e["amplitude_mm"])
    params = {"shape_id": shape_id, "blend_shape_id": blend_id, "blend_weight": weight,
              "scale": tuple(float(v) for v in scale), "rotation_deg": tuple(float(v) for v in rot),
              "elastic": elastic}
    fld = organ_field(bank, shape_id, blend_id, weight, scale, rot, (0.0, 0.0, 0.0), elastic, cache=cache)
    return params, fld


def _mahalanobis(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    d = x - mean
    return float(math.sqrt(max(0.0, d @ np.linalg.solve(cov, d))))


@dataclass
class _Context:
    h: float
    placed: dict[str, _Placed]
    rels: list[Rel]
    body_scale: float
    exact: dict[str, bool] | None = None  # subject id -> body frame exact (shape anchors), None: graph anchors
    blockers: Counter[str] | None = None  # placed organs whose hard relations rejected candidates
    prepared: Any = None  # the _Prepared of the relations list in use (see _prepared)


def _exact_subjects(bank: Any) -> dict[str, bool]:
    """Subjects of the bank whose body frame is exact (kidney midpoint, both kidneys complete)."""
    subjects = _get(_get(bank, "manifest"), "subjects", default=None) or []
    return {str(_get(sub, "subject_id")): bool(_get(sub, "frame_exact", default=False)) for sub in subjects}


def _shape_anchor(ctx: _Context, bank: Any, info: OrganInfo, params: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """The anchor (body frame, mm, unscaled) of a drawn shape, and whether it comes from the bank.

    A bank shape records where its centroid was in its own subject's body frame; for subjects
    whose frame is exact this is where THAT shape belongs (a complete pancreas' centroid lies
    several cm left of a pancreatic-head fragment's, a whole liver's above a truncated one's).
    Blended shapes take the blend of both centroids; shapes of subjects with an approximate frame
    take the graph anchor.
    """
    if not ctx.exact:
        return info.mean, False

    def one(shape_id: str) -> np.ndarray | None:
        rec = bank.record(shape_id)
        if not ctx.exact.get(str(_get(rec, "subject_id")), False):
            return None
        return np.asarray(_get(rec, "centroid_mm"), dtype=np.float64)

    a = one(params["shape_id"])
    if params.get("blend_shape_id"):
        b = one(params["blend_shape_id"])
        w = float(params["blend_weight"])
        if a is None and b is None:
            return info.mean, False
        a = (1.0 - w) * (info.mean if a is None else a) + w * (info.mean if b is None else b)
    return (info.mean, False) if a is None else (a, True)


class _Prepared:
    """The relations of one organ with the placed organs, split and stacked once per organ
    placement (every candidate check reuses them): direction relations with the other organ's
    centroid, area relations with the placed organs' boxes as arrays."""

    __slots__ = ("rels", "dirs", "area", "placed", "plo", "phi", "slo", "shi")

    def __init__(self, ctx: _Context, info: OrganInfo, rels: list[Rel]) -> None:
        h = ctx.h
        self.rels = rels
        self.dirs = []
        for r in rels:
            if r.kind != "direction":
                continue
            other = r.b if r.a == info.name else r.a
            self.dirs.append((r, other, ctx.placed[other].centroid(h), r.a == info.name))
        self.area = [r for r in rels if r.kind != "direction"]
        self.placed = [ctx.placed[r.b if r.a == info.name else r.a] for r in self.area]
        if self.area:
            self.plo = np.array([p.tight_lo for p in self.placed])
            self.phi = np.array([p.tight_hi for p in self.placed])
            self.slo = np.array([p.start for p in self.placed])
            self.shi = np.array([p.end for p in self.placed])


def _prepared(ctx: _Context, info: OrganInfo, rels: list[Rel]) -> _Prepared:
    """The :class:`_Prepared` of ``rels`` (cached on the context while that list is the one in use;
    the placed organs do not change while one organ is being placed)."""
    prep = ctx.prepared
    if prep is None or prep.rels is not rels or len(prep.placed) != len(prep.area):
        prep = ctx.prepared = _Prepared(ctx, info, rels)
    return prep


def _tight_overlap(start: np.ndarray, lat: _Lattice, p: _Placed) -> int:
    """|a ∩ b| on the lattice, counted over the common box of the two masks' tight boxes (outside
    it one mask is empty): the value of :func:`anatomix.relations.offset_overlap_count`."""
    box = rel.offset_common_box(tuple(int(v) for v in start + lat.tight_lo), lat.mask_t.shape,
                                p.tight_t, p.lat.mask_t.shape)
    if box is None:
        return 0
    return int(np.count_nonzero(lat.mask_t[box[0]] & p.lat.mask_t[box[1]]))


def _check_candidate(ctx: _Context, info: OrganInfo, lat: _Lattice, m: np.ndarray,
                     rels: list[Rel], bound: float = math.inf, weight: float = 1.0,
                     offset: Any = 0.0) -> tuple[bool, float]:
    """(all hard relations hold, soft penalty) of ``lat`` at lattice translation ``m``.

    Early exit: once ``weight * penalty + offset >= bound`` (the candidate's score can no longer
    beat the best one; penalties only grow) it returns ``(False, inf)`` without the remaining
    checks (``offset``: a number, or a callable giving it, called once after the direction checks).
    Callers pass a finite bound only when such a candidate would be discarded anyway.
    """
    h = ctx.h
    prep = _prepared(ctx, info, rels)
    start = m + lat.k0
    cen = m * h + lat.centroid_off
    penalty = 0.0
    # cheapest first: directions
    for r, other, oc, is_a in prep.dirs:
        ca, cb = (cen, oc) if is_a else (oc, cen)
        v = rel.direction_margin_mm(ca, cb, r.direction or "")
        ok = rel.relation_holds("direction", v, r.tolerance, r.margin_mm)
        if not ok:
            if r.hard:
                if ctx.blockers is not None:
                    ctx.blockers[other] += 1
                return False, math.inf
            penalty += (r.margin_mm - v) / h
    if bound < math.inf:
        if callable(offset):  # computed only for candidates that pass the direction checks
            offset = offset()
        if weight * penalty + offset >= bound:
            return False, math.inf
    # boxes first, for every relation at once: an avoid whose organ boxes do not meet holds
    area = prep.area
    if not area:
        return True, penalty
    placed = prep.placed
    meet_mask = np.all((prep.plo <= start + lat.tight_hi) & (prep.phi >= start + lat.tight_lo), axis=1)
    meet_sdf = np.all((prep.slo < start + lat.shape) & (prep.shi > start), axis=1)
    start_t = None
    for i, r in enumerate(area):
        p = placed[i]
        if r.kind == "avoid" and not meet_mask[i]:
            continue
        if r.kind == "contact":
            if not meet_sdf[i]:
                inter, gap = 0, math.inf
            else:
                if start_t is None:
                    start_t = tuple(int(v) for v in start)
                inter, gap = _pair_values(start_t, lat, p.start_t, p.lat, need_gap=True)
        elif meet_mask[i]:
            inter, gap = _tight_overlap(start, lat, p), math.inf
        else:
            inter, gap = 0, math.inf
        if r.kind == "avoid":
            v = inter / max(1, min(lat.count, p.lat.count))
            if v > r.tolerance:
                if r.hard:
                    if ctx.blockers is not None:
                        ctx.blockers[p.info.name] += 1
                    return False, math.inf
                penalty += 10.0 * v
                if weight * penalty + offset >= bound:
                    return False, math.inf
        elif r.kind == "inside":
            inner = lat if r.a == info.name else p.lat
            v = inter / max(1, inner.count)
            if v < 1.0 - r.tolerance:
                if r.hard:
                    return False, math.inf
                penalty += 10.0 * (1.0 - v)
                if weight * penalty + offset >= bound:
                    return False, math.inf
        elif r.kind == "contact" and gap > r.tolerance:
            if r.hard:
                return False, math.inf
            penalty += (min(gap, 60.0) - r.tolerance) / h
            if weight * penalty + offset >= bound:
                return False, math.inf
    return True, penalty


def _place_organ(ctx: _Context, info: OrganInfo, bank: Any, rng: np.random.Generator,
                 config: PlacementConfig, cache: dict[str, Any] | None) -> _Placed | None:
    h = ctx.h
    rels = [r for r in ctx.rels if (r.a == info.name and r.b in ctx.placed)
            or (r.b == info.name and r.a in ctx.placed)]
    cov = info.cov * ctx.body_scale ** 2
    parent = ctx.placed.get(info.parent) if info.parent else None
    attempts = config.shape_attempts + (1 if config.fallback else 0)
    for attempt in range(1, attempts + 1):
        last = config.fallback and attempt == attempts
        # the fallback draw: the bank shape as it is (no rotation, scaling or deformation),
        # 4x the candidates, every rejected candidate pushed out of its overlaps
        shrink = 0.0 if last else 1.0 / attempt
        n_cand = config.candidates * (4 if last else 1)
        params, fld = _draw_shape(bank, info, ctx.body_scale, rng, config, cache, shrink=shrink,
                                  prefer=_neighbour_subjects(ctx, info, bank, parent))
        anchor, from_bank = _shape_anchor(ctx, bank, info, params)
        params["anchor"], params["anchor_from_bank"] = anchor, from_bank
        mean = anchor * ctx.body_scale
        c_mean, c_cov = _position_prior(ctx, info, parent, anchor, from_bank, mean, cov, config)
        chol = np.linalg.cholesky(c_cov * config.position_spread ** 2 + 1e-6 * np.eye(3))
        lat = _lattice(fld, h, config.lattice_margin_mm)
        z = rng.normal(size=(n_cand, 3))
        if lat is None:
            continue
        best: tuple[float, np.ndarray] | None = None
        rejected: list[np.ndarray] = []
        for k in range(n_cand):
            target = c_mean + chol @ z[k] if k > 0 else c_mean + chol @ z[k] * 0.5
            m = np.rint((target - lat.centroid_off) / h).astype(int)
            cen = m * h + lat.centroid_off
            if best is not None:
                # with a valid best, a candidate that cannot beat it is dropped early (exact: its
                # score is at least its anchor term plus the penalty so far)
                memo: list[float] = []

                def anchor_term(cen: np.ndarray = cen, memo: list[float] = memo) -> float:
                    memo.append(config.anchor_weight * _mahalanobis(cen, mean, cov) ** 2 / 3.0)
                    return memo[0]

                ok, pen = _check_candidate(ctx, info, lat, m, rels, best[0], config.contact_weight, anchor_term)
                if not ok:
                    continue
                a_term = memo[0]
            else:
                ok, pen = _check_candidate(ctx, info, lat, m, rels)
                if not ok:
                    rejected.append(m)
                    continue
                a_term = config.anchor_weight * _mahalanobis(cen, mean, cov) ** 2 / 3.0
            score = config.contact_weight * pen + a_term
            if best is None or score < best[0]:
                best = (score, m)
        if best is None:
            # no candidate valid as drawn: push the first few rejected ones out of their overlaps
            n_valid = 0
            for m in rejected[: (len(rejected) if last else config.push_candidates)]:
                if n_valid >= config.push_keep:
                    break
                m, ok, pen = _push_out(ctx, info, lat, m, rels, config.push_steps * (2 if last else 1))
                if not ok:
                    continue
                n_valid += 1
                cen = m * h + lat.centroid_off
                score = config.contact_weight * pen + config.anchor_weight * _mahalanobis(cen, mean, cov) ** 2 / 3.0
                if best is None or score < best[0]:
                    best = (score, m)
        if best is None:
            continue
        m = _refine_contacts(ctx, info, lat, best[1], rels, config)
        return _Placed(info, lat, m, dict(params, attempts=attempt))
    return None


def _position_prior(ctx: _Context, info: OrganInfo, parent: _Placed | None, anchor: np.ndarray,
                    from_bank: bool, mean: np.ndarray, cov: np.ndarray, config: PlacementConfig
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the candidate positions of a drawn shape.

    With a placed ``attached_to`` parent: the parent's placed centroid plus the offset (the two
    shapes' own anchors carried through the parent's pose when both come from the bank, else the
    graph's offset statistics), averaged with the other placed contact partners' vote. Without:
    the contact partners' prediction, or the anchor.
    """
    h = ctx.h
    if parent is not None and info.offset_mean is not None:
        if from_bank and parent.params.get("anchor_from_bank"):
            c_mean = _carry(parent, anchor, h)
        else:
            c_mean = parent.centroid(h) + info.offset_mean * ctx.body_scale
        c_cov = (info.offset_cov if info.offset_cov is not None else info.cov) * ctx.body_scale ** 2
        # the other placed contact partners have a say too (the parent's offset is one vote)
        pred = _neighbour_prediction(ctx, info, anchor, from_bank, exclude=parent.info.name)
        if pred is not None:
            c_mean = (c_mean + pred) / 2.0
        return c_mean, c_cov
    # follow the placed contact partners: carry the anchor offsets through their poses
    pred = _neighbour_prediction(ctx, info, anchor, from_bank)
    if pred is None:
        return mean, cov
    return pred, cov * config.neighbour_spread ** 2


def _neighbour_subjects(ctx: _Context, info: OrganInfo, bank: Any, parent: _Placed | None) -> set[str]:
    """Subjects of the shapes of the placed parent (if any, only it) or else of the placed contact partners."""
    if parent is not None:
        placed = [parent]
    else:
        partners = {r.b if r.a == info.name else r.a for r in ctx.rels
                    if r.kind == "contact" and info.name in (r.a, r.b)}
        placed = [p for n, p in ctx.placed.items() if n in partners]
    return {str(_get(bank.record(p.params["shape_id"]), "subject_id")) for p in placed}


def _carry(p: _Placed, anchor: np.ndarray, h: float) -> np.ndarray:
    """Where a placed organ says an organ of anchor ``anchor`` goes (anchor offset through its pose)."""
    from anatomix.render import rotation_matrix

    rot = rotation_matrix(p.params["rotation_deg"])
    sc = np.asarray(p.params["scale"])
    return p.centroid(h) + rot @ (sc * (anchor - p.params["anchor"]))


def _repair(ctx: _Context, info: OrganInfo, organs: dict[str, OrganInfo], bank: Any, rng: np.random.Generator,
            config: PlacementConfig, cache: dict[str, Any] | None) -> _Placed | None:
    """Place an organ no candidate fits by moving one blocker out of the way.

    The placed organs that rejected the most candidates (hard relations) are, one at a time, lifted
    out of the scene; the organ is placed, then the blocker is placed again among everything
    (all its relations checked anew). If either fails, the scene is restored as it was.
    """
    assert ctx.blockers is not None
    tried = 0
    for name, _count in ctx.blockers.most_common():
        if tried >= config.repair:
            break
        if name not in ctx.placed:
            continue
        tried += 1
        saved = ctx.placed.pop(name)
        ctx.blockers = Counter()
        placed = _place_organ(ctx, info, bank, rng, config, cache)
        if placed is not None:
            ctx.placed[info.name] = placed
            again = _place_organ(ctx, organs[name], bank, rng, config, cache)
            del ctx.placed[info.name]
            if again is not None:
                ctx.placed[name] = again
                return placed
        ctx.placed[name] = saved
    return None


def _push_direction(ctx: _Context, info: OrganInfo, lat: _Lattice, m: np.ndarray, rels: list[Rel]) -> np.ndarray:
    """Sum of the unit vectors from the centroid of each too-large overlap (hard avoids) to the
    candidate's centroid (zero when no avoid is violated)."""
    h = ctx.h
    start = m + lat.k0
    cen = m * h + lat.centroid_off
    push = np.zeros(3)
    t_lo, t_hi = start + lat.tight_lo, start + lat.tight_hi
    start_t = tuple(int(v) for v in start)
    for r in rels:
        if r.kind != "avoid":
            continue
        p = ctx.placed[r.b if r.a == info.name else r.a]
        if np.any(p.tight_lo > t_hi) or np.any(p.tight_hi < t_lo):
            continue
        reg = _overlap_region(start_t, lat.sdf, p.start_t, p.lat.sdf)
        if reg is None:
            continue
        both = lat.mask[reg[0]] & p.lat.mask[reg[1]]
        idx = np.nonzero(both)
        cnt = idx[0].size
        if cnt <= r.tolerance * min(lat.count, p.lat.count):
            continue
        oc = np.array([(idx[d].mean() + start[d] + reg[0][d].start) * h for d in range(3)])
        v = cen - oc
        nv = np.linalg.norm(v)
        if nv > 1e-6:
            push += v / nv
        else:
            w = cen - p.centroid(h)
            push += w / (np.linalg.norm(w) + 1e-9)
    return push


def _push_out(ctx: _Context, info: OrganInfo, lat: _Lattice, m: np.ndarray, rels: list[Rel],
              steps: int) -> tuple[np.ndarray, bool, float]:
    """Resolve overlaps of a rejected candidate by one search along the push-out direction.

    The direction (:func:`_push_direction`: away from the centroids of the too-large overlaps,
    for a signed distance the direction its gradient points out of the blockers) is measured
    once; the candidate is then moved along it, ``k`` lattice steps (the longest axis moves
    ``k`` voxels), with the smallest ``k <= steps`` at which every hard relation holds, found
    by doubling and then bisection (a handful of checks instead of one overlap measure and one
    check per step). If no ``k`` works, a second search starts from the farthest point with
    the direction measured there. Returns (translation, valid, penalty).
    """
    for _round in range(2):
        push = _push_direction(ctx, info, lat, m, rels)
        if not push.any():
            break
        d = push / (np.abs(push).max() + 1e-12)

        def at(k: int) -> np.ndarray:
            return m + np.rint(k * d).astype(int)

        if not np.rint(steps * d).any():
            break
        ok_k, ok_pen, bad_k = None, math.inf, 0
        k = 1
        while k <= steps:  # doubling: 1, 2, 4, ... (then steps itself)
            ok, pen = _check_candidate(ctx, info, lat, at(k), rels)
            if ok:
                ok_k, ok_pen = k, pen
                break
            bad_k = k
            if k == steps:
                break
            k = min(2 * k, steps)
        if ok_k is None:
            m = at(steps)
            continue
        while ok_k - bad_k > 1:  # bisection: the nearest valid k
            mid = (ok_k + bad_k) // 2
            ok, pen = _check_candidate(ctx, info, lat, at(mid), rels)
            if ok:
                ok_k, ok_pen = mid, pen
            else:
                bad_k = mid
        return at(ok_k), True, ok_pen
    return m, False, math.inf


def _neighbour_prediction(ctx: _Context, info: OrganInfo, anchor: np.ndarray, from_bank: bool,
                          exclude: str | None = None) -> np.ndarray | None:
    """Where the placed contact partners say this organ's centroid goes.

    Each placed partner carries the anchor offset (this organ's anchor minus the partner's)
    through its own pose (rotation and scale about its centroid); the predictions are averaged.
    None when no contact partner is placed.
    """
    partners = {r.b if r.a == info.name else r.a for r in ctx.rels
                if r.kind == "contact" and info.name in (r.a, r.b)}
    preds = []
    for n, p in ctx.placed.items():
        if n not in partners or n == exclude:
            continue
        if from_bank and p.params.get("anchor_from_bank"):
            preds.append(_carry(p, anchor, ctx.h))
        else:  # graph anchors on both sides
            preds.append(_carry(p, info.mean + (p.params["anchor"] - p.info.mean), ctx.h))
    if not preds:
        return None
    return np.mean(preds, axis=0)


def _refine_contacts(ctx: _Context, info: OrganInfo, lat: _Lattice, m: np.ndarray, rels: list[Rel],
                     config: PlacementConfig) -> np.ndarray:
    """Move towards unmet contact partners one lattice step at a time while hard relations hold."""
    h = ctx.h
    contacts = [r for r in rels if r.kind == "contact"]
    if not contacts or config.contact_steps == 0:
        return m
    _, pen = _check_candidate(ctx, info, lat, m, rels)
    for _ in range(config.contact_steps):
        unmet = []
        start = m + lat.k0
        for r in contacts:
            other = ctx.placed[r.b if r.a == info.name else r.a]
            _, gap = _pair_values(tuple(int(v) for v in start), lat, other.start_t, other.lat, need_gap=True)
            if gap > r.tolerance:
                unmet.append((other, gap))
        if not unmet:
            break
        cen = m * h + lat.centroid_off
        d = np.zeros(3)
        for other, gap in unmet:
            v = other.centroid(h) - cen
            d += v / (np.linalg.norm(v) + 1e-9)
        if np.linalg.norm(d) < 1e-9:
            break
        d /= np.abs(d).max()
        step = np.rint(d).astype(int)
        moved = False
        # the step along the pull first, then single-axis steps in its direction (best of those)
        axis_steps = [np.eye(3, dtype=int)[a] * int(np.sign(d[a])) for a in np.argsort(-np.abs(d)) if abs(d[a]) > 0.2]
        ok, p2 = _check_candidate(ctx, info, lat, m + step, rels, pen) if step.any() else (False, math.inf)
        if ok and p2 < pen:
            m, pen, moved = m + step, p2, True
        else:
            best_axis = None
            for cand in axis_steps:
                if np.array_equal(cand, step):
                    continue
                ok, p2 = _check_candidate(ctx, info, lat, m + cand, rels,
                                          pen if best_axis is None else min(pen, best_axis[0]))
                if ok and p2 < pen and (best_axis is None or p2 < best_axis[0]):
                    best_axis = (p2, cand)
            if best_axis is not None:
                m, pen, moved = m + best_axis[1], best_axis[0], True
        if not moved:
            break
    return m


def _measure_report(ctx: _Context) -> list[RelationCheck]:
    """Every relation between the placed organs, measured with :mod:`anatomix.relations`."""
    h = ctx.h
    out: list[RelationCheck] = []
    for r in ctx.rels:
        if r.a not in ctx.placed or r.b not in ctx.placed:
            continue
        pa, pb = ctx.placed[r.a], ctx.placed[r.b]
        if r.kind == "direction":
            v = rel.direction_margin_mm(pa.centroid(h), pb.centroid(h), r.direction or "")
        else:
            reg = _overlap_region(pa.start_t, pa.lat.sdf, pb.start_t, pb.lat.sdf)
            if reg is None:
                v = {"avoid": 0.0, "inside": 0.0, "contact": math.inf}[r.kind]
            else:
                v = _report_value(r.kind, pa, pb, reg)
        holds = rel.relation_holds(r.kind, v, r.tolerance, r.margin_mm)
        out.append(RelationCheck(kind=r.kind, a=r.a, b=r.b, hard=r.hard, implicit=r.implicit,
                                 value=None if not math.isfinite(v) else round(float(v), 4),
                                 tolerance=r.tolerance, direction=r.direction, margin_mm=r.margin_mm,
                                 holds=bool(holds)))
    return out


def _report_value(kind: str, pa: _Placed, pb: _Placed, reg: tuple[tuple[slice, ...], tuple[slice, ...]]) -> float:
    """A relation's value measured on the common box of the two lattice arrays: the value of
    ``rel.overlap_fraction`` / ``inside_fraction`` / ``surface_gap_mm`` on both arrays pasted into
    their union box (outside its box an SDF is +1e3 mm, see :func:`_union_arrays`), without
    building that union (the union's extra points are outside both structures, and are never
    nearer than the common box's unless the common box has no point outside both)."""
    sa, sb = reg
    ma, mb = pa.lat.mask[sa], pb.lat.mask[sb]
    na, nb = pa.lat.count, pb.lat.count
    if kind == "avoid":
        return float(np.count_nonzero(ma & mb)) / float(min(na, nb)) if na and nb else 0.0
    if kind == "inside":
        return float(np.count_nonzero(ma & mb)) / float(na) if na else 0.0
    if (ma & mb).any():
        return 0.0
    outside = ~ma & ~mb
    if not outside.any():  # rare: fall back to the union measure
        a, b = _union_arrays(pa, pb)
        return rel.surface_gap_mm(a, b, 1.0)
    fa = pa.lat.sdf[sa].astype(np.float64)
    fb = pb.lat.sdf[sb].astype(np.float64)
    return float(max(0.0, np.min((fa + fb)[outside])))


def _union_arrays(pa: _Placed, pb: _Placed) -> tuple[np.ndarray, np.ndarray]:
    """Both lattice SDFs on the union of their boxes (outside its box an SDF is +1e3 mm)."""
    lo = np.minimum(pa.start, pb.start)
    hi = np.maximum(pa.start + np.asarray(pa.lat.sdf.shape), pb.start + np.asarray(pb.lat.sdf.shape))
    shape = tuple(int(v) for v in hi - lo)
    arrays = []
    for p in (pa, pb):
        arr = np.full(shape, 1e3, dtype=np.float32)
        o = p.start - lo
        arr[tuple(slice(int(o[d]), int(o[d] + p.lat.sdf.shape[d])) for d in range(3))] = p.lat.sdf
        arrays.append(arr)
    return arrays[0], arrays[1]


def sample_scene(graph: Any, bank: Any, rng: np.random.Generator, config: PlacementConfig | None = None,
                 cache: dict[str, Any] | None = None) -> Scene:
    """Sample a Scene (pure parameters + constraint report) from an organ graph and a shape bank.

    Args:
        graph: an ``OrganGraph`` (contract API: ``placement_order()``, ``organ(name)``,
            ``relations()``, ``parent(name)``).
        bank: a ``ShapeBank`` (``shapes(organ)``, ``record(id)``, ``sdf(id)``, ``spacing_mm``).
        rng: numpy Generator (the only source of randomness).
        config: placement settings.
        cache: optional dict of bank crops as torch tensors, reused across scenes.

    Returns:
        A frozen :class:`Scene`.
    """
    config = config or PlacementConfig()
    organs = graph_organs(graph, config)
    h = config.score_spacing_mm
    body_scale = float(rng.uniform(*config.body_scale))
    missing = set(missing_organs(graph, bank))
    # graph organs without bank shapes are left out, with their relations (the caller warns once)
    present = [n for n, info in organs.items()
               if (info.required or rng.random() < info.probability) and n not in missing]
    dropped = [n for n in organs if n not in present and n not in missing]
    rels = graph_relations(graph, present, config)
    ctx = _Context(h=h, placed={}, rels=rels, body_scale=body_scale,
                   exact=_exact_subjects(bank) if config.anchor_source == "shape" else None)
    failed: list[str] = []
    random_mode = config.mode == "random"
    if random_mode:
        means = np.array([organs[n].mean for n in present]) * body_scale
        stds = np.array([np.sqrt(np.diag(organs[n].cov)) for n in present]) * body_scale
        box_lo = (means - 2 * stds).min(axis=0) if len(present) else np.zeros(3)
        box_hi = (means + 2 * stds).max(axis=0) if len(present) else np.zeros(3)
    for name in present:
        info = organs[name]
        if random_mode:
            params, fld = _draw_shape(bank, info, body_scale, rng, config, cache, random_rotation=True)
            params["anchor"], params["anchor_from_bank"] = info.mean, False
            lat = _lattice(fld, h, config.lattice_margin_mm)
            target = rng.uniform(box_lo, box_hi)
            if lat is None:
                failed.append(name)
                continue
            m = np.rint((target - lat.centroid_off) / h).astype(int)
            ctx.placed[name] = _Placed(info, lat, m, dict(params, attempts=1))
            continue
        ctx.blockers = Counter()
        placed = _place_organ(ctx, info, bank, rng, config, cache)
        if placed is None and config.repair > 0 and info.required:
            placed = _repair(ctx, info, organs, bank, rng, config, cache)
        ctx.blockers = None
        if placed is None:
            (failed if info.required else dropped).append(name)
            continue
        ctx.placed[name] = placed
    # report only among organs actually placed
    ctx.rels = [r for r in rels if r.a in ctx.placed and r.b in ctx.placed]
    report = _measure_report(ctx)
    organs_out = []
    for name, p in ctx.placed.items():
        lat = p.lat
        t = p.m * h
        tight_lo = (p.start + lat.tight_lo) * h - h
        tight_hi = (p.start + lat.tight_hi) * h + h
        cen = p.centroid(h)
        organs_out.append(PlacedOrgan(
            organ=name, label=p.info.label, priority=p.info.priority,
            shape_id=p.params["shape_id"], blend_shape_id=p.params["blend_shape_id"],
            blend_weight=round(p.params["blend_weight"], 6) if p.params["blend_shape_id"] else 0.0,
            scale=p.params["scale"], rotation_deg=p.params["rotation_deg"],
            translation_mm=tuple(float(v) for v in t),
            elastic=tuple(ElasticTerm(**e) for e in p.params["elastic"]),
            centroid_mm=tuple(float(v) for v in cen),
            volume_ml=float(lat.count * h ** 3 / 1000.0),
            organ_min_mm=tuple(float(v) for v in tight_lo), organ_max_mm=tuple(float(v) for v in tight_hi),
            attempts=int(p.params["attempts"]),
            anchor_distance=round(_mahalanobis(cen, p.info.mean * body_scale, p.info.cov * body_scale ** 2), 4),
        ))
    if organs_out:
        bmin = np.min([o.organ_min_mm for o in organs_out], axis=0)
        bmax = np.max([o.organ_max_mm for o in organs_out], axis=0)
    else:
        bmin = bmax = np.zeros(3)
    return Scene(placement=config.mode, body_scale=body_scale, score_spacing_mm=h, organs=tuple(organs_out),
                 dropped=tuple(dropped), failed=tuple(failed),
                 not_in_bank=tuple(n for n in organs if n in missing), report=tuple(report),
                 box_min_mm=tuple(float(v) for v in bmin), box_max_mm=tuple(float(v) for v in bmax))
