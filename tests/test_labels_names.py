"""Names users type or tools write (3D Slicer, SNOMED-style) map onto the vocabulary; the
``--organs`` value an error suggests is one that works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from anatomix.errors import InputError
from anatomix.labels import (UnknownOrganError, canonical_organ, closest_organs, lateral_pairs,
                             organs_option)


@pytest.mark.parametrize("name, organ", [
    ("right lung", "lung_right"), ("Left Kidney", "kidney_left"), ("Kidney (left)", "kidney_left"),
    ("lung, right", "lung_right"), ("left adrenal gland", "adrenal_gland_left"),
    ("Right adrenal", "adrenal_gland_right"), ("l kidney", "kidney_left"),
    ("right femoral head", "femur_head_right"), ("Inferior vena cava", "inferior_vena_cava"),
    ("Urinary bladder", "urinary_bladder"), ("vertebrae_L1", "vertebrae_L1"), ("rib_left_1", "rib_left_1"),
])
def test_slicer_style_names(name: str, organ: str) -> None:
    assert canonical_organ(name) == organ


def test_unknown_names_still_fail_with_suggestions() -> None:
    with pytest.raises(UnknownOrganError):
        canonical_organ("left right kidney")  # two sides: not guessed
    assert closest_organs("right lungs")[0] == "lung_right"


def test_organs_option_round_trips() -> None:
    opt = organs_option(["spleen", "Left Kidney", "weird thing"])
    assert opt == "--organs kidney_left,spleen"
    assert [canonical_organ(o) for o in opt.split(" ", 1)[1].split(",")] == ["kidney_left", "spleen"]


def test_lateral_pairs() -> None:
    names = ["spleen", "kidney_left", "kidney_right", "adrenal_gland_left", "adrenal_gland_right", "lung_left"]
    assert lateral_pairs(names) == [("adrenal_gland_left", "adrenal_gland_right"), ("kidney_left", "kidney_right")]


def test_ingest_error_suggests_an_organs_value_that_works(tmp_path: Path) -> None:
    from anatomix.bank import ingest_masks

    a = np.zeros((40, 40, 40), np.uint8)
    a[5:15, 5:15, 5:15] = 1
    a[20:30, 20:30, 20:30] = 2
    a[25:32, 5:12, 5:12] = 3
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((2.0, 2.0, 2.0))
    for i, (name, value) in enumerate([("right lung", 1), ("Liver", 2), ("weird thing", 3)]):
        img.SetMetaData(f"Segment{i}_Name", name)
        img.SetMetaData(f"Segment{i}_LabelValue", str(value))
        img.SetMetaData(f"Segment{i}_Layer", "0")
    seg = tmp_path / "s.seg.nrrd"
    sitk.WriteImage(img, str(seg), True)
    with pytest.raises(InputError) as e:
        ingest_masks([seg], tmp_path / "b1")
    msg = str(e.value)
    assert "'weird thing'" in msg and "--organs liver,lung_right" in msg
    suggested = msg.split("--organs ")[1].split()[0].split(",")
    manifest = ingest_masks([seg], tmp_path / "b2", organs=suggested)
    assert sorted({r.organ for r in manifest.shapes}) == ["liver", "lung_right"]
