"""FDIF's 9 displacement functions: scalar fields added to an SDF to roughen the surface.

Each field is evaluated on world coordinates (mm) normalised by the grid's half extent
``half_extent_mm`` (FDIF: ``x / max(x)``), then ``u = R @ (p / half_extent_mm) + phase``; FDIF
uses R = identity and phase = 0 (the same field in every sample); anatomix draws a random
rotation and phase per object (:func:`sample_displacement`). The field is ``amplitude *
half_extent_mm * g(u)``:

| name | amplitude | g(u) |
|---|---|---|
| perlin_more_fine | 0.03 | sin(50 u_x) sin(50 u_y) + sin(50 u_z) |
| perlin_fine | 0.01 | same with 30 |
| turbulence | 0.05 | v = 30 u: sin(.1 v_x)cos(.15 v_y) + sin(.2 v_y)cos(.25 v_z) + sin(.3 v_z)cos(.35 v_x) |
| ridge | 0.03 | sum_i abs(sin(30 u_i)) |
| ridge_coarse | 0.05 | sum_i abs(sin(10 u_i)) |
| sharpmax | 0.05 | max_i abs(sin(20 u_i)) |
| sharpmax_fine | 0.03 | max_i abs(sin(40 u_i)) |
| twisted_x | 0.04 | abs(sin(20 u_x)) |
| sawtooth | 0.03 | sum_i (2/pi) (15 u_i - floor(0.5 + 15 u_i)) |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Sequence

import numpy as np
import torch

from anatomix.sdf.pose import affine_rows
from anatomix.sdf.sections import PerObject

__all__ = ["DISPLACEMENTS", "DISPLACEMENT_NAMES", "DisplacementField", "displacement_bound_mm", "displacement_field",
           "displacement_lipschitz", "displacement_range_mm", "sample_displacement"]


# The fields act on u as three coordinate rows (3, N) (contiguous per axis); f multiplies u
# before g and is folded into the rotation (:class:`DisplacementField`).
def _perlin(v: torch.Tensor) -> torch.Tensor:
    s = torch.sin(v)
    return s[0].mul_(s[1]).add_(s[2])


def _turbulence(v: torch.Tensor) -> torch.Tensor:
    return (torch.sin(0.1 * v[0]).mul_(torch.cos(0.15 * v[1]))
            .add_(torch.sin(0.2 * v[1]).mul_(torch.cos(0.25 * v[2])))
            .add_(torch.sin(0.3 * v[2]).mul_(torch.cos(0.35 * v[0]))))


def _ridge(v: torch.Tensor) -> torch.Tensor:
    return torch.sin(v).abs_().sum(0)


def _sharpmax(v: torch.Tensor) -> torch.Tensor:
    return torch.sin(v).abs_().amax(0)


def _twisted(v: torch.Tensor) -> torch.Tensor:  # v: the x row only, (1, N)
    return torch.sin(v[0]).abs_()


def _sawtooth(v: torch.Tensor) -> torch.Tensor:
    return (v - torch.floor(v + 0.5)).sum(0).mul_(2.0 / math.pi)


# name -> (amplitude (fraction of the half extent), g on f * u rows, f, axes used, inf g, sup g,
# Lipschitz bound of g in u)
DISPLACEMENTS: dict[str, tuple[float, Callable[[torch.Tensor], torch.Tensor], float, tuple[int, ...],
                               float, float, float]] = {
    "perlin_more_fine": (0.03, _perlin, 50.0, (0, 1, 2), -2.0, 2.0, 50.0 * math.sqrt(2.0)),
    "perlin_fine": (0.01, _perlin, 30.0, (0, 1, 2), -2.0, 2.0, 30.0 * math.sqrt(2.0)),
    "turbulence": (0.05, _turbulence, 30.0, (0, 1, 2), -3.0, 3.0,
                   30.0 * (math.hypot(0.1, 0.15) + math.hypot(0.2, 0.25) + math.hypot(0.3, 0.35))),
    "ridge": (0.03, _ridge, 30.0, (0, 1, 2), 0.0, 3.0, 30.0 * math.sqrt(3.0)),
    "ridge_coarse": (0.05, _ridge, 10.0, (0, 1, 2), 0.0, 3.0, 10.0 * math.sqrt(3.0)),
    "sharpmax": (0.05, _sharpmax, 20.0, (0, 1, 2), 0.0, 1.0, 20.0),
    "sharpmax_fine": (0.03, _sharpmax, 40.0, (0, 1, 2), 0.0, 1.0, 40.0),
    "twisted_x": (0.04, _twisted, 20.0, (0,), 0.0, 1.0, 20.0),
    "sawtooth": (0.03, _sawtooth, 15.0, (0, 1, 2), -3.0 / math.pi, 3.0 / math.pi, math.inf),  # jumps
}
DISPLACEMENT_NAMES: tuple[str, ...] = tuple(DISPLACEMENTS)


def _field_terms(spec: dict[str, Any], half_extent_mm: float
                 ) -> tuple[Callable[[torch.Tensor], torch.Tensor], float, np.ndarray, np.ndarray]:
    """(g, scale mm, m (r, 3), b (r,)) of a field ``scale * g(m @ p + b)``; m and b float64:
    ``f * (R @ (p / half_extent_mm) + phase)`` on the axes g uses."""
    amp, g, f, axes = DISPLACEMENTS[spec["name"]][:4]
    rot = np.asarray(spec["rotation"], dtype=np.float64) if spec.get("rotation") is not None else np.eye(3)
    phase = np.asarray(spec["phase"], dtype=np.float64) if spec.get("phase") is not None else np.zeros(3)
    idx = list(axes)
    return g, amp * half_extent_mm, rot[idx] * (f / half_extent_mm), phase[idx] * f


class DisplacementField:
    """A displacement field compiled once (rotation, phase, frequency and normaliser folded
    into one affine map); ``field(p)`` takes world points as rows (3, N), mm."""

    def __init__(self, spec: dict[str, Any], half_extent_mm: float, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        self.g, self.scale, m, b = _field_terms(spec, half_extent_mm)
        self.m = torch.tensor(m, dtype=dtype, device=device)
        self.b = torch.tensor(b[:, None], dtype=dtype, device=device)

    @classmethod
    def batched(cls, specs: Sequence[dict[str, Any]], half_extent_mm: float, per: PerObject) -> DisplacementField:
        """Fields of one name for a batch of objects: point n takes ``specs[per.owner[n]]``'s
        rotation and phase (the batched renderer)."""
        names = {spec["name"] for spec in specs}
        if len(names) != 1:
            raise ValueError(f"a batch of displacements must share one name, found {sorted(names)}")
        terms = [_field_terms(spec, half_extent_mm) for spec in specs]
        self = cls.__new__(cls)
        self.g, self.scale = terms[0][0], terms[0][1]
        r = terms[0][2].shape[0]
        both = per.rows(np.stack([np.concatenate([m.ravel(), b]) for _, _, m, b in terms]))
        self.m, self.b = both[:3 * r].view(r, 3, -1), both[3 * r:]  # (r, 3, N), (r, N)
        return self

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        return self.g(affine_rows(self.m, self.b, p)).mul_(self.scale)


def sample_displacement(name: str, *, rng: np.random.Generator, randomize: bool = True) -> dict[str, Any]:
    """Draw a displacement's orientation (uniform rotation) and phase (uniform in [-pi, pi]^3).

    With ``randomize=False`` the field is FDIF's (identity rotation, zero phase).
    """
    if name not in DISPLACEMENTS:
        raise KeyError(f"unknown displacement {name!r}; expected one of {', '.join(DISPLACEMENT_NAMES)}")
    if not randomize:
        return {"name": name, "rotation": np.eye(3).tolist(), "phase": [0.0, 0.0, 0.0]}
    from anatomix.sdf.pose import random_rotation

    return {"name": name, "rotation": random_rotation(rng=rng).tolist(),
            "phase": [float(v) for v in rng.uniform(-math.pi, math.pi, size=3)]}


def displacement_field(spec: dict[str, Any], pts_mm: torch.Tensor, half_extent_mm: float) -> torch.Tensor:
    """Displacement (mm) at world points.

    Args:
        spec: ``{"name", "rotation" (3x3), "phase" (3)}`` from :func:`sample_displacement`
            (or just ``{"name"}`` for FDIF's fixed field).
        pts_mm: (N, 3) world coordinates, mm (grid centre at 0).
        half_extent_mm: FDIF's normaliser ``max(x)`` (largest world x of the grid), mm.

    Returns:
        (N,) tensor to add to an SDF.
    """
    field = DisplacementField(spec, half_extent_mm, pts_mm.dtype, pts_mm.device)
    return field(pts_mm.T.contiguous())


def displacement_bound_mm(name: str, half_extent_mm: float) -> float:
    """sup |displacement| in mm."""
    amp, _, _, _, lo, hi, _ = DISPLACEMENTS[name]
    return amp * half_extent_mm * max(abs(lo), abs(hi))


def displacement_range_mm(name: str, half_extent_mm: float) -> tuple[float, float]:
    """(inf, sup) of the displacement in mm (ridge-like fields are never negative)."""
    amp, _, _, _, lo, hi, _ = DISPLACEMENTS[name]
    return amp * half_extent_mm * lo, amp * half_extent_mm * hi


def displacement_lipschitz(name: str) -> float:
    """Lipschitz constant (mm per mm) of the displacement field (inf where it jumps)."""
    amp, *_, lip = DISPLACEMENTS[name]
    return amp * lip
