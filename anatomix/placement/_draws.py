"""Random draws of one organ's shape variant: which bank shape(s), scale, rotation, elastic terms."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from anatomix.bank import ShapeBank
from anatomix.config import PlacementConfig
from anatomix.graph import OrganSpec
from anatomix.shape_field import OrganField, organ_field

__all__ = ["bank_records", "choose_shapes", "draw_shape", "elastic_terms", "mahalanobis"]


def bank_records(bank: ShapeBank, organ: str) -> list[Any]:
    return list(bank.shapes(organ))


def choose_shapes(bank: ShapeBank, organ: str, rng: np.random.Generator, config: PlacementConfig,
                   prefer: set[str] | None = None, coherence: float = 0.0, blend_scale: float = 1.0
                   ) -> tuple[str, str | None, float]:
    """(shape id, blend shape id or None, blend weight). With probability ``coherence`` the first
    shape comes from one of the ``prefer`` subjects (those of the placed neighbours) when the bank
    has this organ for one of them: organs of one subject fit together."""
    recs = bank_records(bank, organ)
    w = np.array([config.truncated_weight if bool(r.truncated) else 1.0 for r in recs])
    if w.sum() <= 0:
        w = np.ones(len(recs))
    w1 = w
    if prefer and coherence > 0 and rng.random() < coherence:
        same = np.array([str(r.subject_id) in prefer for r in recs])
        if (w * same).sum() > 0:
            w1 = w * same
    i = int(rng.choice(len(recs), p=w1 / w1.sum()))
    first = recs[i]
    blend_id, weight = None, 0.0
    if config.interpolation_probability > 0 and rng.random() < config.interpolation_probability:
        sid = first.subject_id
        others = [j for j, r in enumerate(recs) if j != i and r.subject_id != sid]
        if others:
            wo = w[others]
            if wo.sum() > 0:
                j = others[int(rng.choice(len(others), p=wo / wo.sum()))]
                blend_id = str(recs[j].shape_id)
                weight = float(rng.uniform(0.0, 1.0)) * blend_scale
    return str(first.shape_id), blend_id, weight


def elastic_terms(rng: np.random.Generator, config: PlacementConfig) -> list[dict[str, Any]]:
    terms: list[dict[str, Any]] = []
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


def draw_shape(bank: ShapeBank, info: OrganSpec, body_scale: float, rng: np.random.Generator,
                config: PlacementConfig, cache: dict[str, Any] | None, random_rotation: bool = False,
                shrink: float = 1.0, prefer: set[str] | None = None) -> tuple[dict[str, Any], OrganField]:
    """Draw a shape variant; ``shrink`` < 1 (later attempts) narrows the variation towards the bank
    shape (and the blend towards the first, neighbour-coherent, subject)."""
    coherence = config.subject_coherence if shrink >= 1.0 else 1.0
    shape_id, blend_id, weight = choose_shapes(bank, info.name, rng, config, prefer, coherence,
                                                blend_scale=min(1.0, shrink))
    base = (1.0 + shrink * (rng.uniform(info.scale[0], info.scale[1]) - 1.0)) * body_scale
    scale = base * (1.0 + shrink * rng.uniform(-config.anisotropy, config.anisotropy, size=3))
    if random_rotation:
        rot = rng.uniform(-180.0, 180.0, size=3)
    else:
        rot = shrink * rng.uniform(info.rotation_deg[:, 0], info.rotation_deg[:, 1])
    elastic = elastic_terms(rng, config)
    for e in elastic:
        e["amplitude_mm"] = tuple(float(v) * shrink for v in e["amplitude_mm"])
    params = {"shape_id": shape_id, "blend_shape_id": blend_id, "blend_weight": weight,
              "scale": tuple(float(v) for v in scale), "rotation_deg": tuple(float(v) for v in rot),
              "elastic": elastic}
    fld = organ_field(bank, shape_id, blend_id, weight, tuple(scale), tuple(rot), (0.0, 0.0, 0.0), elastic, cache=cache)
    return params, fld


def mahalanobis(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    d = x - mean
    return float(math.sqrt(max(0.0, d @ np.linalg.solve(cov, d))))
