"""anatomix.upsample and tissue.cortex_depth: stand-ins for torch's trilinear upsampling and scipy's
distance transform, where the appearance reads them.

trilinear_box gives torch's bytes where torch's CPU kernel fuses multiply-adds (this machine): it
emulates that; elsewhere it may differ in the last bit, so its test allows one float32 rounding
step of the values' scale (1e-6 relative). upsample_twice is exact either way (copies, halves and
pairwise means), so its test compares bytes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anatomix.tissue import cortex_depth
from anatomix.upsample import trilinear_box


@pytest.mark.parametrize("trial", range(8))
def test_trilinear_box_matches_torch(trial: int) -> None:
    rng = np.random.default_rng(trial)
    coarse = rng.standard_normal(size=tuple(int(v) for v in rng.integers(2, 30, size=3))).astype(np.float32)
    size = tuple(int(v) for v in rng.integers(8, 120, size=3))
    ref = F.interpolate(torch.from_numpy(coarse)[None, None], size=size, mode="trilinear",
                        align_corners=True)[0, 0].numpy()
    tol = 1e-6 * float(np.abs(coarse).max())
    np.testing.assert_allclose(trilinear_box(coarse, size), ref, rtol=0, atol=tol)
    lo = [int(rng.integers(0, n)) for n in size]
    box = tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(lo, size))
    np.testing.assert_allclose(trilinear_box(coarse, size, box), ref[box], rtol=0, atol=tol)


@pytest.mark.parametrize("spacing", [(1.5, 1.5, 2.0), (1.0, 1.0, 1.0), (4.0, 4.0, 4.0), (0.8, 1.2, 2.5)])
def test_cortex_depth_is_the_distance_transform_within_reach(spacing: tuple[float, float, float]) -> None:
    from scipy.ndimage import binary_opening, distance_transform_edt

    rng = np.random.default_rng(0)
    bone = binary_opening(rng.random((40, 36, 30)) < 0.7, iterations=1)
    reach = 2.6
    ref = distance_transform_edt(bone, sampling=spacing).astype(np.float32)
    got = cortex_depth(bone, spacing, reach)
    within = bone & (ref <= reach)
    assert np.array_equal(got[within], ref[within])
    assert np.all(np.isinf(got[~within]))


@pytest.mark.parametrize("factors", [(2, 2, 2), (2, 2, 1), (1, 2, 2), (1, 1, 1)])
def test_upsample_twice_matches_torch_bytes(factors: tuple[int, int, int]) -> None:
    from anatomix.upsample import upsample_twice

    rng = np.random.default_rng(sum(factors))
    for shape in [(9, 14, 21), (2, 30, 5), (1, 7, 12), (17, 1, 1)]:
        coarse = torch.from_numpy((rng.standard_normal(size=shape) * 40).astype(np.float32))
        full = tuple((n - 1) * f + 1 if n > 1 else 1 for n, f in zip(shape, factors))
        ref = F.interpolate(coarse[None, None], size=full, mode="trilinear", align_corners=True)[0, 0]
        got = upsample_twice(coarse, factors)
        assert got.shape == ref.shape
        assert got.numpy().tobytes() == ref.numpy().tobytes()  # halves and pairwise means: exact, FMA or not


def test_trilinear_box_writes_into_out_and_covers_a_whole_abdomen_grid() -> None:
    # the context anatomy's fields: 4^3 control values onto a whole-abdomen grid, one channel of a stack
    rng = np.random.default_rng(3)
    coarse = rng.uniform(-1.0, 1.0, size=(4, 4, 4)).astype(np.float32)
    size = (131, 89, 80)
    ref = F.interpolate(torch.from_numpy(coarse)[None, None], size=size, mode="trilinear",
                        align_corners=True)[0, 0].numpy()
    stack = np.zeros((2, *size), dtype=np.float32)
    got = trilinear_box(coarse, size, out=stack[1])
    assert got is stack[1] or np.shares_memory(got, stack)
    np.testing.assert_allclose(stack[1], ref, rtol=0, atol=1e-6)
    assert not stack[0].any()


def test_trilinear_box_channels_and_both_first_axis_paths_give_the_same_bytes() -> None:
    # (c, cx, cy, cz) at once equals c calls; a box small enough for the one-step first axis equals
    # the same box of an output large enough for the slab-by-slab path
    rng = np.random.default_rng(5)
    coarse = rng.standard_normal(size=(3, 6, 5, 4)).astype(np.float32)
    size = (120, 100, 90)  # 1.08 M voxels per channel: slab by slab
    whole = [trilinear_box(coarse[k], size) for k in range(3)]
    stacked = trilinear_box(coarse, size)
    assert stacked.shape == (3, *size)
    for k in range(3):
        assert stacked[k].tobytes() == whole[k].tobytes()
    box = (slice(7, 40), slice(20, 61), slice(3, 33))  # 40 k voxels: one step
    small = trilinear_box(coarse, size, box)
    for k in range(3):
        assert small[k].tobytes() == np.ascontiguousarray(whole[k][box]).tobytes()
    with pytest.raises(ValueError, match="3 or 4 dimensions"):
        trilinear_box(coarse[None], size)


def test_trilinear_field_slabs_are_the_boxes_of_trilinear_box() -> None:
    # context anatomy walks a volume in x-slabs from one TrilinearField: each slab is that box
    from anatomix.upsample import TrilinearField

    rng = np.random.default_rng(7)
    coarse = rng.uniform(-1.0, 1.0, size=(3, 4, 4, 4)).astype(np.float32)
    size = (150, 90, 80)
    whole = trilinear_box(coarse, size)
    field = TrilinearField(coarse, size)
    for xs in (slice(0, 17), slice(17, 150), slice(149, 150)):
        assert field.slab(xs).tobytes() == np.ascontiguousarray(whole[:, xs]).tobytes()
