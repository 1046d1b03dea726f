"""Cross-sections: exact 2D signed distances of circles, stars and polygons (torch, any device).

FDIF's prisms, revolutions and tori sweep one of these along an axis or around it
(:mod:`anatomix.sdf.primitives`). Their per-object numbers live in a :class:`PerObject`: Python
floats for one object, per-point tensors for a batch of objects of one class (the batched
renderer, :mod:`anatomix.sdf.batch`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from anatomix.device import to_device

__all__ = ["PerObject", "Polygon", "Section", "polygon_sdf2d", "section_depth", "section_rmax", "star_sdf2d"]


class PerObject:
    """How compiled SDFs hold their per-object numbers: for one object, Python floats (used as
    scalars, as they always were); for a batch of objects of one class, per-point float tensors
    gathered by ``owner`` (point n takes object ``owner[n]``'s value). Both give the same float32
    values, so one formula serves both."""

    def __init__(self, owner: torch.Tensor | None, dtype: torch.dtype, device: torch.device | str) -> None:
        self.owner, self.dtype, self.device = owner, dtype, device

    def __call__(self, values: Sequence[float]) -> Any:
        """One value per object -> a float (one object) or a per-point tensor (N,)."""
        if self.owner is None:
            return float(values[0])
        return to_device(values, self.dtype, self.device)[self.owner]

    def columns(self, table: np.ndarray) -> list[Any]:
        """A (K, P) table (P values per object) -> P values as :meth:`__call__` gives them (one
        copy to the device and one gather for all P)."""
        if self.owner is None:
            return [float(v) for v in table[0]]
        return list(self.rows(table).unbind(0))

    def rows(self, table: np.ndarray) -> torch.Tensor:
        """A (K, ...) table (one row per object) -> (..., 1) for one object, (..., N) for a batch."""
        if self.owner is None:
            return torch.tensor(table[0], dtype=self.dtype, device=self.device)[..., None]
        t = to_device(table, self.dtype, self.device)
        columns = t.reshape(t.shape[0], -1).T.contiguous()  # (values, K): the gather writes rows
        return torch.index_select(columns, 1, self.owner).view(*t.shape[1:], -1)


def _star_constants(radius: float, n: int, w: float) -> tuple[float, float, float, float, float, float]:
    """(an, acx, acy, ecx, ecy, t_max) of :func:`star_sdf2d`, FDIF's ``m = n + w (2 - n)``."""
    m = n + w * (2.0 - n)
    an = math.pi / n
    en = math.pi / m
    acx, acy = radius * math.cos(an), radius * math.sin(an)
    ecx, ecy = math.cos(en), math.sin(en)
    return an, acx, acy, ecx, ecy, acy / ecy


def _star(x: torch.Tensor, y: torch.Tensor, k: tuple[Any, ...]) -> torch.Tensor:
    """The star SDF for constants ``k`` from :func:`_star_constants` (floats, or per-point
    tensors but for ``an``, which the class fixes)."""
    an, acx, acy, ecx, ecy, t_max = k
    ax = torch.abs(x)
    bn = torch.remainder(torch.atan2(y, ax), 2.0 * an).sub_(an)
    r = torch.hypot(ax, y)
    px = (r * torch.cos(bn)).sub_(acx)
    py = torch.sin(bn).abs_().mul_(r).sub_(acy)
    if isinstance(ecx, float):
        t = torch.clamp(torch.add(px * (-ecx), py, alpha=-ecy), 0.0, t_max)
        px.add_(t, alpha=ecx)
        py.add_(t, alpha=ecy)
    else:
        t = torch.minimum(torch.addcmul(px * ecx.neg(), py, ecy.neg()).clamp_(min=0.0), t_max)
        px.addcmul_(t, ecx)
        py.addcmul_(t, ecy)
    return torch.hypot(px, py).copysign_(px)


def star_sdf2d(x: torch.Tensor, y: torch.Tensor, radius: float, n: int, w: float) -> torch.Tensor:
    """Exact SDF of a regular n-pointed star (tips at ``radius``), after I. Quilez's star
    construction with FDIF's ``m = n + w (2 - n)``: ``w = 1`` is the regular n-gon, smaller
    ``w`` gives thinner points (``w = 0``: degenerate spikes)."""
    return _star(x, y, _star_constants(radius, n, w))


class Polygon:
    """Exact SDF of a simple polygon, coefficients precomputed once per polygon.

    Every quantity is linear in the point, so the n edges are evaluated as an (n, N) array
    (edges along rows, points contiguous: reductions over edges are vectorised row minima).
    Evaluating ``s * sdf(p / s)`` for a per-point scale ``s`` (tapered prisms) only scales the
    constant terms, so it costs no divisions. A batch of polygons with the same vertex count
    holds its coefficients per point (:class:`PerObject`).
    """

    def __init__(self, vertices: Sequence[Any], per: PerObject) -> None:
        rows, vys = [], []
        for verts in vertices:  # coefficients from the vertices as the dtype holds them
            # on the CPU whatever torch's default device is: host arithmetic
            v = torch.as_tensor(verts, dtype=torch.float64, device="cpu").to(per.dtype).double().numpy()
            e = np.roll(v, -1, axis=0) - v
            half = 0.5 * np.maximum(np.hypot(e[:, 0], e[:, 1]), 1e-12)
            t = e / (2.0 * half[:, None])  # unit edge direction
            nx, ny = -t[:, 1], t[:, 0]  # left normal: inside of a counter-clockwise polygon
            rows.append(np.stack([
                # m = (p - edge midpoint) . t: |m| > half beyond the edge's ends
                t[:, 0], t[:, 1], -(v * t).sum(1) - half, -half,
                # h = (p - v) . n: signed distance to the edge's line
                nx, ny, -(v[:, 0] * nx + v[:, 1] * ny)]))
            vys.append(np.append(v[:, 1], v[0, 1]))
        n = len(vys[0]) - 1
        both = per.rows(np.concatenate([np.stack(rows).reshape(len(rows), -1), np.stack(vys)], axis=1))
        self.tx, self.ty, self.tc, self.half, self.nx, self.ny, self.nc = both[:7 * n].view(7, n, -1).unbind(0)
        self.vy = both[7 * n:]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        m = self.tx * x
        m.addcmul_(self.ty, y)
        m = m.add_(self.tc) if s is None else m.addcmul_(self.tc, s)
        m.abs_()
        m = m.add_(self.half) if s is None else m.addcmul_(self.half, s)
        m.clamp_(min=0.0).mul_(m)
        h = self.nx * x
        h.addcmul_(self.ny, y)
        h = h.add_(self.nc) if s is None else h.addcmul_(self.nc, s)
        d = m.addcmul_(h, h).amin(0).sqrt_()
        # crossing parity (sign): edge i crosses the horizontal ray from p when its ends lie
        # on both sides of y and p is on the matching side of the edge's line
        above = (y >= self.vy) if s is None else (y >= self.vy * s)
        flip = (above[:-1] != above[1:]).logical_and_(above[:-1] == (h > 0.0))
        inside = flip.sum(0, dtype=torch.uint8).bitwise_and_(1).bool()
        return torch.where(inside, -d, d)

def polygon_sdf2d(x: torch.Tensor, y: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Exact SDF of a simple polygon (vertices (n, 2) in order), sign by crossing parity."""
    per = PerObject(None, x.dtype, x.device)
    return Polygon([vertices.detach().cpu().to(x.dtype)], per)(x.contiguous(), y.contiguous())


class Section:
    """Cross-sections' 2D SDF (circle, star or polygon), ``s * f(p / s)`` for a scale s; one
    section, or a batch of one kind and vertex or point count (:class:`PerObject`)."""

    def __init__(self, sections: Sequence[dict[str, Any]], per: PerObject) -> None:
        self.poly = self.star = None
        if "vertices" in sections[0]:
            self.poly = Polygon([sec["vertices"] for sec in sections], per)
        elif "n" in sections[0]:
            k = [_star_constants(sec["radius"], sec["n"], sec["w"]) for sec in sections]
            self.star = (k[0][0], *per.columns(np.array(k)[:, 1:]))
        else:
            self.radius = per([sec["radius"] for sec in sections])

    def __call__(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        if self.poly is not None:
            return self.poly(x, y, s)
        if self.star is None:  # circle: s (|p / s| - r) = |p| - s r
            d = torch.hypot(x, y)
            return d.sub_(self.radius) if s is None else d.sub_(s * self.radius)
        if s is None:
            return _star(x, y, self.star)
        return _star(x / s, y / s, self.star).mul_(s)


def section_rmax(section: dict[str, Any]) -> float:
    if "vertices" in section:
        return float(max(math.hypot(a, b) for a, b in section["vertices"]))
    return float(section["radius"])


def section_depth(section: dict[str, Any]) -> float:
    """Deepest interior distance of a cross-section (inradius-like), for onion thickness."""
    if "vertices" not in section and "n" not in section:
        return float(section["radius"])
    r = section_rmax(section)
    g = torch.linspace(-r, r, 97, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    if "vertices" in section:
        d = polygon_sdf2d(gx.reshape(-1), gy.reshape(-1), torch.tensor(section["vertices"], dtype=torch.float64))
    else:
        d = star_sdf2d(gx.reshape(-1), gy.reshape(-1), r, section["n"], section["w"])
    return float(-d.min())
