"""FDIF's 109 primitive classes as signed distance functions (torch, float32, device-agnostic).

A primitive is a *family* (sphere, prism, torus, ...) plus drawn parameters. Parameters are
plain JSON-able dicts (``sample_primitive`` draws them the way FDIF does, sizes relative to the
grid extent ``extent_mm``); :func:`primitive_sdf` evaluates them on points given in the
primitive's local frame (mm, shape (N, 3)). Every SDF here is negative inside, positive outside
and 1-Lipschitz (a distance bound): tapered extrusions are divided by their Lipschitz constant
(FDIF's ``s * f(p / s)`` is not 1-Lipschitz where the scale changes along the axis), and a
piecewise-linear profile is the union (min) of its linear pieces so one steep piece does not
flatten the whole object.

Classes (109): 8 basic, 3 star revolutions, 28 polygon prisms (3..9-gons x straight / convex /
concave / cone profiles), 16 star prisms (5..8 points x 4 profiles), 10 tori (polygon
cross-sections 4..9, star cross-sections 5..8), 44 onioned (hollow) polygon and star prisms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from anatomix.sdf.sections import (PerObject, Polygon, Section, polygon_sdf2d, section_depth, section_rmax,
                                   star_sdf2d)

__all__ = [
    "CLASS_NAMES",
    "CLASSES",
    "PrimitiveClass",
    "PrimitiveSDF",
    "local_half_extent",
    "polygon_sdf2d",
    "primitive_sdf",
    "sample_primitive",
    "star_sdf2d",
]

_POLY_NAMES = {3: "triangle", 4: "square", 5: "pentagon", 6: "hexagon", 7: "heptagon",
               8: "octagon", 9: "nonagon"}
PROFILES = ("straight", "convex", "concave", "cone")


@dataclass(frozen=True)
class PrimitiveClass:
    """One of FDIF's primitive classes.

    Attributes:
        name: snake_case class name (``pentagon_convex_prism``, ``onioned_star6_cone_prism``).
        family: sphere | torus | cone | octahedron | prism | revolution | polygon_torus | star_torus.
        section: prism cross-section: circle | polygon | star (None otherwise).
        n: polygon vertex count or star point count (0 when unused).
        profile: straight | convex | concave | cone (prisms only).
        onioned: hollow shell of the cross-section (prisms only).
    """

    name: str
    family: str
    section: str | None = None
    n: int = 0
    profile: str = "straight"
    onioned: bool = False


def _build_classes() -> tuple[PrimitiveClass, ...]:
    out = [
        PrimitiveClass("sphere", "sphere"),
        PrimitiveClass("cylinder", "prism", "circle"),
        PrimitiveClass("torus", "torus"),
        PrimitiveClass("cone", "cone"),
        PrimitiveClass("octahedron", "octahedron"),
        PrimitiveClass("convex_cylinder", "prism", "circle", profile="convex"),
        PrimitiveClass("concave_cylinder", "prism", "circle", profile="concave"),
        PrimitiveClass("cone_cylinder", "prism", "circle", profile="cone"),
    ]
    out += [PrimitiveClass(f"star{n}_revolution", "revolution", "star", n) for n in (3, 4, 5)]

    def prism_name(sec: str, n: int, profile: str) -> str:
        base = _POLY_NAMES[n] if sec == "polygon" else f"star{n}"
        return f"{base}_prism" if profile == "straight" else f"{base}_{profile}_prism"

    prisms = []
    for profile in PROFILES:
        prisms += [PrimitiveClass(prism_name("polygon", n, profile), "prism", "polygon", n, profile)
                   for n in range(3, 10)]
    for profile in PROFILES:
        prisms += [PrimitiveClass(prism_name("star", n, profile), "prism", "star", n, profile)
                   for n in range(5, 9)]
    out += prisms
    out += [PrimitiveClass(f"{_POLY_NAMES[n]}_torus", "polygon_torus", "polygon", n) for n in range(4, 10)]
    out += [PrimitiveClass(f"star{n}_torus", "star_torus", "star", n) for n in range(5, 9)]
    out += [PrimitiveClass("onioned_" + p.name, "prism", p.section, p.n, p.profile, True) for p in prisms]
    return tuple(out)


CLASSES: tuple[PrimitiveClass, ...] = _build_classes()
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
_BY_NAME = {c.name: c for c in CLASSES}
assert len(CLASSES) == 109 and len(_BY_NAME) == 109


# ---------------------------------------------------------------------------------------------
# parameter draws (FDIF's ranges; S = smallest grid extent in mm)
# ---------------------------------------------------------------------------------------------


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _polygon_vertices(rng: np.random.Generator, n: int, r1: float, r2: float) -> list[list[float]]:
    """FDIF's sector polygon: vertex i at an angle uniform in sector i, radius uniform in [rmin, rmax]."""
    rmin, rmax = min(r1, r2), max(r1, r2)
    verts = []
    for i in range(n):
        ang = rng.uniform(2 * math.pi * i / n, 2 * math.pi * (i + 1) / n)
        rad = rng.uniform(rmin, rmax)
        verts.append([float(rad * math.cos(ang)), float(rad * math.sin(ang))])
    return verts


