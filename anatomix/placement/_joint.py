"""Anchors from the joint anatomy model and from organ complexes (issue 12).

- joint: when the graph carries an ``anatomy_model`` (:mod:`anatomix.anatomy_model`), the next
  organ's centroid is drawn from the model conditioned on the centroids (and volumes) of the organs
  already placed, scaled by the scene's body scale;
- complexes (``placement.complexes``, off by default): a member of an organ complex
  (:mod:`anatomix.complexes`) whose root is placed takes its anchor from one bank subject's
  member-to-root offset, perturbed within the configured spread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anatomix.anatomy_model import AnatomyModel
from anatomix.bank import ShapeBank
from anatomix.complexes import (
    DEFAULT_COMPLEXES,
    ComplexGeometry,
    choose_subject,
    complex_geometry,
    member_assignment,
    sample_member_anchors,
)
from anatomix.graph import OrganSpec

__all__ = ["complex_anchor", "fuse", "joint_prior", "scene_complexes"]


def joint_prior(model: AnatomyModel, placed: dict[str, Any], info: OrganSpec, h: float, bank: ShapeBank,
                params: dict[str, Any], anchor: np.ndarray, from_bank: bool, body_scale: float,
                min_std_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Conditional centroid mean (3,) and covariance (3, 3) of ``info``'s organ given the placed
    organs (``model`` already scaled by the body scale); None if the model does not know the organ.

    A truncated bank shape's centroid lies away from the whole organ's (a pancreatic-head fragment):
    its anchor's deviation from the model's mean is added. ``min_std_mm`` floors every axis.
    """
    if info.name not in model.organs:
        return None
    obs = {n: p.centroid(h) for n, p in placed.items() if n in model.organs}
    vols = ({n: float(p.lat.count * h ** 3 / 1000.0) for n, p in placed.items() if n in model.organs}
            if model.has_log_volume else None)
    mean, cov = model.conditional(obs, info.name, observed_volume_ml=vols)
    if from_bank and bank.record(params["shape_id"]).truncated:
        mean = mean + (anchor * body_scale - model.centroid_mean_cov(info.name)[0])
    return mean, cov + min_std_mm ** 2 * np.eye(3)


def fuse(m1: np.ndarray, c1: np.ndarray, m2: np.ndarray, c2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Product of two Gaussians (precision-weighted mean and covariance)."""
    p1, p2 = np.linalg.inv(c1), np.linalg.inv(c2)
    cov = np.linalg.inv(p1 + p2)
    return cov @ (p1 @ m1 + p2 @ m2), (cov + cov.T) / 2


def scene_complexes(bank: ShapeBank, present: list[str], *, rng: np.random.Generator
                    ) -> dict[str, ComplexGeometry]:
    """member organ -> geometry of its complex for this scene (one bank subject drawn per complex
    whose root and at least one member are present)."""
    assignment = member_assignment(DEFAULT_COMPLEXES)
    out: dict[str, ComplexGeometry] = {}
    have = set(present) & set(bank.organs)
    for spec in DEFAULT_COMPLEXES:
        members = [m for m in spec.members if assignment.get(m) == spec.name and m in have]
        if spec.root not in have or not members:
            continue
        try:
            sid = choose_subject(bank, spec, rng=rng)
            geo = complex_geometry(bank, spec, sid)
        except KeyError:  # no complete root shape in the bank
            continue
        for m in members:
            if m in geo.offsets_mm:
                out[m] = geo
    return out


def complex_anchor(geo: ComplexGeometry, member: str, root_centroid_mm: np.ndarray, body_scale: float,
                   min_std_mm: float, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of a complex member's candidate positions around the placed root."""
    scaled = ComplexGeometry(geo.spec, geo.subject_id,
                             {m: np.asarray(v) * body_scale for m, v in geo.offsets_mm.items()},
                             {m: np.asarray(c) * body_scale ** 2 for m, c in geo.spread_cov_mm.items()})
    one = ComplexGeometry(geo.spec.model_copy(update={"members": (member,)}), geo.subject_id,
                          {member: scaled.offsets_mm[member]}, {member: scaled.spread_cov_mm[member]})
    mean = sample_member_anchors(one, tuple(float(v) for v in root_centroid_mm), rng=rng)[member]
    return mean, min_std_mm ** 2 * np.eye(3) + 0.25 * scaled.spread_cov_mm[member]
