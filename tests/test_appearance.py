"""Appearance: image range, ablations, window, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from anatomix.config import AppearanceConfig
from anatomix.appearance import apply_lesions, render_image, sample_appearance, sample_lesions
from anatomix.hounsfield import window
from anatomix.placement import sample_scene
from anatomix.render import Grid, render_scene


def _case(graph, bank, cfg, seed=0):
    scene = sample_scene(graph, bank, np.random.default_rng(seed))
    c = np.asarray(scene.organ("liver").centroid_mm)
    grid = Grid((48, 48, 40), (2.5, 2.5, 3.0), tuple(c - [60.0, 60.0, 60.0]))
    r = render_scene(scene, bank, grid)
    lesions = sample_lesions(scene, bank, np.random.default_rng(seed + 200), cfg, 9)
    params = sample_appearance([o.organ for o in scene.organs], {o.organ: o.label for o in scene.organs}, grid,
                               (scene.box_min_mm, scene.box_max_mm), np.random.default_rng(seed + 100), cfg)
    label = r.label.copy()
    painted = apply_lesions(r, label, lesions)
    return render_image(r, label, params, painted), label, params, painted


@pytest.mark.parametrize("cfg", [AppearanceConfig(), AppearanceConfig(texture="none"),
                                 AppearanceConfig(mode="contour"), AppearanceConfig(ct_probability=1.0)])
def test_image_in_unit_range(anatomy_graph, anatomy_bank, cfg):
    img, label, params, _ = _case(anatomy_graph, anatomy_bank, cfg)
    assert img.dtype == np.float32 and img.shape == label.shape
    assert img.min() >= 0.0 and img.max() <= 1.0 and img.std() > 0.01


def test_lesions_inside_their_host(anatomy_graph, anatomy_bank):
    """Over a few seeds (a lesion may lie outside this liver-centred window): lesions are painted
    into the label map, each in one of the graph's lesion hosts."""
    cfg = AppearanceConfig(lesion_probability=1.0, max_lesions=3)
    voxels = 0
    for seed in (2, 3, 5):
        _, label, _, painted = _case(anatomy_graph, anatomy_bank, cfg, seed=seed)
        voxels += int((label == 9).sum())
        for box, mask, les in painted:
            assert les["host"] in ("liver", "kidney_right", "spleen")
    assert voxels > 0


def test_window_and_determinism(anatomy_graph, anatomy_bank):
    x = window(np.array([-1000.0, -175.0, 37.5, 250.0, 3000.0]), (-175.0, 250.0))
    assert np.allclose(x, [0, 0, 0.5, 1, 1])
    a = _case(anatomy_graph, anatomy_bank, AppearanceConfig(), seed=5)[0]
    b = _case(anatomy_graph, anatomy_bank, AppearanceConfig(), seed=5)[0]
    assert a.tobytes() == b.tobytes()



def test_window_gamma_and_the_int16_hu_that_reuse_it():
    """The gamma is exp(gamma log x) (vectorised): within 1e-6 of x ** gamma, 0 and 1 kept; the
    int16 HU built from that windowed image equal the ones built from the HU alone, keep HU
    outside the window and, windowed without gamma (the file holds it), give the image back
    within half the int16 step."""
    from anatomix.hounsfield import hu_int16

    rng = np.random.default_rng(0)
    hu = (rng.standard_normal(size=(70, 9, 8)) * 300.0).astype(np.float32)
    hu[0, 0, :3] = (-175.0, 3000.0, 37.5)
    for gamma in (0.7, 1.0, 1.4):
        img = window(hu, (-175.0, 250.0), gamma)
        ref = np.clip((hu.astype(np.float64) + 175.0) / 425.0, 0.0, 1.0) ** gamma
        assert np.abs(img - ref).max() < 1e-6 and img[0, 0, 0] == 0.0 and img[0, 0, 1] == 1.0
        params = {"acquisition": {"window_hu": (-175.0, 250.0), "gamma": gamma}}
        alone, reused = hu_int16(hu, params), hu_int16(hu, params, windowed=img)
        assert alone.dtype == np.int16 and alone.tobytes() == reused.tobytes()
        outside = (hu < -175.0) | (hu > 250.0)
        assert np.array_equal(alone[outside], np.rint(np.clip(hu[outside], -1024, 3071)).astype(np.int16))
        # the file holds the gamma already: a plain window of it gives the image back
        assert np.abs(window(alone.astype(np.float32), (-175.0, 250.0)) - img).max() <= 0.5 / 425.0 + 1e-6
    with np.errstate(divide="ignore"):  # gamma 0 (x ** 0 = 1, also at 0) and < 0: as powf
        for gamma in (0.0, -0.5):
            ref = np.clip((hu + np.float32(175.0)) * np.float32(1.0 / 425.0), 0.0, 1.0) ** np.float32(gamma)
            assert window(hu, (-175.0, 250.0), gamma).tobytes() == ref.astype(np.float32).tobytes()

def test_config_rejects_bad_values():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AppearanceConfig(window_hu=(250.0, -175.0))
    with pytest.raises(ValidationError):
        AppearanceConfig(texture="perlin")


def test_objects_are_placed_in_world_coordinates():
    """Distractors and lesions are FDIF objects posed in the output grid's world frame: an object
    centred at world c lies around the voxel of c whatever the grid's origin."""
    import torch

    from anatomix.appearance import _fdif_object, _object_values
    from anatomix.sdf import object_sdf

    c = np.array([37.0, -120.0, 415.0])
    obj = _fdif_object(np.random.default_rng(1), c, 20.0, allow_displacement=False)
    for origin in (c - [30.0, 40.0, 50.0], c - [62.0, 10.0, 14.0]):
        grid = Grid((40, 40, 40), (2.0, 2.0, 2.5), tuple(origin))
        box, d, _ = _object_values(obj, grid)
        k = np.rint((c - origin) / np.asarray(grid.spacing_mm)).astype(int)
        assert all(b.start <= i < b.stop for b, i in zip(box, k))
        pt = torch.tensor(grid.world_mm(k)[None], dtype=torch.float32)
        want = float(object_sdf(obj, pt, grid)[0])
        assert float(d[tuple(i - b.start for i, b in zip(k, box))]) == pytest.approx(want, abs=1e-3)
        # the object's own SDF at its centre is that of its pose's origin, independent of the grid
        assert float(object_sdf(obj, torch.tensor(c[None], dtype=torch.float32), grid)[0]) == pytest.approx(
            float(object_sdf(obj, torch.tensor(c[None], dtype=torch.float32), Grid((40, 40, 40), (2.0, 2.0, 2.5),
                                                                                      tuple(origin + 7.0)))[0]))
