"""The device path: CPU tests that the device is threaded through (no tensor made elsewhere, no
silent fallback), and CPU-vs-CUDA agreement tests that skip cleanly without a GPU.

Stated CPU-vs-CUDA tolerances (the CUDA tests check them; float32 ``grid_sample``, ``sin`` and
trilinear upsampling round differently on another device, so bytes are not promised):

- organ SDFs (structure-aware mode): within ``SDF_TOL_MM`` of the CPU's on every voxel;
- labels: identical, except at voxels whose CPU SDF is within ``SDF_TOL_MM`` of an organ surface
  (a sign decided by rounding), at most ``LABEL_FLIP_FRACTION`` of a volume;
- structure-aware images (window, [0, 1]): within ``IMAGE_TOL`` wherever the labels are identical
  (a flipped voxel changes the per-organ noise draw count, so such a case's image is not compared);
- FDIF images (integers after clipping): at most 1 apart, on at most ``FDIF_CHANGED_FRACTION``
  of the voxels (a value on an integer boundary truncates either way).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anatomix.config import AnatomySynthConfig, load_synth_config
from anatomix.device import resolve_device
from anatomix.errors import AnatomixError
from anatomix.grid import Grid
from anatomix.placement import sample_scene
from anatomix.render import render_scene, scene_grid
from anatomix.scene import Scene
from anatomix.sdf.compose import render_objects
from anatomix.sdf.generator import FdifGenerator

REPO = Path(__file__).resolve().parents[1]

SDF_TOL_MM = 1e-3
LABEL_FLIP_FRACTION = 1e-5
IMAGE_TOL = 1e-3
FDIF_CHANGED_FRACTION = 1e-3

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def _fdif_config(shape: int = 96):
    cfg = load_synth_config(REPO / "configs" / "fdif.yaml")
    return type(cfg).model_validate({**cfg.model_dump(), "shape": [shape] * 3})


def _anatomy_config() -> AnatomySynthConfig:
    cfg = load_synth_config(REPO / "configs" / "synth.yaml")
    return AnatomySynthConfig.model_validate({**cfg.model_dump(), "graph": str(REPO / "graphs" / "abdomen.yaml")})


def _scene_and_grid(record: dict) -> tuple[Scene, Grid]:
    g = record["grid"]
    return Scene.model_validate(record["scene"]), Grid(tuple(g["shape"]), tuple(g["spacing_mm"]), tuple(g["origin_mm"]))


def _same_rendering(a, b) -> None:
    assert a.label.tobytes() == b.label.tobytes()
    assert a.labels == b.labels and list(a.sdfs) == list(b.sdfs)
    for organ, (sl, sdf) in a.sdfs.items():
        sl2, sdf2 = b.sdfs[organ]
        assert sl == sl2 and sdf.dtype == sdf2.dtype == np.float32 and sdf.tobytes() == sdf2.tobytes(), organ


# ---------------------------------------------------------------------------------------------
# CPU
# ---------------------------------------------------------------------------------------------


def test_render_scene_cpu_device_equals_default(anatomy_graph, anatomy_bank):
    scene = sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(3))
    grid = scene_grid(scene, (2.0, 2.0, 2.0))
    ref = render_scene(scene, anatomy_bank, grid)
    assert ref.label.any()
    _same_rendering(ref, render_scene(scene, anatomy_bank, grid, device="cpu", cache={}))
    _same_rendering(ref, render_scene(scene, anatomy_bank, grid, device=torch.device("cpu")))


def test_every_tensor_is_made_on_the_requested_device(anatomy_graph, anatomy_bank):
    """With torch's default device set to ``meta``, any tensor made without an explicit device
    (which would stay on the CPU on a GPU run) lands on ``meta`` and the run fails; it does not."""
    with torch.device("meta"):
        assert torch.zeros(1).device.type == "meta"  # the check is live
    scene = sample_scene(anatomy_graph, anatomy_bank, np.random.default_rng(4))
    grid = scene_grid(scene, (2.0, 2.0, 2.0))
    ref = render_scene(scene, anatomy_bank, grid)
    with torch.device("meta"):
        out = render_scene(scene, anatomy_bank, grid, device="cpu", cache={})
    _same_rendering(ref, out)

    gen = FdifGenerator(_fdif_config(40), seed=0, device="cpu")
    record = gen.sample_record(1)
    a = gen.render_record(record)
    with torch.device("meta"):
        b = gen.render_record(record)
    assert a.label.any() and a.label.tobytes() == b.label.tobytes() and a.image.tobytes() == b.image.tobytes()
    batched = gen.render_records([record])[0]
    with torch.device("meta"):
        c = gen.render_records([record])[0]
    assert batched.label.any() and c.label.tobytes() == batched.label.tobytes()
    assert c.image.tobytes() == batched.image.tobytes()


def test_device_names_are_checked():
    assert resolve_device(None) == torch.device("cpu") == resolve_device("cpu")
    for bad in ("gpu0", "mps"):
        with pytest.raises(AnatomixError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(AnatomixError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(AnatomixError, match="CUDA is not available"):
            FdifGenerator(_fdif_config(40), seed=0, device="cuda")
        with pytest.raises(AnatomixError, match="CUDA is not available"):
            render_objects([], [], _fdif_config(40).grid, device="cuda")
    else:
        with pytest.raises(AnatomixError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.filterwarnings("ignore:the embedded shape bank has no shape")
def test_cuda_organ_sdfs_and_labels_match_cpu():
    from anatomix.synth import build_generator

    cpu = build_generator(_anatomy_config(), seed=0, device="cpu")
    gpu = build_generator(_anatomy_config(), seed=0, device="cuda")
    identical = 0
    for index in range(4):
        record = cpu.sample_record(index)
        assert gpu.sample_record(index) == record  # drawing is on the CPU: the same record
        scene, grid = _scene_and_grid(record)
        a = render_scene(scene, cpu.bank, grid)
        cache: dict = {}
        b = render_scene(scene, cpu.bank, grid, device="cuda", cache=cache)
        assert any(isinstance(k, tuple) and k[1].startswith("cuda") for k in cache)  # crops cached on the GPU
        assert list(a.sdfs) == list(b.sdfs)
        near = np.full(grid.shape, np.inf, dtype=np.float32)
        for organ, (sl, sdf) in a.sdfs.items():
            assert b.sdfs[organ][0] == sl
            np.testing.assert_allclose(b.sdfs[organ][1], sdf, rtol=0, atol=SDF_TOL_MM, err_msg=organ)
            near[sl] = np.minimum(near[sl], np.abs(sdf))
        flips = a.label != b.label
        assert np.all(near[flips] < SDF_TOL_MM), "labels differ away from a surface"
        assert flips.mean() <= LABEL_FLIP_FRACTION
        sa, sb = cpu.sample(index), gpu.sample(index)
        if np.array_equal(sa.label, sb.label):
            identical += 1
            np.testing.assert_allclose(sb.image, sa.image, rtol=0, atol=IMAGE_TOL)
    assert identical >= 1  # the image tolerance was checked on at least one case


@needs_cuda
def test_cuda_fdif_matches_cpu_and_stays_on_the_gpu():
    cfg = _fdif_config(96)
    cpu = FdifGenerator(cfg, seed=0, device="cpu")
    gpu = FdifGenerator(cfg, seed=0, device="cuda")
    record = cpu.sample_record(0)
    image, label, _ = render_objects(record["objects"], [o["label"] for o in record["objects"]], cfg.grid,
                                     device="cuda")
    assert image.device.type == "cuda" and label.device.type == "cuda"  # no silent fallback
    for index in range(4):
        a, b = cpu.sample(index), gpu.sample(index)
        assert (a.label != b.label).mean() <= LABEL_FLIP_FRACTION
        diff = np.abs(a.image - b.image)
        assert diff.max() <= 1.0 and (diff > 0).mean() <= FDIF_CHANGED_FRACTION
        assert all(abs(x - y) <= max(2, x // 1000) for x, y in
                   zip(a.record["volumes_vox"], b.record["volumes_vox"]))


@needs_cuda
def test_cuda_batched_fdif_matches_cpu():
    cfg = _fdif_config(96)
    cpu = FdifGenerator(cfg, seed=0, device="cpu")
    gpu = FdifGenerator(cfg, seed=0, device="cuda")
    for a, b in zip(cpu.sample_batch(range(4)), gpu.sample_batch(range(4))):
        assert (a.label != b.label).mean() <= LABEL_FLIP_FRACTION
        assert (a.image != b.image).mean() <= FDIF_CHANGED_FRACTION
        assert all(abs(x - y) <= max(2, x // 1000) for x, y in zip(a.record["volumes_vox"], b.record["volumes_vox"]))
    # a case's SDFs, labels and volumes do not depend on its batch; its image sums (atomic adds) may,
    # in the last bit, which truncation to integers can turn into one step
    alone = gpu.sample_batch([2])[0]
    together = gpu.sample_batch(range(4))[2]
    assert alone.label.tobytes() == together.label.tobytes()
    assert alone.record["volumes_vox"] == together.record["volumes_vox"]
    assert (alone.image != together.image).mean() <= FDIF_CHANGED_FRACTION
    with torch.device("meta"):  # every tensor of the batched renderer is made on the device asked for
        again = gpu.sample_batch([2])[0]
    assert again.label.tobytes() == alone.label.tobytes()