def _section(rng: np.random.Generator, cls: PrimitiveClass, S: float) -> dict[str, Any]:
    small = cls.profile == "convex"  # FDIF draws smaller sections for the barrel profile
    if cls.section == "circle":
        return {"radius": _u(rng, 0.10 * S, 0.25 * S)}
    lo, hi = (0.05 * S, 0.20 * S) if small else (0.15 * S, 0.40 * S)
    if cls.section == "polygon":
        r1, r2 = _u(rng, lo, hi), _u(rng, lo, hi)
        return {"vertices": _polygon_vertices(rng, cls.n, r1, r2)}
    return {"radius": _u(rng, lo, hi), "n": cls.n, "w": _u(rng, 0.2, 0.7)}


def sample_primitive(name: str, extent_mm: float, *, rng: np.random.Generator) -> dict[str, Any]:
    """Draw the shape parameters of class ``name`` as FDIF does (sizes in mm).

    Args:
        name: a class name from :data:`CLASS_NAMES`.
        extent_mm: the grid's smallest extent (FDIF's ``min(D, H, W)``), mm.
        rng: numpy Generator.

    Returns:
        JSON-able dict: ``class`` plus the family's parameters.
    """
    cls = _BY_NAME[name]
    S = float(extent_mm)
    p: dict[str, Any] = {"class": name}
    if cls.family == "sphere":
        p["radius"] = _u(rng, 0.10 * S, 0.25 * S)
    elif cls.family == "torus":
        p["major"] = _u(rng, 0.10 * S, 0.25 * S)
        p["minor"] = p["major"] * _u(rng, 0.3, 0.7)
    elif cls.family == "cone":
        p["radius"] = _u(rng, 0.10 * S, 0.25 * S)
        p["height"] = _u(rng, 0.10 * S, 0.35 * S)
    elif cls.family == "octahedron":
        p["size"] = _u(rng, 0.10 * S, 0.25 * S)
    elif cls.family == "revolution":
        radius = _u(rng, 0.15 * S, 0.40 * S)
        p["distance"] = _u(rng, 0.0, 0.5 * radius)
        p["section"] = {"radius": radius, "n": cls.n, "w": _u(rng, 0.1, 0.7)}
    elif cls.family in ("polygon_torus", "star_torus"):
        major = S * _u(rng, 0.15, 0.40)
        minor = major * _u(rng, 0.4, 0.8)
        p["major"] = major
        if cls.family == "polygon_torus":
            p["section"] = {"vertices": _polygon_vertices(rng, cls.n, minor, 0.03 * S)}
        else:
            p["section"] = {"radius": minor, "n": cls.n, "w": _u(rng, 0.1, 0.7)}
    elif cls.family == "prism":
        p["half_height"] = _u(rng, 0.1 * S, 0.5 * S) / 2.0
        p["section"] = _section(rng, cls, S)
        h = p["half_height"]
        if cls.profile == "convex":
            p["second_scale"] = _u(rng, 2.0, 4.0)
            p["neck"] = 2 * h * _u(rng, -0.7, 0.7)
        elif cls.profile == "concave":
            p["second_scale"] = _u(rng, 0.2, 0.5)
            p["neck"] = 2 * h * _u(rng, -0.7, 0.7)
        elif cls.profile == "cone":
            p["second_scale"] = _u(rng, 0.0, 1.6)
        if cls.onioned:
            p["onion_ratio"] = _u(rng, 0.2, 0.5)
            p["onion_thickness"] = _onion_thickness(p, cls)
    else:  # pragma: no cover
        raise KeyError(name)
    return p


# ---------------------------------------------------------------------------------------------
# extrusion profiles
# ---------------------------------------------------------------------------------------------


