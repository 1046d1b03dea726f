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


# ---- anatomy (placement / render / appearance): a 5-organ toy abdomen -------------------------
# A real OrganGraph (from a dict, as a YAML file would give it) and a real ShapeBank (ingested
# from phantom label maps written as NIfTI), so tests follow the product's own rules.

import numpy as _np  # noqa: E402

# organ: (centre mm, radii mm, label, probability) -- world = body frame (the kidney midpoint is
# the origin), RAS (x toward the subject's right, y anterior, z up)
ANATOMY_TOY = {
    "liver": ((50.0, 45.0, 75.0), (70.0, 60.0, 55.0), 1, 1.0),
    "spleen": ((-80.0, 25.0, 55.0), (30.0, 25.0, 45.0), 3, 0.7),
    "kidney_right": ((65.0, 0.0, 0.0), (25.0, 20.0, 38.0), 2, 1.0),
    "kidney_left": ((-65.0, 0.0, 0.0), (24.0, 19.0, 36.0), 5, 1.0),
    "gallbladder": ((20.0, 75.0, 5.0), (15.0, 12.0, 25.0), 4, 1.0),
}
ANATOMY_VOLUMES_ML = {"liver": (600.0, 1500.0), "spleen": (80.0, 250.0), "kidney_right": (50.0, 140.0),
                      "kidney_left": (45.0, 130.0), "gallbladder": (10.0, 35.0)}


def anatomy_graph_dict(contact_tolerance: float = 3.0) -> dict:
    """The toy abdomen's graph file content."""
    organs = {}
    for organ, (centre, _radii, label, prob) in ANATOMY_TOY.items():
        organs[organ] = {"label": label, "anchor": {"mean_mm": list(centre), "cov_mm": (_np.eye(3) * 36.0).tolist()},
                         "volume_ml": list(ANATOMY_VOLUMES_ML[organ]), "required": prob >= 1.0,
                         "probability": prob, "priority": 2 if organ == "gallbladder" else 0}
    relations = [
        {"type": "attached_to", "a": "gallbladder", "b": "liver",
         "offset": {"mean_mm": [-30.0, 30.0, -70.0], "cov_mm": (_np.eye(3) * 9.0).tolist()}},
        {"type": "contact", "a": "gallbladder", "b": "liver", "tolerance": contact_tolerance},
        {"type": "contact", "a": "kidney_right", "b": "liver", "tolerance": contact_tolerance},
        {"type": "direction", "a": "kidney_right", "b": "liver", "direction": "below", "margin_mm": 20.0},
        {"type": "direction", "a": "spleen", "b": "liver", "direction": "left_of", "margin_mm": 60.0},
        {"type": "direction", "a": "kidney_left", "b": "kidney_right", "direction": "left_of", "margin_mm": 80.0},
        {"type": "avoid", "a": "spleen", "b": "kidney_right", "tolerance": 0.01},
    ]
    return {"name": "toy_abdomen", "organs": organs, "relations": relations}


def write_toy_label_maps(folder: Path, subjects: int = 3, spacing: float = 2.0, seed: int = 0,
                         shift_mm: dict | None = None) -> list[Path]:
    """Phantom label maps of the toy abdomen (ellipsoids, jittered per subject) as NIfTI files.

    The last subject's field of view cuts the top of the liver (a truncated shape). ``shift_mm``:
    organ -> world shift applied to every subject (for frame tests).
    """
    from anatomix.io import write_volume

    rng = _np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = _np.array([-130.0, -45.0, -60.0]), _np.array([140.0, 125.0, 150.0])
    paths = []
    for s in range(subjects):
        top = hi.copy()
        if s == subjects - 1:
            top[2] = 115.0  # cuts the liver (top at ~130 mm)
        shape = _np.floor((top - lo) / spacing).astype(int) + 1
        ax = [lo[d] + _np.arange(shape[d]) * spacing for d in range(3)]
        g = _np.meshgrid(*ax, indexing="ij")
        lab = _np.zeros(tuple(shape), _np.uint8)
        # largest first: a smaller organ keeps its voxels where two ellipsoids meet
        for organ in sorted(ANATOMY_TOY, key=lambda o: -_np.prod(ANATOMY_TOY[o][1])):
            centre, radii, label, _ = ANATOMY_TOY[organ]
            r = _np.asarray(radii) * rng.uniform(0.88, 1.12, size=3)
            c = _np.asarray(centre) + rng.normal(0, 3.0, size=3) + _np.asarray((shift_mm or {}).get(organ, (0, 0, 0)))
            lab[sum(((g[d] - c[d]) / r[d]) ** 2 for d in range(3)) <= 1.0] = label
        p = folder / f"toy_{s}.nii.gz"
        write_volume(p, lab, (spacing,) * 3, tuple(lo))
        paths.append(p)
    return paths


TOY_LABELS = {str(label): organ for organ, (_c, _r, label, _p) in ANATOMY_TOY.items()}


def build_toy_bank(folder: Path, **kwargs):
    """A real ShapeBank ingested from the toy label maps (2 mm)."""
    from anatomix.bank import ShapeBank, ingest_masks

    import warnings

    maps = write_toy_label_maps(folder / "maps", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the truncated liver is intended
        ingest_masks(maps, folder / "bank", labels=TOY_LABELS, spacing_mm=2.0)
    return ShapeBank.load(folder / "bank")


@pytest.fixture(scope="session")
def anatomy_bank(tmp_path_factory):
    return build_toy_bank(tmp_path_factory.mktemp("toy_bank"))


@pytest.fixture(scope="session")
def anatomy_graph():
    from anatomix.graph import OrganGraph

    return OrganGraph.from_dict(anatomy_graph_dict(), source="toy_abdomen")
