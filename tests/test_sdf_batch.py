"""The batched FDIF renderer (anatomix.sdf.batch): agreement with the per-volume renderer over
every class, displacement and mapper, independence from the batch, and the generator's batch API.

Stated tolerances against :func:`anatomix.sdf.compose.render_objects` (the batched renderer
applies the pose as multiply-adds, not a matrix product, and sums mapped values per mapper, not
per object, so float rounding differs):

- labels: identical but on at most ``LABEL_FLIP_FRACTION`` of a volume's voxels (a sign on a surface);
- volumes (inside voxels per object): within ``max(2, v // 1000)``;
- images: within ``IMAGE_TOL`` but on at most ``IMAGE_CHANGED_FRACTION`` of the voxels (after
  FDIF's truncation to integers, a value on an integer step, or on a stepped mapper's step,
  goes either way). Without truncation (``quantize=False``) the float32 noise of the SDF (up to
  3e-5 mm) shows through steep mappers (``sinusoidal_wavelength_1.0``: about 400 intensity units
  per mm), so there the bound is ``IMAGE_TOL_FLOAT``.

Within the batched renderer a case is the same bytes whatever the batch and its chunking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anatomix.config import load_synth_config
from anatomix.grid import Grid
from anatomix.sdf import CLASS_NAMES, DISPLACEMENT_NAMES, MAPPER_NAMES, render_objects, sample_pose, sample_primitive
from anatomix.sdf.batch import render_batch
from anatomix.sdf.displacements import sample_displacement
from anatomix.sdf.generator import FdifGenerator

REPO = Path(__file__).resolve().parents[1]
LABEL_FLIP_FRACTION = 1e-4
IMAGE_CHANGED_FRACTION = 1e-3
IMAGE_TOL = 1e-3
IMAGE_TOL_FLOAT = 0.05
GRID = Grid((36, 32, 28), (1.5, 1.5, 2.0))


def _every_kind(n_cases: int = 8, seed: int = 0) -> tuple[list[list[dict]], list[list[int]]]:
    """Every class once, displacements and mappers cycled over them (each of them several times),
    dealt out over ``n_cases`` volumes."""
    rng = np.random.default_rng(seed)
    extent = min(GRID.extent_mm)
    cases: list[list[dict]] = [[] for _ in range(n_cases)]
    labels: list[list[int]] = [[] for _ in range(n_cases)]
    disps = (None,) + DISPLACEMENT_NAMES
    for k, name in enumerate(CLASS_NAMES):
        disp = disps[k % len(disps)]
        obj = {"primitive": sample_primitive(name, extent, rng=rng),
               "pose": sample_pose(GRID.extent_mm, rng=rng, translation_fraction=0.3),
               "displacement": sample_displacement(disp, rng=rng) if disp else None,
               "mapper": MAPPER_NAMES[k % len(MAPPER_NAMES)]}
        cases[k % n_cases].append(obj)
        labels[k % n_cases].append(1 + k)
    return cases, labels


def _render_each(cases, labels):
    with torch.inference_mode():
        return [render_objects(c, lab, GRID) for c, lab in zip(cases, labels)]


def _assert_agrees(image, label, volumes, ref, tol: float = IMAGE_TOL) -> None:
    ref_image, ref_label, ref_volumes = ref
    assert (label != ref_label).double().mean().item() <= LABEL_FLIP_FRACTION
    assert ((image - ref_image).abs() > tol).double().mean().item() <= IMAGE_CHANGED_FRACTION
    assert len(volumes) == len(ref_volumes)
    assert all(abs(a - b) <= max(2, b // 1000) for a, b in zip(volumes, ref_volumes)), (volumes, ref_volumes)


def test_batch_agrees_with_the_per_volume_renderer_for_every_class_displacement_and_mapper():
    cases, labels = _every_kind()
    with torch.inference_mode():
        images, label_maps, volumes = render_batch(cases, labels, GRID)
    assert images.shape == (len(cases),) + GRID.shape and images.dtype == torch.float32
    assert label_maps.dtype == torch.uint8
    painted = set()
    for b, ref in enumerate(_render_each(cases, labels)):
        _assert_agrees(images[b], label_maps[b], volumes[b], ref)
        painted |= set(np.unique(label_maps[b].numpy()).tolist())
    assert len(painted) > 80  # most classes are inside the grid and visible


def test_a_case_is_the_same_bytes_whatever_its_batch_and_chunks():
    cases, labels = _every_kind(n_cases=6, seed=1)
    with torch.inference_mode():
        together = render_batch(cases, labels, GRID)
        # reversed order, small steps (objects split over many chunks), and in parts
        backwards = render_batch(cases[::-1], labels[::-1], GRID, chunk_points=4096, max_points=50_000)
        for b in (0, 3, 5):
            alone = render_batch(cases[b:b + 1], labels[b:b + 1], GRID, chunk_points=1 << 12)
            for other, k in ((alone, 0), (backwards, len(cases) - 1 - b)):
                assert other[0][k].numpy().tobytes() == together[0][b].numpy().tobytes()
                assert other[1][k].numpy().tobytes() == together[1][b].numpy().tobytes()
                assert other[2][k] == together[2][b]


def test_empty_cases_objects_outside_the_grid_and_bad_labels():
    cases, labels = _every_kind(n_cases=4, seed=2)
    outside = dict(cases[0][0], pose={**cases[0][0]["pose"], "translation_mm": [500.0, 0.0, 0.0]})
    cases = [[], cases[1] + [outside], []]
    labels = [[], labels[1] + [200], []]
    with torch.inference_mode():
        images, label_maps, volumes = render_batch(cases, labels, GRID, clip=(0.0, 100.0), quantize=False)
        ref = _render_each(cases[1:2], labels[1:2])[0]
    assert volumes[0] == [] and volumes[2] == [] and volumes[1][-1] == 0
    assert not images[0].any() and not label_maps[2].any()
    assert float(images.max()) <= 100.0 and not torch.equal(images, images.floor())  # not quantised
    _assert_agrees(images[1], label_maps[1], volumes[1],
                   render_objects(cases[1], labels[1], GRID, clip=(0.0, 100.0), quantize=False), IMAGE_TOL_FLOAT)
    assert ref[0].dtype == torch.float32
    with pytest.raises(ValueError, match="one value per object"):
        render_batch(cases, [[], [1], []], GRID)
    with torch.inference_mode():
        images, label_maps, volumes = render_batch([], [], GRID)
        assert images.shape == (0,) + GRID.shape and volumes == []
        # nothing inside the grid at all: empty volumes, and a part of its own (max_points 1)
        for batch in ([[], []], [[outside]], [[outside], cases[1]]):
            images, label_maps, volumes = render_batch(batch, [[7] * len(c) for c in batch], GRID, max_points=1)
            assert volumes[0] == [0] * len(batch[0]) and not images[0].any() and not label_maps[0].any()


def test_generator_sample_batch_draws_the_same_records_and_agrees_with_sample():
    cfg = load_synth_config(REPO / "configs" / "fdif.yaml")
    cfg = type(cfg).model_validate({**cfg.model_dump(), "shape": [40, 40, 40]})
    gen = FdifGenerator(cfg, seed=3)
    batch = gen.sample_batch([5, 0, 9])
    for s, index in zip(batch, (5, 0, 9)):
        one = gen.sample(index)
        assert {k: v for k, v in s.record.items() if k != "volumes_vox"} == gen.sample_record(index)
        assert s.image.shape == one.image.shape and s.image.dtype == one.image.dtype
        assert s.label.dtype == one.label.dtype == np.uint8 and s.spacing_mm == one.spacing_mm
        _assert_agrees(torch.from_numpy(s.image), torch.from_numpy(s.label), s.record["volumes_vox"],
                       (torch.from_numpy(one.image), torch.from_numpy(one.label), one.record["volumes_vox"]))
    assert gen.sample_batch([9])[0].image.tobytes() == batch[2].image.tobytes()