def _profile_pieces(p: dict[str, Any], profile: str) -> list[tuple[float, float, float, float]]:
    """Linear pieces (a0, a1, s0, s1) of the scale profile along the axis over [-h, h]."""
    h = p["half_height"]
    if profile == "straight":
        return [(-h, h, 1.0, 1.0)]
    s2 = p["second_scale"]
    if profile == "cone":
        return [(-h, h, 1.0, s2)]
    neck = p["neck"]

    def scale(a: float) -> float:  # FDIF's piecewise-linear scale, neck may lie outside [-h, h]
        if a < neck:
            return (s2 - 1.0) / (neck + h + 1e-12) * (a + h) + 1.0
        return (s2 - 1.0) / (neck - h + 1e-12) * (a - neck) + s2

    if -h < neck < h:
        return [(-h, neck, 1.0, s2), (neck, h, s2, 1.0)]
    return [(-h, h, scale(-h), scale(h))]


def _onion_thickness(p: dict[str, Any], cls: PrimitiveClass) -> float:
    """FDIF: shell half-thickness = ratio * |min of the cross-section SDF| (its deepest point)."""
    pieces = _profile_pieces(p, cls.profile)
    rmax = section_rmax(p["section"])
    smax = max(max(pc[2], pc[3]) for pc in pieces)
    slope_max = max(abs(pc[3] - pc[2]) / max(pc[1] - pc[0], 1e-9) for pc in pieces)
    depth = section_depth(p["section"])
    return float(p["onion_ratio"] * smax * depth / math.sqrt(1 + (slope_max * rmax) ** 2))


class _PrismPiece:
    """One linear piece of an extrusion: ``s * f(p / s)`` with s linear along the axis, divided
    by its Lipschitz constant, intersected with the piece's slab (one object's piece, or piece
    j of a batch of objects, :class:`PerObject`)."""

    def __init__(self, pieces: Sequence[tuple[float, float, float, float]], rmaxes: Sequence[float],
                 per: PerObject) -> None:
        cols: dict[str, list[float]] = {k: [] for k in ("a0", "a1", "s0", "half", "mid", "slope", "inv_lip", "norm")}
        for (a0, a1, s0, s1), rmax in zip(pieces, rmaxes):
            slope = (s1 - s0) / max(a1 - a0, 1e-9)
            lip = math.sqrt(1.0 + (slope * rmax) ** 2)  # |d/da (s f(p/s))| <= |s'| * rmax
            k = abs(slope) * rmax / lip  # axial gradient component of perp
            for key, value in zip(cols, (a0, a1, s0, 0.5 * (a1 - a0), 0.5 * (a1 + a0), slope, 1.0 / lip,
                                         1.0 / math.sqrt(1.0 + k))):
                cols[key].append(value)
        # a factor of exactly 1 is skipped; in a batch it is applied where any object needs it
        self.tapered = any(sl != 0.0 or s0 != 1.0 for sl, s0 in zip(cols["slope"], cols["s0"]))
        self.lip = any(v != 1.0 for v in cols["inv_lip"])
        self.normed = any(v != 1.0 for v in cols["norm"])
        self.a0, self.a1, self.s0, self.half, self.mid, self.slope, self.inv_lip, self.norm = per.columns(
            np.array(list(cols.values())).T)

    def __call__(self, section: Section, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor,
                 onion_t: Any) -> torch.Tensor:
        if self.tapered:
            s = torch.clamp(a, self.a0, self.a1).sub_(self.a0).mul_(self.slope).add_(self.s0).clamp_(min=1e-6)
            perp = section(x, y, s)
        else:
            perp = section(x, y)
        if self.lip:
            perp.mul_(self.inv_lip)
        if onion_t is not None:
            perp.abs_().sub_(onion_t)
        along = torch.sub(a, self.mid).abs_().sub_(self.half)
        out = torch.hypot(perp.clamp(min=0.0), along.clamp(min=0.0))
        out.add_(torch.maximum(perp, along).clamp_(max=0.0))
        return out.mul_(self.norm) if self.normed else out


