"""FDIF SDF library: primitives, mappers, displacements, composition."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from anatomix.sdf import (CLASS_NAMES, DISPLACEMENT_NAMES, MAPPER_NAMES, Grid, apply_mapper,
                          displacement_field, local_half_extent, object_sdf, primitive_sdf,
                          random_rotation, render_objects, sample_pose, sample_primitive)
from anatomix.sdf.primitives import CLASSES, polygon_sdf2d, star_sdf2d

EXTENT = 96.0


def test_fdif_class_count():
    assert len(CLASS_NAMES) == 109 and len(set(CLASS_NAMES)) == 109
    fam = [c.family for c in CLASSES]
    assert sum(c.onioned for c in CLASSES) == 44
    assert fam.count("revolution") == 3
    assert fam.count("polygon_torus") + fam.count("star_torus") == 10
    assert sum(1 for c in CLASSES if c.family == "prism" and not c.onioned and c.section == "polygon") == 28
    assert sum(1 for c in CLASSES if c.family == "prism" and not c.onioned and c.section == "star") == 16


def _box_points(params, n=20, pad=1.25, seed=0):
    he = np.asarray(local_half_extent(params)) * pad + 2.0
    axes = [torch.linspace(-h, h, n) for h in he]
    g = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    return g, he


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_fdif_primitive_is_a_signed_distance(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # hash() is salted per process
    for _ in range(2):
        p = sample_primitive(name, EXTENT, rng=rng)
        pts, he = _box_points(p)
        d = primitive_sdf(p, pts)
        assert d.dtype == torch.float32 and d.shape == (pts.shape[0],)
        assert torch.isfinite(d).all()
        assert (d < 0).any(), "no inside"
        # everything outside the local bounding box is outside the shape
        outside = (pts.abs() > torch.tensor(local_half_extent(p)) + 1e-3).any(dim=1)
        assert (d[outside] > 0).all(), "negative outside the bounding box"
        # the zero level set is crossed between grid neighbours
        grid = d.view(20, 20, 20)
        assert ((grid[1:] * grid[:-1]) <= 0).any()
        # 1-Lipschitz: random close pairs and distant pairs
        g = torch.Generator().manual_seed(1)
        a = (torch.rand(4000, 3, generator=g) * 2 - 1) * torch.tensor(he, dtype=torch.float32)
        step = torch.randn(4000, 3, generator=g)
        step = step / step.norm(dim=1, keepdim=True) * torch.rand(4000, 1, generator=g) * 3.0
        b = a + step
        ratio = (primitive_sdf(p, a) - primitive_sdf(p, b)).abs() / step.norm(dim=1)
        assert float(ratio.max()) <= 1.0 + 2e-3, f"Lipschitz constant {float(ratio.max()):.4f}"


def test_fdif_exact_distances_of_simple_shapes():
    pts = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 0.0, 7.0]])
    d = primitive_sdf({"class": "sphere", "radius": 5.0}, pts)
    assert torch.allclose(d, torch.tensor([-5.0, 5.0, 2.0]))
    sq = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    d2 = polygon_sdf2d(torch.tensor([0.0, 3.0, 2.0]), torch.tensor([0.0, 0.0, 2.0]), sq)
    assert torch.allclose(d2, torch.tensor([-1.0, 2.0, math.sqrt(2.0)]), atol=1e-5)
    # a star with w = 1 is a regular n-gon: apothem = r cos(pi / n)
    d3 = star_sdf2d(torch.tensor([0.0]), torch.tensor([0.0]), 10.0, 6, 1.0)
    assert abs(float(d3) + 10.0 * math.cos(math.pi / 6)) < 1e-4


def _np_mapper(name, d):
    inside = d <= 0
    if name == "inverse_cube":
        return 128.0 / (np.abs(d) ** 3 + 1)
    if name.startswith("exponential_base_"):
        v = 128.0 * float(name.rsplit("_", 1)[1]) ** np.minimum(d, 0)
    elif name.startswith("floor_width_"):
        v = np.clip(np.ceil(d / float(name.rsplit("_", 1)[1])) * 10 + 128, 0, 128)
    elif name == "linear_slope_10.0":
        v = np.clip(128 + 10 * d, 0, 128)
    elif name.startswith("modular_"):
        m = int(name.split("_")[1])
        w = {5: 1.0, 10: 0.5}[m]
        v = np.mod(np.ceil(d / w) + m - 1, m) * 128 / (m - 1)
    else:
        lam = float(name.rsplit("_", 1)[1])
        v = (np.cos(2 * np.pi * d / lam) + 1) * 64
    return np.where(inside, v, 0.0)


@pytest.mark.parametrize("name", MAPPER_NAMES)
def test_fdif_mapper_formula(name):
    d = np.array([-13.7, -5.3, -2.2, -1.0, -0.74, -0.26, 0.0, 0.3, 1.5, 4.0], dtype=np.float32)
    got = apply_mapper(name, torch.from_numpy(d)).numpy()
    np.testing.assert_allclose(got, _np_mapper(name, d.astype(np.float64)), rtol=1e-4, atol=1e-3)
    assert got.min() >= 0 and got.max() <= 128 + 1e-4


def _np_disp(name, u, h):
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    s = np.sin
    table = {
        "perlin_more_fine": (0.03, s(50 * x) * s(50 * y) + s(50 * z)),
        "perlin_fine": (0.01, s(30 * x) * s(30 * y) + s(30 * z)),
        "turbulence": (0.05, s(3 * x) * np.cos(4.5 * y) + s(6 * y) * np.cos(7.5 * z) + s(9 * z) * np.cos(10.5 * x)),
        "ridge": (0.03, np.abs(s(30 * u)).sum(1)),
        "ridge_coarse": (0.05, np.abs(s(10 * u)).sum(1)),
        "sharpmax": (0.05, np.abs(s(20 * u)).max(1)),
        "sharpmax_fine": (0.03, np.abs(s(40 * u)).max(1)),
        "twisted_x": (0.04, np.abs(s(20 * x))),
        "sawtooth": (0.03, (2 / np.pi * (15 * u - np.floor(0.5 + 15 * u))).sum(1)),
    }
    amp, g = table[name]
    return amp * h * g


@pytest.mark.parametrize("name", DISPLACEMENT_NAMES)
def test_fdif_displacement_formula(name):
    rng = np.random.default_rng(3)
    pts = rng.uniform(-47, 47, size=(200, 3))
    h = 47.0
    got = displacement_field({"name": name}, torch.tensor(pts, dtype=torch.float32), h).numpy()
    np.testing.assert_allclose(got, _np_disp(name, pts / h, h), rtol=2e-3, atol=2e-3)
    # random orientation and phase: same formula at the rotated, shifted coordinates
    rot = random_rotation(rng=rng)
    phase = rng.uniform(-np.pi, np.pi, 3)
    spec = {"name": name, "rotation": rot.tolist(), "phase": phase.tolist()}
    got = displacement_field(spec, torch.tensor(pts, dtype=torch.float32), h).numpy()
    np.testing.assert_allclose(got, _np_disp(name, (pts / h) @ rot.T + phase, h), rtol=5e-3, atol=5e-3)


def test_fdif_rotations_uniform():
    rng = np.random.default_rng(0)
    rs = np.stack([random_rotation(rng=rng) for _ in range(3000)])
    assert np.allclose(np.einsum("nij,nkj->nik", rs, rs), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rs), 1.0)
    # for the Haar measure every entry has mean 0 and variance 1/3
    assert np.abs(rs.mean(0)).max() < 0.05
    assert np.abs(rs.var(0) - 1 / 3).max() < 0.04


def _sphere_obj(center, radius, mapper="linear_slope_10.0"):
    return {"primitive": {"class": "sphere", "radius": radius},
            "pose": {"translation_mm": list(center), "rotation": np.eye(3).tolist(), "shear": [0, 0, 0]},
            "displacement": None, "mapper": mapper}


def test_fdif_composition_smaller_object_wins_and_labels_inside_only():
    grid = Grid((32, 32, 32))
    big = _sphere_obj((0, 0, 0), 10.0)
    small = _sphere_obj((4, 0, 0), 4.0)
    for objs, labs in (([big, small], [1, 2]), ([small, big], [2, 1])):
        image, label, vols = render_objects(objs, labs, grid, quantize=False)
        assert label[16 + 4, 16, 16] == 2 and label[16 - 5, 16, 16] == 1
        assert vols[labs.index(2)] < vols[labs.index(1)]
    coords = torch.stack(torch.meshgrid(*[grid.axis_mm(a, 0, 32) for a in range(3)], indexing="ij"), -1).reshape(-1, 3)
    d_big = object_sdf(big, coords, grid).view(32, 32, 32)
    d_small = object_sdf(small, coords, grid).view(32, 32, 32)
    inside_any = (d_big < 0) | (d_small < 0)
    assert torch.equal(label > 0, inside_any)
    expected = (apply_mapper("linear_slope_10.0", d_big) + apply_mapper("linear_slope_10.0", d_small)).clamp(0, 128)
    assert torch.allclose(image, expected, atol=1e-3)


def test_fdif_object_with_shear_is_lipschitz():
    rng = np.random.default_rng(5)
    grid = Grid((48, 48, 48))
    for name in ("pentagon_convex_prism", "star6_torus", "onioned_star7_cone_prism", "cone"):
        obj = {"primitive": sample_primitive(name, 48.0, rng=rng),
               "pose": sample_pose(grid.extent_mm, rng=rng, shear=0.1), "displacement": None,
               "mapper": "inverse_cube"}
        a = torch.tensor(rng.uniform(-24, 24, (3000, 3)), dtype=torch.float32)
        step = torch.tensor(rng.normal(size=(3000, 3)), dtype=torch.float32)
        step = step / step.norm(dim=1, keepdim=True) * 1.5
        r = (object_sdf(obj, a, grid) - object_sdf(obj, a + step, grid)).abs() / 1.5
        assert float(r.max()) <= 1.0 + 2e-3


@pytest.mark.parametrize("mappers", ["all", [m for m in MAPPER_NAMES if m != "inverse_cube"]])
def test_fdif_block_culling_matches_dense_reference(mappers):
    from anatomix.config import FdifSynthConfig
    from anatomix.sdf.generator import FdifGenerator

    gen = FdifGenerator(FdifSynthConfig(shape=(40, 40, 40), n_objects=(8, 8), mappers=mappers), seed=11)
    grid = gen.config.grid
    for index in range(3):
        rec = gen.sample_record(index)
        labs = [o["label"] for o in rec["objects"]]
        img_b, lab_b, vol_b = render_objects(rec["objects"], labs, grid, quantize=False)
        img_d, lab_d, vol_d = render_objects(rec["objects"], labs, grid, quantize=False, method="dense")
        assert torch.equal(lab_b, lab_d) and vol_b == vol_d
        # both add the truncated mapper values: equal up to float rounding
        assert float((img_b - img_d).abs().max()) < 1e-4


@pytest.mark.parametrize("name", MAPPER_NAMES)
def test_fdif_truncated_mapper_is_within_its_stated_bound(name):
    from anatomix.sdf.mappers import apply_mapper_truncated

    d = torch.linspace(-60.0, 20.0, 80001)
    err = (apply_mapper_truncated(name, d) - apply_mapper(name, d)).abs().max()
    assert float(err) < (0.25 if name == "inverse_cube" else 1e-3)


def test_add_mapped_objects_is_the_weighted_sum_of_the_culled_renders():
    # appearance's distractors: amplitude-weighted mapped values, added in place with the block renderer
    from anatomix.config import FdifSynthConfig
    from anatomix.sdf import add_mapped_objects
    from anatomix.sdf.generator import FdifGenerator

    gen = FdifGenerator(FdifSynthConfig(shape=(40, 40, 40), n_objects=(4, 4)), seed=5)
    grid = gen.config.grid
    objs = gen.sample_record(0)["objects"]
    weights = [0.5, -1.25, 2.0, 0.75]
    acc = torch.full(grid.shape, 3.0)
    add_mapped_objects(objs, weights, grid, acc)
    ref = torch.full(grid.shape, 3.0)
    for obj, w in zip(objs, weights):
        img, _, _ = render_objects([obj], [1], grid, clip=(-1e9, 1e9), quantize=False)
        ref += w * img
    assert float((acc - ref).abs().max()) < 1e-4
    assert float((acc - 3.0).abs().max()) > 1.0  # the objects are there
