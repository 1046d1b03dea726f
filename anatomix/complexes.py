"""Organ complexes: organs that real anatomy keeps together, placed as a unit.

A complex has a root organ and members. Placing it: the root is placed first (by placement, as
any organ); the members' anchors are then the root's placed centroid plus the member-to-root
centroid offsets of ONE bank subject (its relative geometry, so a duodenum keeps its C around
that subject's pancreas head), perturbed within the variation of those offsets across the bank's
subjects scaled by ``spread``: ``anchor = root + offset_subject + e``, ``e ~ N(0, spread^2 S)``,
where ``S`` is the across-subject covariance of the offset, regularised toward
``diag(prior_std_mm^2)`` with ``prior_weight`` pseudo-subjects (with one subject it IS the prior).

Defaults (:data:`DEFAULT_COMPLEXES`), in priority order: an organ listed in several complexes
belongs to the first of them that lists it (:func:`member_assignment`): the inferior vena cava
goes with the liver, not with the aorta; the right adrenal with the liver, not with the kidney.

Everything here is a pure function of a bank's manifest (per-shape body-frame centroids): no
pipeline imports beyond the bank API (``shapes(organ)``, ``subjects``), randomness as a
keyword-only ``rng``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_COMPLEXES",
    "ComplexGeometry",
    "ComplexSpec",
    "choose_subject",
    "complex_geometry",
    "member_assignment",
    "offset_spread",
    "sample_member_anchors",
    "subject_offsets",
]

DEFAULT_PRIOR_STD_MM = 5.0
DEFAULT_PRIOR_WEIGHT = 2.0


class ComplexSpec(BaseModel):
    """One complex (a possible ``complexes:`` entry of a graph file).

    Attributes:
        name: identifier.
        root: the organ placed first; members follow it.
        members: organs placed relative to the root.
        spread: multiplier of the across-subject offset standard deviation (0 = the chosen
            subject's geometry exactly; 1 = as much as subjects differ).
        enabled: placement uses it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    root: str
    members: tuple[str, ...] = Field(min_length=1)
    spread: float = Field(default=0.5, ge=0.0, le=3.0)
    enabled: bool = True

    @model_validator(mode="after")
    def _root_not_member(self) -> ComplexSpec:
        if self.root in self.members or len(set(self.members)) != len(self.members):
            raise ValueError(f"complex {self.name}: expected distinct members other than the root {self.root!r}; "
                             f"found {list(self.members)}")
        return self


DEFAULT_COMPLEXES: tuple[ComplexSpec, ...] = (
    ComplexSpec(name="foregut", root="stomach", members=("duodenum", "pancreas")),
    ComplexSpec(name="hepatic", root="liver", members=("gallbladder", "inferior_vena_cava", "adrenal_gland_right")),
    ComplexSpec(name="kidney_adrenal_right", root="kidney_right", members=("adrenal_gland_right",)),
    ComplexSpec(name="kidney_adrenal_left", root="kidney_left", members=("adrenal_gland_left",)),
    ComplexSpec(name="great_vessels", root="aorta", members=("inferior_vena_cava", "esophagus")),
)


def member_assignment(complexes: Sequence[ComplexSpec]) -> dict[str, str]:
    """member organ -> name of the complex that places it (the first enabled one listing it).

    An organ that is the root of an earlier complex is not a member of a later one (it is placed
    on its own anchor), and a member of an earlier complex stays out of later ones.
    """
    out: dict[str, str] = {}
    roots: set[str] = set()
    for c in complexes:
        if not c.enabled:
            continue
        roots.add(c.root)
        for m in c.members:
            if m not in out and m not in roots:
                out[m] = c.name
    return out


def _complete_centroids(bank: Any, organ: str) -> dict[str, np.ndarray]:
    """subject id -> body-frame centroid of the organ's complete (untruncated) shape."""
    return {str(r.subject_id): np.asarray(r.centroid_mm, dtype=np.float64)
            for r in bank.shapes(organ) if not r.truncated} if organ in bank.organs else {}


def subject_offsets(bank: Any, subject_id: str, spec: ComplexSpec) -> dict[str, np.ndarray]:
    """member -> centroid offset (3,) mm from the root, in one bank subject (body frame).

    Members without a complete shape in that subject are left out.

    Raises:
        KeyError: the subject has no complete shape of the root.
    """
    roots = _complete_centroids(bank, spec.root)
    if subject_id not in roots:
        raise KeyError(f"complex {spec.name}: expected a complete {spec.root} shape in subject {subject_id}; "
                       f"found none (subjects with one: {', '.join(sorted(roots)) or 'none'})")
    out = {}
    for m in spec.members:
        cm = _complete_centroids(bank, m)
        if subject_id in cm:
            out[m] = cm[subject_id] - roots[subject_id]
    return out


def offset_spread(bank: Any, spec: ComplexSpec, *, prior_std_mm: float = DEFAULT_PRIOR_STD_MM,
                  prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> dict[str, np.ndarray]:
    """member -> across-subject covariance (3, 3) mm^2 of its offset from the root, regularised:
    ``((n - 1) S + w diag(prior^2)) / (n - 1 + w)`` over the n subjects with both complete."""
    roots = _complete_centroids(bank, spec.root)
    out = {}
    prior = np.eye(3) * prior_std_mm ** 2
    for m in spec.members:
        cm = _complete_centroids(bank, m)
        d = np.array([cm[s] - roots[s] for s in sorted(set(cm) & set(roots))])
        n = len(d)
        s = np.cov(d.T, ddof=1) if n >= 2 else np.zeros((3, 3))
        out[m] = (max(n - 1, 0) * s + prior_weight * prior) / (max(n - 1, 0) + prior_weight)
    return out


def choose_subject(bank: Any, spec: ComplexSpec, *, rng: np.random.Generator) -> str:
    """A bank subject to take the complex's geometry from: uniformly among those with a complete
    root and the most complete members.

    Raises:
        KeyError: no subject has a complete shape of the root.
    """
    roots = _complete_centroids(bank, spec.root)
    if not roots:
        raise KeyError(f"complex {spec.name}: expected a complete {spec.root} shape in some bank subject; found none")
    members = {m: _complete_centroids(bank, m) for m in spec.members}
    score = {s: sum(s in c for c in members.values()) for s in roots}
    best = max(score.values())
    cands = sorted(s for s, k in score.items() if k == best)
    return cands[int(rng.integers(len(cands)))]


@dataclass(frozen=True)
class ComplexGeometry:
    """What placement needs of one complex in one virtual subject.

    Attributes:
        spec: the complex.
        subject_id: bank subject whose relative geometry it uses.
        offsets_mm: member -> offset (3,) from the root in that subject.
        spread_cov_mm: member -> perturbation covariance (3, 3), ``spec.spread^2 * S``.
    """

    spec: ComplexSpec
    subject_id: str
    offsets_mm: Mapping[str, np.ndarray]
    spread_cov_mm: Mapping[str, np.ndarray]


def complex_geometry(bank: Any, spec: ComplexSpec, subject_id: str, **spread_kwargs: float) -> ComplexGeometry:
    """Offsets of one subject plus the perturbation covariances (see the module docstring)."""
    offs = subject_offsets(bank, subject_id, spec)
    spread = offset_spread(bank, spec, **spread_kwargs)
    return ComplexGeometry(spec, subject_id, offs, {m: spec.spread ** 2 * spread[m] for m in offs})


def sample_member_anchors(geometry: ComplexGeometry, root_centroid_mm: Sequence[float], *,
                          rng: np.random.Generator) -> dict[str, np.ndarray]:
    """member -> anchor (3,) mm: the placed root's centroid + the subject's offset + a perturbation.

    Members are drawn in ``spec.members`` order (one 3-vector each), so a record replays.
    """
    root = np.asarray(root_centroid_mm, dtype=np.float64).reshape(3)
    out = {}
    for m in geometry.spec.members:
        if m not in geometry.offsets_mm:
            continue
        cov = np.asarray(geometry.spread_cov_mm[m])
        e = rng.multivariate_normal(np.zeros(3), cov, method="cholesky") if np.any(cov) else np.zeros(3)
        out[m] = root + np.asarray(geometry.offsets_mm[m]) + e
    return out
