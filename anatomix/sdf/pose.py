"""Poses: uniform rotations, FDIF's symmetric shear, translation; world <-> local."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["affine_rows", "random_rotation", "sample_pose", "pose_matrices"]


def random_rotation(*, rng: np.random.Generator) -> np.ndarray:
    """A rotation uniform over SO(3) (unit quaternion from a 4D Gaussian)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def sample_pose(extent_mm: tuple[float, float, float], *, rng: np.random.Generator,
                translation_fraction: float = 0.35, shear: float = 0.1,
                rotate: bool = True) -> dict[str, Any]:
    """FDIF's pose: translation uniform in +-0.35 of each grid extent, rotation (uniform over
    SO(3) here; FDIF draws Euler angles), symmetric shear with off-diagonals in +-0.1."""
    t = [float(rng.uniform(-translation_fraction, translation_fraction) * e) for e in extent_mm]
    rot = random_rotation(rng=rng) if rotate else np.eye(3)
    sh = [float(v) for v in rng.uniform(-shear, shear, size=3)] if shear > 0 else [0.0, 0.0, 0.0]
    return {"translation_mm": t, "rotation": rot.tolist(), "shear": sh}


def pose_matrices(pose: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
    """(forward M = R @ S, world->local A = M^-1, 1 / spectral norm of A scaling).

    World point x maps to local p = A @ (x - t). ``A`` is not orthogonal under shear; an SDF
    evaluated at p is divided by ||A||_2 to stay 1-Lipschitz in world mm.
    """
    rot = np.asarray(pose["rotation"], dtype=np.float64)
    shx, shy, shz = pose["shear"]
    s = np.array([[1.0, shx, shy], [shx, 1.0, shz], [shy, shz, 1.0]])
    m = rot @ s
    a = np.linalg.inv(m)
    return m, a, float(np.linalg.norm(a, 2))


def affine_rows(m: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``m @ p + b`` for points as rows ``p`` (3, N): one map (m (r, 3), b (r, 1)), or one map
    per point (m (r, 3, N), b (r, N); a batch of objects, :class:`anatomix.sdf.sections.PerObject`)."""
    if m.dim() == 2:
        return torch.addmm(b, m, p)
    return torch.addcmul(b, m[:, 0], p[0]).addcmul_(m[:, 1], p[1]).addcmul_(m[:, 2], p[2])
