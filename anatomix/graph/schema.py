"""The graph file schema (pydantic, ``extra="forbid"`` everywhere) and its error type."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from anatomix.anatomy_model import AnatomyModelSpec
from anatomix.errors import ConfigError

FORMAT_VERSION = 1

# Physically sensible ranges: every number of a graph file is finite and inside these (a NaN
# anchor, a 1e300 rotation or a 10,000x scale would otherwise reach placement).
#: Body-frame positions and offsets (mm, each axis): the abdomen spans well under 1 m.
MAX_POSITION_MM = 1000.0
#: Anchor / offset spread: standard deviation along any axis at most this (mm).
MAX_STD_MM = 300.0
#: Organ volumes (ml): 10 l is above any abdominal organ.
MAX_VOLUME_ML = 10_000.0
#: Per-axis rotation ranges (degrees).
MAX_ROTATION_DEG = 180.0
#: Scale factors applied to a bank shape.
SCALE_RANGE = (0.1, 5.0)
#: Contact tolerances and direction margins (mm).
MAX_DISTANCE_MM = 200.0


class GraphError(ConfigError):
    """A graph file or graph object is invalid; ``problems`` lists every problem found.

    Each problem names the file, the field path, what was expected and what was found.
    """

    def __init__(self, problems: list[str], source: str = "graph") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in {source}:\n{lines}")


def _check_range(v: tuple[float, float]) -> tuple[float, float]:
    lo, hi = v
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"expected finite [min, max], found {list(v)}")
    if lo > hi:
        raise ValueError(f"expected [min, max] with min <= max, found min {lo} > max {hi}")
    return v


def _check_positive_range(v: tuple[float, float]) -> tuple[float, float]:
    _check_range(v)
    if v[0] <= 0:
        raise ValueError(f"expected a range of positive values, found {list(v)}")
    return v


def _check_position(v: tuple[float, float, float]) -> tuple[float, float, float]:
    if not all(math.isfinite(x) and abs(x) <= MAX_POSITION_MM for x in v):
        raise ValueError(f"expected finite positions within +-{MAX_POSITION_MM:g} mm of the body frame "
                         f"origin, found {list(v)}")
    return v


def _check_rotation(v: tuple[float, float]) -> tuple[float, float]:
    _check_range(v)
    if max(abs(v[0]), abs(v[1])) > MAX_ROTATION_DEG:
        raise ValueError(f"expected a rotation range within +-{MAX_ROTATION_DEG:g} degrees, found {list(v)}")
    return v


def _check_scale(v: tuple[float, float]) -> tuple[float, float]:
    _check_positive_range(v)
    lo, hi = SCALE_RANGE
    if v[0] < lo or v[1] > hi:
        raise ValueError(f"expected scale factors from {lo:g} to {hi:g}, found {list(v)}")
    return v


def _check_volume(v: tuple[float, float]) -> tuple[float, float]:
    _check_positive_range(v)
    if v[1] > MAX_VOLUME_ML:
        raise ValueError(f"expected organ volumes of at most {MAX_VOLUME_ML:g} ml, found {list(v)}")
    return v


def _check_cov(v: tuple[tuple[float, float, float], ...]) -> tuple[tuple[float, float, float], ...]:
    c = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(c)):
        raise ValueError("expected a finite 3x3 covariance (mm^2), found non-finite entries")
    if np.abs(np.diag(c)).max() > MAX_STD_MM**2:
        raise ValueError(f"expected a covariance with standard deviations of at most {MAX_STD_MM:g} mm "
                         f"(variances <= {MAX_STD_MM**2:g} mm^2), found variances {np.diag(c).tolist()}")
    if not np.allclose(c, c.T, rtol=1e-6, atol=1e-6):
        raise ValueError(f"expected a symmetric 3x3 covariance (mm^2), found {c.tolist()}")
    w = np.linalg.eigvalsh(0.5 * (c + c.T))
    if w.min() <= 0:
        raise ValueError(
            "expected a positive-definite 3x3 covariance (mm^2), found eigenvalues "
            f"{[round(float(x), 4) for x in w]}"
        )
    return v


Range = Annotated[tuple[float, float], AfterValidator(_check_range)]
PositiveRange = Annotated[tuple[float, float], AfterValidator(_check_positive_range)]
VolumeRange = Annotated[tuple[float, float], AfterValidator(_check_volume)]
ScaleRange = Annotated[tuple[float, float], AfterValidator(_check_scale)]
RotationRange = Annotated[tuple[float, float], AfterValidator(_check_rotation)]
Vec3 = tuple[float, float, float]
Position3 = Annotated[Vec3, AfterValidator(_check_position)]
Cov3 = Annotated[tuple[Vec3, Vec3, Vec3], AfterValidator(_check_cov)]
RelationType = Literal["contact", "avoid", "inside", "direction", "attached_to"]
Direction = Literal["left_of", "right_of", "above", "below", "anterior_to", "posterior_to"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Gaussian3(_Strict):
    """A 3D normal distribution in mm: ``mean_mm`` (3) and ``cov_mm`` (3x3, mm^2, SPD)."""

    mean_mm: Position3
    cov_mm: Cov3


class OrganEntry(_Strict):
    """One organ of the graph file (see the module docstring)."""

    label: int = Field(ge=1, le=255)
    anchor: Gaussian3
    volume_ml: VolumeRange
    required: bool = True
    probability: float = Field(default=1.0, gt=0.0, le=1.0)
    rotation_deg: tuple[RotationRange, RotationRange, RotationRange] = (
        (-10.0, 10.0), (-10.0, 10.0), (-10.0, 10.0))
    scale: ScaleRange = (0.9, 1.1)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_bulge_mm: float | None = Field(
        default=None, ge=0.0, le=30.0,
        description="how far contact closing may bulge this organ's surface towards an unmet contact "
                    "(mm); default: defaults.hollow_bulge_mm for hollow viscera, defaults.solid_bulge_mm else")
    note: str | None = None

    @model_validator(mode="after")
    def _required_means_certain(self) -> "OrganEntry":
        if self.required and self.probability != 1.0:
            raise ValueError(
                f"expected probability 1 for a required organ (or required: false for an optional one); "
                f"found required: true with probability {self.probability}"
            )
        return self


class RelationEntry(_Strict):
    """One relation of the graph file (see the module docstring)."""

    type: RelationType
    a: str
    b: str
    hard: bool | None = None
    tolerance: float | None = Field(default=None, ge=0.0, le=MAX_DISTANCE_MM)
    direction: Direction | None = None
    margin_mm: float = Field(default=0.0, ge=-MAX_DISTANCE_MM, le=MAX_DISTANCE_MM)
    max_overlap: float | None = Field(default=None, ge=0.0, le=1.0)
    offset: Gaussian3 | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _fields_fit_type(self) -> "RelationEntry":
        problems = []
        if self.a == self.b:
            problems.append(f"expected two different organs, found a = b = {self.a!r}")
        if self.type == "direction" and self.direction is None:
            problems.append("expected `direction` (left_of, right_of, above, below, anterior_to, posterior_to) "
                            "for a direction relation, found none")
        if self.type != "direction" and self.direction is not None:
            problems.append(f"expected no `direction` on a {self.type} relation (direction relations only); found one")
        if self.type != "attached_to" and self.offset is not None:
            problems.append(f"expected no `offset` on a {self.type} relation (attached_to only); found one")
        if self.type != "contact" and self.max_overlap is not None:
            problems.append(f"expected no `max_overlap` on a {self.type} relation (contact only); found one")
        if self.type in ("inside", "avoid") and self.tolerance is not None and self.tolerance > 1:
            problems.append(f"expected an overlap fraction tolerance in [0, 1] for {self.type}, found {self.tolerance}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Defaults(_Strict):
    """Graph-wide defaults for relation fields left out."""

    contact_tolerance_mm: float = Field(default=3.0, ge=0.0, le=MAX_DISTANCE_MM)
    contact_max_overlap: float = Field(default=0.05, ge=0.0, le=1.0)
    avoid_tolerance: float = Field(default=0.01, ge=0.0, le=1.0)
    inside_tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    # contact closing (placement): a hollow organ's wall yields to its neighbour, a solid organ's
    # capsule hardly does; the larger bulge goes to the hollow side
    hollow_bulge_mm: float = Field(default=8.0, ge=0.0, le=30.0)
    solid_bulge_mm: float = Field(default=2.0, ge=0.0, le=30.0)


class GraphSpec(_Strict):
    """The YAML schema of an organ graph (``extra="forbid"`` everywhere)."""

    format_version: Literal[1] = 1  # FORMAT_VERSION
    name: str = "graph"
    description: str | None = None
    # content hash of the shape bank `graph learn` read: synthesis with another bank warns, since
    # the anchors, size ranges and relations fit that bank's shapes (hand-written graphs: none)
    learned_from_bank: str | None = Field(None, pattern=r"^[0-9a-f]{16,64}$")
    body_frame: str | None = None
    defaults: Defaults = Defaults()
    organs: dict[str, OrganEntry] = Field(min_length=1)
    relations: list[RelationEntry] = []
    anatomy_model: AnatomyModelSpec | None = None