class PrimitiveSDF:
    """A primitive's SDF with its parameters compiled once (tensors on ``device``).

    ``PrimitiveSDF(params)(x, y, z)`` takes the local coordinates as three 1D tensors (mm) and
    returns the (N,) signed distance; :func:`primitive_sdf` is the (N, 3) convenience form.
    :meth:`batched` compiles many objects of one class at once (the batched renderer).
    """

    def __init__(self, params: dict[str, Any], dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        self._compile([params], PerObject(None, dtype, device))

    @classmethod
    def batched(cls, params: Sequence[dict[str, Any]], owner: torch.Tensor,
                dtype: torch.dtype = torch.float32) -> PrimitiveSDF:
        """Objects of one class: point n is evaluated with ``params[owner[n]]`` (owner (N,) int64)."""
        self = cls.__new__(cls)
        self._compile(params, PerObject(owner, dtype, owner.device))
        return self

    def _compile(self, plist: Sequence[dict[str, Any]], per: PerObject) -> None:
        names = {p["class"] for p in plist}
        if len(names) != 1:
            raise ValueError(f"a batch of primitives must share one class, found {sorted(names)}")
        self.cls = cls = _BY_NAME[plist[0]["class"]]

        def value(key: str) -> Any:
            return per([p[key] for p in plist])

        fam = cls.family
        self.section: Any = Section([p["section"] for p in plist], per) if "section" in plist[0] else None
        if fam == "sphere":
            self.radius = value("radius")
        elif fam == "torus":
            self.major, self.minor = value("major"), value("minor")
        elif fam == "octahedron":
            self.size = value("size")
        elif fam == "cone":
            self.tri = Polygon([[[-p["radius"], -p["height"] / 2], [p["radius"], -p["height"] / 2],
                                  [0.0, p["height"] / 2]] for p in plist], per)
        elif fam == "revolution":
            self.distance = value("distance")
        elif fam in ("polygon_torus", "star_torus"):
            self.major = value("major")
        elif fam == "prism":
            pieces = [_profile_pieces(p, cls.profile) for p in plist]
            rmaxes = [section_rmax(p["section"]) for p in plist]
            n = max(len(pc) for pc in pieces)  # a one-piece profile repeats its piece: min(d, d) = d
            self.pieces = [_PrismPiece([pc[min(j, len(pc) - 1)] for pc in pieces], rmaxes, per) for j in range(n)]
            self.onion_t = None
            if cls.onioned:
                self.onion_t = per([_onion_thickness(p, cls) if p.get("onion_thickness") is None
                                    else p["onion_thickness"] for p in plist])

    def __call__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        fam = self.cls.family
        if fam == "sphere":
            return (x * x).addcmul_(y, y).addcmul_(z, z).sqrt_().sub_(self.radius)
        if fam == "torus":
            q = torch.hypot(x, z).sub_(self.major)
            return torch.hypot(q, y).sub_(self.minor)
        if fam == "octahedron":
            return (x.abs() + y.abs()).add_(z.abs()).sub_(self.size).mul_(1.0 / math.sqrt(3.0))
        if fam == "cone":
            return self.tri(torch.hypot(x, z), y)
        if fam == "revolution":
            return self.section(torch.hypot(x, z).sub_(self.distance), y)
        if fam in ("polygon_torus", "star_torus"):
            return self.section(torch.hypot(x, z).sub_(self.major), y)
        piece_sdfs = [piece(self.section, x, y, z, self.onion_t) for piece in self.pieces]
        out = piece_sdfs[0]
        for d in piece_sdfs[1:]:
            out = torch.minimum(out, d)
        return out

def primitive_sdf(params: dict[str, Any], pts: torch.Tensor) -> torch.Tensor:
    """Signed distance (mm) of a primitive at points in its local frame.

    Args:
        params: from :func:`sample_primitive` (``class`` + parameters).
        pts: (N, 3) float tensor, local frame mm (prisms extrude along local z, revolutions
            and tori turn around local y).

    Returns:
        (N,) tensor: negative inside, positive outside, 1-Lipschitz.
    """
    f = PrimitiveSDF(params, pts.dtype, pts.device)
    return f(pts[:, 0].contiguous(), pts[:, 1].contiguous(), pts[:, 2].contiguous())


def local_half_extent(params: dict[str, Any]) -> tuple[float, float, float]:
    """Half extents (mm) of an axis-aligned box around the shape in its local frame."""
    cls = _BY_NAME[params["class"]]
    fam = cls.family
    if fam == "sphere":
        r = params["radius"]
        return (r, r, r)
    if fam == "torus":
        e = params["major"] + params["minor"]
        return (e, params["minor"], e)
    if fam == "octahedron":
        s = params["size"]
        return (s, s, s)
    if fam == "cone":
        return (params["radius"], params["height"] / 2, params["radius"])
    if fam == "revolution":
        r = section_rmax(params["section"])
        return (params["distance"] + r, r, params["distance"] + r)
    if fam in ("polygon_torus", "star_torus"):
        r = section_rmax(params["section"])
        return (params["major"] + r, r, params["major"] + r)
    pieces = _profile_pieces(params, cls.profile)
    smax = max(max(pc[2], pc[3]) for pc in pieces)
    r = section_rmax(params["section"]) * smax
    if cls.onioned:  # the shell reaches outside the cross-section by its half-thickness
        t = params.get("onion_thickness")
        t = _onion_thickness(params, cls) if t is None else t
        slope_max = max(abs(pc[3] - pc[2]) / max(pc[1] - pc[0], 1e-9) for pc in pieces)
        r += t * math.sqrt(1 + (slope_max * section_rmax(params["section"])) ** 2)
    return (r, r, params["half_height"])
