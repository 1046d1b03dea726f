"""io.resample_label_map: the package's one label-map resampler keeps thin structures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from anatomix.io import resample_label_map


def _nearest(a: np.ndarray, sp_in: float, sp_out: float, offset_mm: float, n: list[int]) -> np.ndarray:
    idx = [np.clip(np.rint((offset_mm + np.arange(m) * sp_out) / sp_in), 0, s - 1).astype(int) for m, s in zip(n, a.shape)]
    return a[np.ix_(*idx)]


def _plate() -> np.ndarray:
    """A 1-voxel-thick plate (1 mm, like an adrenal limb) beside a large box, at 1 mm."""
    a = np.zeros((60, 60, 60), np.uint8)
    a[10:50, 30, 10:50] = 2
    a[5:25, 5:25, 5:25] = 1
    return a


@pytest.mark.parametrize("offset_mm", [0.0, 0.5, 1.0, 1.5])
def test_thin_plate_survives_downsampling_at_any_alignment(offset_mm: float) -> None:
    a = _plate()
    n = [29, 29, 29]
    out = resample_label_map(a, (1, 1, 1), (0, 0, 0), (2, 2, 2), (offset_mm,) * 3, n)
    true_ml = (a == 2).sum() * 1e-3
    got_ml = (out == 2).sum() * 8e-3
    # never vanishes; a 1 mm plate on a 2 mm grid is one voxel layer (two where the grids tie)
    assert 0.8 * true_ml <= got_ml <= 2.6 * true_ml
    assert ndimage.label(out == 2, np.ones((3, 3, 3)))[1] == 1      # one connected piece
    assert (out == 1).sum() * 8 == pytest.approx(20 ** 3, rel=0.3)  # the box: within the 2 mm quantisation


def test_nearest_neighbour_aliases_the_same_plate() -> None:
    a = _plate()
    n = [29, 29, 29]
    vols = {o: int((_nearest(a, 1, 2, o, n) == 2).sum()) for o in (0.0, 0.5, 1.0, 1.5)}
    assert 0 in vols.values() and max(vols.values()) > 0    # all or nothing by alignment


def test_identity_grid_is_exact_for_blocks() -> None:
    a = np.zeros((20, 20, 20), np.uint16)
    a[2:10, 3:12, 4:15] = 7
    a[11:18, 3:12, 4:15] = 300
    assert np.array_equal(resample_label_map(a, (1.5,) * 3, (0, 0, 0), (1.5,) * 3, (0, 0, 0), a.shape), a)


def test_doctest_example() -> None:
    import doctest

    import anatomix.io

    finder = doctest.DocTestFinder()
    tests = [t for t in finder.find(anatomix.io) if t.name.endswith("resample_label_map")]
    runner = doctest.DocTestRunner()
    for t in tests:
        runner.run(t)
    assert tests and runner.failures == 0
