"""Shared pytest fixtures. Each area appends its own fixtures, prefixed with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


# ---- anatomy (placement / render / appearance): a 3-organ toy abdomen -----------------------

from types import SimpleNamespace as _AnatomyNS  # noqa: E402

import numpy as _anatomy_np  # noqa: E402

# organ: (centre mm, radii mm, label, probability) -- body frame, RAS (x right, y anterior, z up)
ANATOMY_TOY = {
    "liver": ((50.0, 10.0, 60.0), (70.0, 60.0, 55.0), 1, 1.0),
    "spleen": ((-80.0, -10.0, 40.0), (30.0, 25.0, 45.0), 3, 0.7),
    "kidney_right": ((65.0, -40.0, -20.0), (25.0, 20.0, 40.0), 2, 1.0),
    "gallbladder": ((20.0, 40.0, -10.0), (15.0, 12.0, 25.0), 4, 1.0),
}


class AnatomyPhantomBank:
    """Duck-typed ShapeBank: 3 subjects of ellipsoids per organ, SDF crops at 2 mm."""

    def __init__(self, subjects: int = 3, spacing: float = 2.0, seed: int = 0) -> None:
        from scipy import ndimage

        rng = _anatomy_np.random.default_rng(seed)
        self.spacing_mm = (spacing, spacing, spacing)
        self._records: dict[str, _AnatomyNS] = {}
        self._sdf: dict[str, _anatomy_np.ndarray] = {}
        for organ, (centre, radii, _, _) in ANATOMY_TOY.items():
            for s in range(subjects):
                r = _anatomy_np.asarray(radii) * rng.uniform(0.85, 1.15, size=3)
                c = _anatomy_np.asarray(centre) + rng.normal(0, 3.0, size=3)
                n = (_anatomy_np.ceil(2 * r / spacing).astype(int) + 17)
                half = (n - 1) / 2.0
                ax = [(_anatomy_np.arange(n[d]) - half[d]) * spacing for d in range(3)]
                g = _anatomy_np.meshgrid(*ax, indexing="ij")
                inside = sum((g[d] / r[d]) ** 2 for d in range(3)) <= 1.0
                sdf = (ndimage.distance_transform_edt(~inside, sampling=spacing)
                       - ndimage.distance_transform_edt(inside, sampling=spacing)).astype(_anatomy_np.float32)
                sid = f"{organ}__s{s}"
                self._sdf[sid] = sdf
                self._records[sid] = _AnatomyNS(
                    shape_id=sid, organ=organ, subject_id=f"s{s}", shape_vox=tuple(int(v) for v in n),
                    origin_mm=tuple(float(v) for v in c - half * spacing),
                    centroid_mm=tuple(float(v) for v in c), volume_ml=float(inside.sum() * spacing**3 / 1000),
                    truncated=(organ == "liver" and s == 2), qc_flags=[])
        self.organs = sorted(ANATOMY_TOY)
        self.subjects = [f"s{s}" for s in range(subjects)]

    def shapes(self, organ: str) -> list:
        return [r for r in self._records.values() if r.organ == organ]

    def record(self, shape_id: str):
        return self._records[shape_id]

    def sdf(self, shape_id: str):
        return self._sdf[shape_id]

    def mask(self, shape_id: str):
        return self._sdf[shape_id] <= 0


class AnatomyPhantomGraph:
    """Duck-typed OrganGraph for the toy abdomen."""

    def __init__(self, contact_tolerance: float = 3.0) -> None:
        self._organs = {}
        for organ, (centre, _radii, label, prob) in ANATOMY_TOY.items():
            self._organs[organ] = _AnatomyNS(
                name=organ, label=label,
                anchor=_AnatomyNS(mean_mm=list(centre), cov_mm=(_anatomy_np.eye(3) * 36.0).tolist()),
                required=prob >= 1.0, probability=prob, rotation_deg=(-10.0, 10.0), scale=(0.9, 1.1),
                priority=2.0 if organ == "gallbladder" else 0.0,
                offset=(_AnatomyNS(mean_mm=[-30.0, 30.0, -70.0], cov_mm=(_anatomy_np.eye(3) * 9.0).tolist())
                        if organ == "gallbladder" else None))
        R = _AnatomyNS
        self._relations = [
            R(type="attached_to", a="gallbladder", b="liver", hard=True, tolerance=0.0, direction=None, margin_mm=0.0),
            R(type="contact", a="gallbladder", b="liver", hard=False, tolerance=contact_tolerance, direction=None, margin_mm=0.0),
            R(type="contact", a="kidney_right", b="liver", hard=False, tolerance=contact_tolerance, direction=None, margin_mm=0.0),
            R(type="direction", a="kidney_right", b="liver", hard=True, tolerance=0.0, direction="below", margin_mm=20.0),
            R(type="direction", a="spleen", b="liver", hard=True, tolerance=0.0, direction="left_of", margin_mm=60.0),
            R(type="avoid", a="spleen", b="kidney_right", hard=True, tolerance=0.01, direction=None, margin_mm=0.0),
        ]

    @property
    def organs(self) -> list:
        return list(self._organs)

    def organ(self, name: str):
        return self._organs[name]

    def placement_order(self) -> list:
        return ["liver", "spleen", "kidney_right", "gallbladder"]

    def parent(self, name: str):
        return "liver" if name == "gallbladder" else None

    def relations(self, organ=None) -> list:
        return [r for r in self._relations if organ is None or organ in (r.a, r.b)]

    def label_table(self) -> dict:
        return {o.label: n for n, o in self._organs.items()}


@pytest.fixture(scope="session")
def anatomy_bank() -> AnatomyPhantomBank:
    return AnatomyPhantomBank()


@pytest.fixture(scope="session")
def anatomy_graph() -> AnatomyPhantomGraph:
    return AnatomyPhantomGraph()
