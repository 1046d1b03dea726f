"""anatomix.filters.gaussian_filter: scipy's Gaussian filter, its first two axes as shifted slices."""

import numpy as np
import pytest
from scipy import ndimage

from anatomix.filters import gaussian_filter


@pytest.mark.parametrize("mode", ["wrap", "nearest"])
@pytest.mark.parametrize("shape,sigma", [((40, 31, 22), (0.53, 1.07, 0.4)), ((9, 12, 10), (2.2, 0.0, 1.6)),
                                         ((3, 8, 8), (1.4, 1.4, 1.4)), ((64, 5, 7), (0.25, 2.0, 0.0))])
def test_gaussian_filter_matches_scipy(mode: str, shape: tuple[int, int, int], sigma: tuple[float, ...]) -> None:
    # small first axes (3, 9 voxels) put every row within the kernel radius of an edge
    x = np.random.default_rng(0).standard_normal(size=shape).astype(np.float32) * 40.0 + 100.0
    ref = ndimage.gaussian_filter(x, sigma=sigma, mode=mode, truncate=3.0)
    got = gaussian_filter(x, sigma, mode=mode, truncate=3.0)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * float(np.abs(x).max()))


def test_gaussian_filter_leaves_its_input_alone_and_rejects_other_modes() -> None:
    x = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    before = x.copy()
    out = gaussian_filter(x, 0.0)
    assert np.array_equal(out, x) and out is not x
    gaussian_filter(x, 1.0)
    assert np.array_equal(x, before)
    with pytest.raises(ValueError, match="mode 'reflect'"):
        gaussian_filter(x, 1.0, mode="reflect")


@pytest.mark.parametrize("mode", ["wrap", "nearest"])
def test_filter_axis_gives_the_same_bytes_whatever_the_chunk_size(mode: str) -> None:
    # large volumes are filtered in cache-sized chunks; a chunk of one row must change no value
    from anatomix.filters import _filter_axis

    x = np.random.default_rng(1).standard_normal(size=(23, 17, 11)).astype(np.float32)
    for axis in (0, 1):
        whole = _filter_axis(x, 1.7, mode, 3.0, axis, chunk_bytes=1 << 30)
        for chunk_bytes in (1, 3 * x.nbytes // x.shape[1 - axis]):
            assert _filter_axis(x, 1.7, mode, 3.0, axis, chunk_bytes=chunk_bytes).tobytes() == whole.tobytes()
