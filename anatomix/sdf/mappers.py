"""FDIF's 10 mapper functions: signed distance (mm) -> intensity in [0, 128].

Each mapper is a pure function of the SDF tensor (any shape, any device). All but
``inverse_cube`` are 0 outside the object (SDF > 0); ``inverse_cube`` also glows outside and
needs an evaluation margin (:func:`mapper_margin_mm`).

| name | formula (d = SDF) |
|---|---|
| exponential_base_{1.5,2.0} | 128 * base ** min(d, 0) inside, 0 outside |
| floor_width_{0.5,1.0} | clamp(128 + 10 * ceil(d / width), 0, 128) inside, 0 outside |
| inverse_cube | 128 / (abs(d) ** 3 + 1) everywhere |
| linear_slope_10.0 | clamp(128 + slope * d, 0, 128) inside, 0 outside |
| modular_5 (width 1), modular_10 (width 0.5) | ((ceil(d / width) + m - 1) mod m) * 128 / (m - 1) inside |
| sinusoidal_wavelength_{1.0,3.0} | 64 * (cos(2 pi d / wavelength) + 1) inside |
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["MAPPERS", "MAPPER_NAMES", "apply_mapper", "apply_mapper_truncated", "mapper_margin_mm",
           "mapper_saturation_mm"]


# In-place chains on one fresh tensor: mappers run on every evaluated voxel.
def _inside(d: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return v.masked_fill_(d > 0.0, 0.0)


def exponential(d: torch.Tensor, base: float) -> torch.Tensor:
    return _inside(d, torch.clamp(d, max=0.0).mul_(math.log(base)).exp_().mul_(128.0))


def floor_steps(d: torch.Tensor, width: float, decrement: float = 10.0) -> torch.Tensor:
    return _inside(d, torch.div(d, width).ceil_().mul_(decrement).add_(128.0).clamp_(0.0, 128.0))


def inverse_cube(d: torch.Tensor) -> torch.Tensor:
    a = torch.abs(d)
    return (a * a).mul_(a).add_(1.0).reciprocal_().mul_(128.0)


def linear(d: torch.Tensor, slope: float) -> torch.Tensor:
    return _inside(d, torch.mul(d, slope).add_(128.0).clamp_(0.0, 128.0))


def modular(d: torch.Tensor, width: float, modulus: int) -> torch.Tensor:
    v = torch.div(d, width).ceil_().add_(modulus - 1.0).remainder_(float(modulus)).mul_(128.0 / (modulus - 1.0))
    return _inside(d, v)


def sinusoidal(d: torch.Tensor, wavelength: float) -> torch.Tensor:
    return _inside(d, torch.mul(d, 2.0 * math.pi / wavelength).cos_().add_(1.0).mul_(64.0))


MAPPERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "exponential_base_1.5": lambda d: exponential(d, 1.5),
    "exponential_base_2.0": lambda d: exponential(d, 2.0),
    "floor_width_0.5": lambda d: floor_steps(d, 0.5),
    "floor_width_1.0": lambda d: floor_steps(d, 1.0),
    "inverse_cube": inverse_cube,
    "linear_slope_10.0": lambda d: linear(d, 10.0),
    "modular_5": lambda d: modular(d, 1.0, 5),
    "modular_10": lambda d: modular(d, 0.5, 10),
    "sinusoidal_wavelength_1.0": lambda d: sinusoidal(d, 1.0),
    "sinusoidal_wavelength_3.0": lambda d: sinusoidal(d, 3.0),
}
MAPPER_NAMES: tuple[str, ...] = tuple(MAPPERS)

# inverse_cube < 0.25 beyond 8 mm: below FDIF's uint8 quantisation step
_MARGIN_MM = {"inverse_cube": 8.0}
# depth (mm) beyond which a mapper's value inside is below 1e-3 (modular, sinusoidal: never;
# inverse_cube: below 0.25, a quarter of FDIF's uint8 step, like its tail outside)
_SATURATION_MM = {
    "exponential_base_1.5": math.log(128e3) / math.log(1.5),
    "exponential_base_2.0": math.log(128e3) / math.log(2.0),
    "floor_width_0.5": 6.5,
    "floor_width_1.0": 13.0,
    "inverse_cube": 8.0,  # < 0.25, as outside (its 1e-3 depth, 50 mm, is never reached)
    "linear_slope_10.0": 12.8,
}
# mappers whose value beyond the saturation depth (or the margin) is small but not exactly 0
_TAILS = ("exponential_base_1.5", "exponential_base_2.0", "inverse_cube")


def apply_mapper(name: str, sdf: torch.Tensor) -> torch.Tensor:
    """Intensity (0..128, float32) of mapper ``name`` applied to an SDF tensor (mm)."""
    try:
        fn = MAPPERS[name]
    except KeyError:
        raise KeyError(f"unknown mapper {name!r}; expected one of {', '.join(MAPPER_NAMES)}") from None
    return fn(sdf)


def apply_mapper_truncated(name: str, sdf: torch.Tensor) -> torch.Tensor:
    """:func:`apply_mapper` with its negligible tails set to 0: beyond
    :func:`mapper_saturation_mm` inside (value < 1e-3; inverse_cube < 0.25) and beyond
    :func:`mapper_margin_mm` outside (inverse_cube < 0.25). This is the value composition adds to the image, so every
    renderer (dense or culled) agrees on it exactly."""
    v = apply_mapper(name, sdf)
    sat = _SATURATION_MM.get(name, math.inf)
    if name in _TAILS:
        cut = sdf < -sat
        if name in _MARGIN_MM:
            cut |= sdf > _MARGIN_MM[name]
        v.masked_fill_(cut, 0.0)
    return v


def mapper_saturation_mm(name: str) -> float:
    """Depth inside (mm) beyond which the mapper's value is below 1e-3 (inverse_cube: 0.25)
    (inf if never)."""
    return _SATURATION_MM.get(name, math.inf)


def mapper_margin_mm(name: str) -> float:
    """How far outside an object (mm) the mapper is non-negligible (0 for inside-only mappers)."""
    return _MARGIN_MM.get(name, 0.0)
