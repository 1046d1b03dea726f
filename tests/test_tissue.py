"""Tissue model: HU per tissue class, bone shell/core, partial volume, correlated noise, determinism."""

from __future__ import annotations

import numpy as np

from anatomix.tissue import (correlated_noise, hu_range, partial_volume, render_tissue, sample_tissue,
                             tissue_class)

NAMES = {1: "subcutaneous_fat", 2: "iliopsoas_left", 3: "vertebrae_L3", 4: "lung_lower_lobe_left",
         5: "urinary_bladder", 6: "aorta", 7: "liver"}


def _phantom() -> np.ndarray:
    gen = np.zeros((70, 20, 20), dtype=np.uint8)
    for k in range(1, 8):
        gen[(k - 1) * 10:k * 10, 2:18, 2:18] = k
    return gen


def test_tissue_classes():
    assert [tissue_class(NAMES[k]) for k in range(1, 8)] == ["fat", "muscle", "bone", "lung", "fluid",
                                                            "vessel_artery", "parenchyma"]
    assert tissue_class("rib_right_11") == "bone" and tissue_class("colon") == "bowel"


def test_hu_ranges_per_tissue_class():
    gen = _phantom()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        params = sample_tissue(list(NAMES.values()), "portal", rng, jitter_hu=5.0)
        hu = render_tissue(gen, NAMES, params, (1.0, 1.0, 1.0), seed=seed)
        assert hu.dtype == np.float32
        assert np.all(hu[gen == 0] == -1000.0)  # air outside the body
        for k, n in NAMES.items():
            med = float(np.median(hu[gen == k]))
            lo, hi = hu_range(tissue_class(n), "portal", n_std=4.0)
            assert lo - 50 <= med <= hi + 50, (n, med, lo, hi)
        fat, muscle = np.median(hu[gen == 1]), np.median(hu[gen == 2])
        lung, fluid = np.median(hu[gen == 4]), np.median(hu[gen == 5])
        assert lung < -600 < fat < -40 < fluid < muscle
        assert np.median(hu[gen == 6]) > 100  # enhanced aorta in the portal phase


def test_bone_cortical_shell_brighter_than_cancellous_core():
    gen = np.zeros((30, 30, 30), dtype=np.uint8)
    gen[5:25, 5:25, 5:25] = 3
    params = sample_tissue(["vertebrae_L3"], "native", np.random.default_rng(0))
    hu = render_tissue(gen, {3: "vertebrae_L3"}, params, (1.0, 1.0, 1.0), seed=1)
    shell = hu[5, 10:20, 10:20]
    core = hu[12:18, 12:18, 12:18]
    assert shell.mean() > 600 and 50 < core.mean() < 450


def test_partial_volume_monotone_across_a_boundary():
    hu = np.full((40, 6, 6), -100.0, dtype=np.float32)
    hu[20:] = 60.0
    out = partial_volume(hu, (1.0, 1.0, 1.0), 1.5)
    profile = out[:, 3, 3]
    assert np.all(np.diff(profile) >= -1e-4)  # never overshoots or oscillates
    assert profile.min() >= -100.0 - 1e-3 and profile.max() <= 60.0 + 1e-3
    assert -100 < profile[19] < 60 and -100 < profile[20] < 60  # mixed voxels at the boundary


def test_correlated_noise_std_and_correlation():
    white = correlated_noise((48, 48, 48), (1.0, 1.0, 1.0), 10.0, 0.0, seed=3)
    corr = correlated_noise((48, 48, 48), (1.0, 1.0, 1.0), 10.0, 2.0, seed=3)
    for n in (white, corr):
        assert abs(float(n.std()) - 10.0) < 0.5

    def lag1(a: np.ndarray) -> float:
        return float(np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1])

    assert abs(lag1(white)) < 0.05 and lag1(corr) > 0.7


def test_render_tissue_is_deterministic_bytes():
    gen = _phantom()
    p1 = sample_tissue(list(NAMES.values()), "arterial", np.random.default_rng(5))
    p2 = sample_tissue(list(NAMES.values()), "arterial", np.random.default_rng(5))
    assert p1 == p2
    a = render_tissue(gen, NAMES, p1, (1.5, 1.5, 2.0), seed=9)
    b = render_tissue(gen, NAMES, p2, (1.5, 1.5, 2.0), seed=9)
    assert a.tobytes() == b.tobytes()
