"""Bank ingest resamples with io.resample_label_map: volume-exact for an integer refinement, thin
structures kept at every grid alignment otherwise (nearest neighbour, the old path, kept or lost
them by alignment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from anatomix.bank import BankWarning, ShapeBank, ingest_masks
from anatomix.bank.geometry import bank_grid
from anatomix.io import write_volume
from anatomix.labels import preset

FL = {v: k for k, v in preset("flare22").items()}  # organ -> FLARE22 value


def _phantom(spacing: float, shape: tuple[int, int, int], plate_vox: int) -> np.ndarray:
    """Two kidneys (the body frame) and a plate ``plate_vox`` voxels thick standing in for an
    adrenal limb, in RAS."""
    x, y, z = np.meshgrid(*[(np.arange(n) - n / 2) * spacing for n in shape], indexing="ij")
    a = np.zeros(shape, np.uint8)
    for side, cx in (("kidney_right", 22.0), ("kidney_left", -22.0)):
        a[(x - cx) ** 2 + y ** 2 + z ** 2 <= 10.0 ** 2] = FL[side]
    i0 = shape[1] // 2 + int(round(15.0 / spacing))
    a[shape[0] // 2 - 12:shape[0] // 2 + 12, i0:i0 + plate_vox, shape[2] // 2 - 12:shape[2] // 2 + 12] = \
        FL["adrenal_gland_left"]
    return a


def _largest_ml(m: np.ndarray, spacing: float) -> float:
    lab, n = ndimage.label(m, np.ones((3, 3, 3)))
    return float(np.bincount(lab.ravel())[1:].max()) * spacing ** 3 / 1000 if n else 0.0


def test_bank_grid_is_nested_for_an_integer_refinement() -> None:
    origin, n = bank_grid((10, 7, 5), (3.0, 3.0, 3.0), (100.0, -20.0, 4.5), np.array([1.5, 1.5, 1.5]))
    assert n.tolist() == [20, 14, 10]  # every 3 mm voxel holds 2 x 2 x 2 bank voxels
    assert np.allclose(origin, (99.25, -20.75, 3.75))  # first bank voxel centre: a quarter in


def test_integer_refinement_keeps_every_volume_exactly(tmp_path: Path) -> None:
    a = _phantom(3.0, (24, 16, 16), plate_vox=1)
    f = write_volume(tmp_path / "coarse.nii.gz", a, (3.0,) * 3, (-31.0, 7.0, 100.5))
    with pytest.warns(BankWarning):  # the plate is thin: flagged, still kept
        ingest_masks([f], tmp_path / "bank", labels="flare22", spacing_mm=1.5)
    bank = ShapeBank.load(tmp_path / "bank", verify=True)
    for organ in ("kidney_left", "kidney_right", "adrenal_gland_left"):
        (rec,) = bank.shapes(organ)
        assert rec.volume_ml == pytest.approx(_largest_ml(a == FL[organ], 3.0), abs=1e-9), organ


@pytest.mark.parametrize("shift_mm", [0.0, 0.2, 0.4, 0.6])
def test_thin_structure_survives_at_every_alignment(tmp_path: Path, shift_mm: float) -> None:
    """A 0.8 mm plate into a 1.5 mm bank: kept, in one piece, with about its volume."""
    a = _phantom(0.8, (80, 64, 48), plate_vox=1)
    true_ml = _largest_ml(a == FL["adrenal_gland_left"], 0.8)
    f = write_volume(tmp_path / "fine.nii.gz", a, (0.8,) * 3, (-32.0, -25.6 + shift_mm, -19.2))
    with pytest.warns(BankWarning):
        ingest_masks([f], tmp_path / "bank", labels="flare22", spacing_mm=1.5)
    bank = ShapeBank.load(tmp_path / "bank", verify=True)
    (rec,) = bank.shapes("adrenal_gland_left")
    assert rec.dropped_fraction == 0.0
    assert 0.75 * true_ml <= rec.volume_ml <= 1.6 * true_ml
