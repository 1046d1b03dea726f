"""The FDIF generator (``mode: fdif``): K random primitives per volume, FDIF's paper setting.

``FdifGenerator(config, seed).sample(index)`` draws every parameter of sample ``index`` from
``anatomix.rng.sample_rng(seed, index)`` first (the record), then renders it
(:func:`anatomix.sdf.compose.render_objects`); the record replays the case exactly.
``sample_batch(indices)`` renders many at once (:func:`anatomix.sdf.batch.render_batch`), the
path for a GPU.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from anatomix import __version__
from anatomix.config import FdifSynthConfig
from anatomix.device import resolve_device
from anatomix.record import RECORD_FORMAT, Pins, content_sha256
from anatomix.rng import sample_rng
from anatomix.sample import Sample
from anatomix.sdf.batch import render_batch
from anatomix.sdf.compose import render_objects
from anatomix.sdf.displacements import sample_displacement
from anatomix.sdf.pose import sample_pose
from anatomix.sdf.primitives import sample_primitive

__all__ = ["FdifGenerator", "sample_objects"]


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
        resolve_device(device)  # fails here, before any sample, when the device is not usable
        self.device = device
        self.pins = Pins(anatomix_version=__version__, config_sha256=content_sha256(config.model_dump(mode="json")))
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
        return {"format_version": RECORD_FORMAT, "mode": "fdif", "seed": self.seed, "index": int(index),
                "pins": self.pins.model_dump(mode="json"), "config": self.config.model_dump(mode="json"),
                "objects": objects}

    def render_record(self, record: dict[str, Any]):
        """Render a record (from :meth:`sample_record` or a records/<case>.json file)."""
        grid = self.config.grid
        # inference mode, not just no_grad: no autograd or version-counter work in the dispatch of
        # thousands of small ops (8 % of a 96^3 volume on one CPU thread); the arrays leave as numpy
        with torch.inference_mode():
            image, label, volumes = render_objects(
                record["objects"], [o["label"] for o in record["objects"]], grid,
                clip=(self.config.clip[0], self.config.clip[1]), quantize=self.config.quantize, device=self.device)
        rec = dict(record)
        rec["volumes_vox"] = volumes
        return Sample(image.cpu().numpy(), label.cpu().numpy(), grid.spacing_mm, rec, grid.origin_mm)

    def sample(self, index: int):
        """Sample ``index`` (an :class:`anatomix.synth.Sample`)."""
        return self.render_record(self.sample_record(index))

    def render_records(self, records: Sequence[dict[str, Any]], chunk_points: int | None = None,
                       max_points: int | None = None) -> list[Sample]:
        """Render several records in one call (:func:`anatomix.sdf.batch.render_batch`; the GPU
        path). A case does not depend on the batch it is in; it agrees with :meth:`render_record`
        within the tolerances stated in tests/test_sdf_batch.py, not byte for byte, so a written
        dataset (whose records replay with :meth:`render_record`) is rendered one case at a time.
        ``chunk_points`` / ``max_points``: as :func:`anatomix.sdf.batch.render_batch`."""
        grid = self.config.grid
        with torch.inference_mode():
            images, labels, volumes = render_batch(
                [r["objects"] for r in records], [[o["label"] for o in r["objects"]] for r in records], grid,
                clip=(self.config.clip[0], self.config.clip[1]), quantize=self.config.quantize, device=self.device,
                chunk_points=chunk_points, max_points=max_points)
            images_np, labels_np = images.cpu().numpy(), labels.cpu().numpy()
        out = []
        for b, record in enumerate(records):
            rec = dict(record)
            rec["volumes_vox"] = volumes[b]
            # copies: a view would keep the whole batch's arrays alive as long as one sample
            out.append(Sample(images_np[b].copy(), labels_np[b].copy(), grid.spacing_mm, rec, grid.origin_mm))
        return out

    def sample_batch(self, indices: Sequence[int]) -> list[Sample]:
        """Samples ``indices`` rendered in one call (:meth:`render_records`)."""
        return self.render_records([self.sample_record(i) for i in indices])

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
