"""The FDIF generator (``mode: fdif``): K random primitives per volume, FDIF's paper setting.

``FdifGenerator(config, seed).sample(index)`` draws every parameter of sample ``index`` from
``anatomix.rng.sample_rng(seed, index)`` first (the record), then renders it
(:func:`anatomix.sdf.compose.render_objects`); the record replays the case exactly.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from anatomix.rng import sample_rng
from anatomix.sdf.compose import Grid, render_objects
from anatomix.sdf.displacements import DISPLACEMENT_NAMES, sample_displacement
from anatomix.sdf.mappers import MAPPER_NAMES
from anatomix.sdf.pose import sample_pose
from anatomix.sdf.primitives import CLASS_NAMES, sample_primitive

__all__ = ["FdifSynthConfig", "FdifGenerator", "sample_objects"]


def _check_names(values: list[str] | Literal["all"], known: Sequence[str], what: str) -> list[str] | str:
    if values == "all":
        return values
    bad = [v for v in values if v not in known]
    if bad:
        raise ValueError(f"known {what} names (got unknown {', '.join(map(repr, bad))}; "
                         f"known: {', '.join(known)})")
    if len(set(values)) != len(values):
        raise ValueError(f"distinct {what} names (got duplicates)")
    if not values:
        raise ValueError(f"at least one {what} name")
    return values


class FdifSynthConfig(BaseModel):
    """``mode: fdif`` synthesis config (FDIF's paper setting by default).

    Attributes:
        shape: output grid (x, y, z) voxels.
        spacing_mm: voxel size (x, y, z).
        n_objects: [min, max] objects per volume (inclusive; paper: 20).
        classes: primitive class names or ``all`` (109).
        mappers: mapper names or ``all`` (10).
        displacements: displacement names or ``all`` (9).
        displacement_probability: chance an object is displaced (FDIF: 9 of 10).
        randomize_displacement: random orientation and phase per displacement field
            (FDIF: off, the same field in every sample).
        mapper_as_class / displacement_as_class: make mapper / displacement part of the label
            (FDIF's "separate classes" option) instead of an augmentation.
        translation_fraction, shear, rotate: pose draws (FDIF: 0.35, 0.1, on).
        clip: image clipping range; quantize: truncate to integers (FDIF's uint8).
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["fdif"] = "fdif"
    shape: tuple[int, int, int] = (96, 96, 96)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    n_objects: tuple[int, int] = (20, 20)
    classes: list[str] | Literal["all"] = "all"
    mappers: list[str] | Literal["all"] = "all"
    displacements: list[str] | Literal["all"] = "all"
    displacement_probability: float = Field(0.9, ge=0.0, le=1.0)
    randomize_displacement: bool = True
    mapper_as_class: bool = False
    displacement_as_class: bool = False
    translation_fraction: float = Field(0.35, ge=0.0, le=1.0)
    shear: float = Field(0.1, ge=0.0, lt=0.5)
    rotate: bool = True
    clip: tuple[float, float] = (0.0, 128.0)
    quantize: bool = True

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 4 or n > 1024 for n in v):
            raise ValueError("3 sizes between 4 and 1024 voxels")
        return v

    @field_validator("spacing_mm")
    @classmethod
    def _spacing(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not s > 0 for s in v):
            raise ValueError("3 positive spacings in mm")
        return v

    @field_validator("n_objects")
    @classmethod
    def _n_objects(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 255:
            raise ValueError("[min, max] with 1 <= min <= max <= 255")
        return v

    @field_validator("clip")
    @classmethod
    def _clip(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError("[low, high] with low < high")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: Any) -> Any:
        return _check_names(v, CLASS_NAMES, "class")

    @field_validator("mappers")
    @classmethod
    def _mappers(cls, v: Any) -> Any:
        return _check_names(v, MAPPER_NAMES, "mapper")

    @field_validator("displacements")
    @classmethod
    def _displacements(cls, v: Any) -> Any:
        return _check_names(v, DISPLACEMENT_NAMES, "displacement")

    @model_validator(mode="after")
    def _label_count(self) -> "FdifSynthConfig":
        n = len(self.class_list) * (len(self.mapper_list) if self.mapper_as_class else 1)
        n *= (len(self.displacement_list) + 1) if self.displacement_as_class else 1
        if n > 255:
            raise ValueError(f"at most 255 labels (uint8 label maps); this config makes {n}: "
                             "choose fewer classes or turn off mapper_as_class / displacement_as_class")
        return self

    @property
    def class_list(self) -> list[str]:
        return list(CLASS_NAMES) if self.classes == "all" else list(self.classes)

    @property
    def mapper_list(self) -> list[str]:
        return list(MAPPER_NAMES) if self.mappers == "all" else list(self.mappers)

    @property
    def displacement_list(self) -> list[str]:
        return list(DISPLACEMENT_NAMES) if self.displacements == "all" else list(self.displacements)

    @property
    def grid(self) -> Grid:
        return Grid(tuple(self.shape), tuple(self.spacing_mm))  # type: ignore[arg-type]


def sample_objects(config: FdifSynthConfig, *, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Draw one volume's objects (JSON-able): class, shape parameters, pose, displacement, mapper."""
    grid = config.grid
    classes, mappers, disps = config.class_list, config.mapper_list, config.displacement_list
    n = int(rng.integers(config.n_objects[0], config.n_objects[1] + 1))
    extent = min(grid.extent_mm)
    objects = []
    for _ in range(n):
        ci = int(rng.integers(len(classes)))
        prim = sample_primitive(classes[ci], extent, rng=rng)
        pose = sample_pose(grid.extent_mm, rng=rng, translation_fraction=config.translation_fraction,
                           shear=config.shear, rotate=config.rotate)
        disp = None
        if rng.random() < config.displacement_probability:
            di = int(rng.integers(len(disps)))
            disp = sample_displacement(disps[di], rng=rng, randomize=config.randomize_displacement)
        mi = int(rng.integers(len(mappers)))
        objects.append({"primitive": prim, "pose": pose, "displacement": disp, "mapper": mappers[mi]})
    return objects


class FdifGenerator:
    """FDIF volumes as :class:`anatomix.synth.Sample` (picklable; deterministic per index)."""

    def __init__(self, config: FdifSynthConfig, seed: int, device: str = "cpu") -> None:
        self.config = config
        self.seed = int(seed)
        self.device = device
        self._classes = config.class_list
        self._mappers = config.mapper_list
        self._disps = config.displacement_list

    # label layout: class-major, then mapper, then displacement (0 = none)
    def _label_of(self, obj: dict[str, Any]) -> int:
        c = self._classes.index(obj["primitive"]["class"])
        value = c
        if self.config.mapper_as_class:
            value = value * len(self._mappers) + self._mappers.index(obj["mapper"])
        if self.config.displacement_as_class:
            d = 0 if not obj["displacement"] else 1 + self._disps.index(obj["displacement"]["name"])
            value = value * (len(self._disps) + 1) + d
        return value + 1

    def label_names(self) -> dict[int, str]:
        names: dict[int, str] = {}
        for c in self._classes:
            for m in (self._mappers if self.config.mapper_as_class else [None]):
                for d in ((["none"] + self._disps) if self.config.displacement_as_class else [None]):
                    parts = [c] + ([m] if m else []) + ([f"disp_{d}"] if d else [])
                    obj = {"primitive": {"class": c}, "mapper": m,
                           "displacement": None if d in (None, "none") else {"name": d}}
                    names[self._label_of(obj)] = "+".join(parts)
        return dict(sorted(names.items()))

    def sample_record(self, index: int) -> dict[str, Any]:
        """Every drawn parameter of sample ``index`` (no rendering)."""
        rng = sample_rng(self.seed, index, 0)
        objects = sample_objects(self.config, rng=rng)
        for obj in objects:
            obj["label"] = self._label_of(obj)
        return {"mode": "fdif", "seed": self.seed, "index": int(index), "objects": objects}

    def render_record(self, record: dict[str, Any]):
        """Render a record (from :meth:`sample_record` or a records/<case>.json file)."""
        from anatomix.synth import Sample

        grid = self.config.grid
        with torch.no_grad():
            image, label, volumes = render_objects(
                record["objects"], [o["label"] for o in record["objects"]], grid,
                clip=tuple(self.config.clip), quantize=self.config.quantize, device=self.device)
        rec = dict(record)
        rec["volumes_vox"] = volumes
        return Sample(image.cpu().numpy(), label.cpu().numpy(), grid.spacing_mm, rec, grid.origin_mm)

    def sample(self, index: int):
        """Sample ``index`` (an :class:`anatomix.synth.Sample`)."""
        return self.render_record(self.sample_record(index))

    def summary(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Counts of classes, mappers and displacements over the written cases."""
        from collections import Counter

        classes: Counter[str] = Counter()
        mappers: Counter[str] = Counter()
        disps: Counter[str] = Counter()
        empty = 0
        for r in records:
            for o, v in zip(r.get("objects", []), r.get("volumes_vox", [])):
                classes[o["primitive"]["class"]] += 1
                mappers[o["mapper"]] += 1
                disps[o["displacement"]["name"] if o.get("displacement") else "none"] += 1
                empty += int(v == 0)
        return {"cases": len(records), "objects": sum(classes.values()),
                "objects_outside_grid": empty, "classes_seen": len(classes),
                "mappers": dict(sorted(mappers.items())), "displacements": dict(sorted(disps.items()))}
