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
from typing import Any

import numpy as np
import torch

__all__ = ["DISPLACEMENTS", "DISPLACEMENT_NAMES", "displacement_bound_mm", "displacement_field",
           "displacement_lipschitz", "displacement_range_mm", "sample_displacement"]


def _perlin(f: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda u: torch.sin(f * u[:, 0]) * torch.sin(f * u[:, 1]) + torch.sin(f * u[:, 2])


def _turbulence(scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def g(u: torch.Tensor) -> torch.Tensor:
        v = u * scale
        return (torch.sin(0.1 * v[:, 0]) * torch.cos(0.15 * v[:, 1])
                + torch.sin(0.2 * v[:, 1]) * torch.cos(0.25 * v[:, 2])
                + torch.sin(0.3 * v[:, 2]) * torch.cos(0.35 * v[:, 0]))
    return g


def _ridge(f: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda u: torch.abs(torch.sin(f * u)).sum(dim=1)


def _sharpmax(f: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda u: torch.abs(torch.sin(f * u)).amax(dim=1)


def _twisted(f: float, axis: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda u: torch.abs(torch.sin(f * u[:, axis]))


def _sawtooth(f: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def g(u: torch.Tensor) -> torch.Tensor:
        v = f * u
        return ((2.0 / math.pi) * (v - torch.floor(0.5 + v))).sum(dim=1)
    return g


# name -> (amplitude (fraction of the half extent), g, inf g, sup g, Lipschitz bound of g in u)
DISPLACEMENTS: dict[str, tuple[float, Callable[[torch.Tensor], torch.Tensor], float, float, float]] = {
    "perlin_more_fine": (0.03, _perlin(50.0), -2.0, 2.0, 50.0 * math.sqrt(2.0)),
    "perlin_fine": (0.01, _perlin(30.0), -2.0, 2.0, 30.0 * math.sqrt(2.0)),
    "turbulence": (0.05, _turbulence(30.0), -3.0, 3.0, 30.0 * (math.hypot(0.1, 0.15) + math.hypot(0.2, 0.25)
                                                               + math.hypot(0.3, 0.35))),
    "ridge": (0.03, _ridge(30.0), 0.0, 3.0, 30.0 * math.sqrt(3.0)),
    "ridge_coarse": (0.05, _ridge(10.0), 0.0, 3.0, 10.0 * math.sqrt(3.0)),
    "sharpmax": (0.05, _sharpmax(20.0), 0.0, 1.0, 20.0),
    "sharpmax_fine": (0.03, _sharpmax(40.0), 0.0, 1.0, 40.0),
    "twisted_x": (0.04, _twisted(20.0, 0), 0.0, 1.0, 20.0),
    "sawtooth": (0.03, _sawtooth(15.0), -3.0 / math.pi, 3.0 / math.pi, math.inf),  # jumps
}
DISPLACEMENT_NAMES: tuple[str, ...] = tuple(DISPLACEMENTS)


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
    amp, g = DISPLACEMENTS[spec["name"]][:2]
    u = pts_mm * (1.0 / half_extent_mm)
    rot = spec.get("rotation")
    if rot is not None:
        r = torch.tensor(rot, dtype=pts_mm.dtype, device=pts_mm.device)
        u = u @ r.T
    phase = spec.get("phase")
    if phase is not None:
        u = u + torch.tensor(phase, dtype=pts_mm.dtype, device=pts_mm.device)
    return (amp * half_extent_mm) * g(u)


def displacement_bound_mm(name: str, half_extent_mm: float) -> float:
    """sup |displacement| in mm."""
    amp, _, lo, hi, _ = DISPLACEMENTS[name]
    return amp * half_extent_mm * max(abs(lo), abs(hi))


def displacement_range_mm(name: str, half_extent_mm: float) -> tuple[float, float]:
    """(inf, sup) of the displacement in mm (ridge-like fields are never negative)."""
    amp, _, lo, hi, _ = DISPLACEMENTS[name]
    return amp * half_extent_mm * lo, amp * half_extent_mm * hi


def displacement_lipschitz(name: str) -> float:
    """Lipschitz constant (mm per mm) of the displacement field (inf where it jumps)."""
    amp, _, _, _, lip = DISPLACEMENTS[name]
    return amp * lip
