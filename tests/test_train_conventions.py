"""Training-data conventions: left-right flips swap lateral labels; multi-channel datalists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from anatomix.train.data import (RealDataModule, _RandLeftRightFlipd, lateral_swap_table, load_datalist,
                                 nnunet_datalist)

CLASSES = ["spleen", "kidney_right", "kidney_left", "liver", "adrenal_gland_right", "adrenal_gland_left"]


def test_lateral_swap_table_swaps_every_pair() -> None:
    table = lateral_swap_table({i + 1: n for i, n in enumerate(CLASSES)})
    assert table.tolist() == [0, 1, 3, 2, 4, 6, 5]


def test_flip_moves_the_left_kidney_and_names_it_right() -> None:
    from monai.data import MetaTensor

    label = torch.zeros(1, 8, 4, 4, dtype=torch.int64)
    label[0, :2] = 3          # kidney_left at low x
    label[0, 6:] = 1          # spleen at high x
    image = label.float() * 10
    swap = lateral_swap_table({i + 1: n for i, n in enumerate(CLASSES)})
    flip = _RandLeftRightFlipd(keys=["image", "label"], prob=1.0, swap=swap)
    out = flip({"image": MetaTensor(image), "label": MetaTensor(label)})
    lab = torch.as_tensor(out["label"])
    assert (lab[0, 6:] == 2).all()    # the mirrored left kidney is the right kidney now
    assert (lab[0, :2] == 1).all()    # spleen is not lateral: moved, same label
    assert torch.equal(torch.as_tensor(out["image"])[0], image[0].flip(0))  # image mirrored, not relabelled
    never = _RandLeftRightFlipd(keys=["image", "label"], prob=0.0, swap=swap)
    assert torch.equal(torch.as_tensor(never({"image": image, "label": label})["label"]), label)


def test_flip_is_seeded_like_monai() -> None:
    a = _RandLeftRightFlipd(keys=["label"], prob=0.5, swap=None).set_random_state(3)
    b = _RandLeftRightFlipd(keys=["label"], prob=0.5, swap=None).set_random_state(3)
    draws = []
    for t in (a, b):
        draws.append([t.R.rand() < 0.5 for _ in range(20)])
    assert draws[0] == draws[1] and 0 < sum(draws[0]) < 20


def test_train_transforms_use_the_lateral_flip() -> None:
    import monai.transforms as T

    dm = RealDataModule(classes=CLASSES, source_labels="totalsegmentator", patch_size=(16, 16, 16))
    tf = dm.transforms("train").transforms
    flips = [t for t in tf if isinstance(t, _RandLeftRightFlipd)]
    assert len(flips) == 1 and flips[0].swap.tolist() == [0, 1, 3, 2, 4, 6, 5]
    assert not [t for t in tf if isinstance(t, T.RandFlipd) and 0 in np.atleast_1d(t.flipper.spatial_axis)]


def _write(path: Path, array: np.ndarray) -> None:
    img = sitk.GetImageFromArray(array.transpose(2, 1, 0))
    img.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(img, str(path))


def test_multichannel_datalist_loads_every_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ct = rng.uniform(-100, 100, (20, 20, 20)).astype(np.float32)
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[5:12, 5:12, 5:12] = 1
    _write(tmp_path / "ct.nii.gz", ct)
    _write(tmp_path / "pet.nii.gz", ct * 2 + 50)
    _write(tmp_path / "lab.nii.gz", lab)
    dl = {"training": [{"image": ["ct.nii.gz", "pet.nii.gz"], "label": "lab.nii.gz"}]}
    (tmp_path / "dl.json").write_text(json.dumps(dl))
    rows = load_datalist(tmp_path / "dl.json")["training"]
    assert rows[0]["image"] == [str(tmp_path / "ct.nii.gz"), str(tmp_path / "pet.nii.gz")]
    dm = RealDataModule(datalist=str(tmp_path / "dl.json"), num_classes=2, spacing_mm=None, ct_window=None,
                        cache=False, patch_size=(16, 16, 16))
    dm.setup("validate")
    item = dm.val_ds[0]
    assert item["image"].shape[0] == 2
    assert int(item["label"].max()) == 1


def test_nnunet_dataset_with_two_channels(tmp_path: Path) -> None:
    root = tmp_path / "Dataset001"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "PET"},
                                                   "labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}))
    for f in ("imagesTr/c1_0000.nii.gz", "imagesTr/c1_0001.nii.gz", "labelsTr/c1.nii.gz"):
        _write(root / f, np.zeros((4, 4, 4), np.uint8))
    lists, names = nnunet_datalist(root)
    assert lists["training"][0]["image"] == [str(root / "imagesTr/c1_0000.nii.gz"), str(root / "imagesTr/c1_0001.nii.gz")]
    assert names == {0: "background", 1: "liver"}


def test_real_labels_follow_the_image_grid_through_the_package_resampler(tmp_path: Path) -> None:
    from anatomix.train.data import _LabelToImageGridd

    ct = np.random.default_rng(0).uniform(1, 2, (30, 30, 30)).astype(np.float32)
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[5:25, 14, 5:25] = 1  # a 2 mm plate at 2 mm spacing, resampled to 3 mm
    _write(tmp_path / "ct.nii.gz", ct)
    _write(tmp_path / "lab.nii.gz", lab)
    (tmp_path / "dl.json").write_text(json.dumps({"training": [{"image": "ct.nii.gz", "label": "lab.nii.gz"}]}))
    dm = RealDataModule(datalist=str(tmp_path / "dl.json"), num_classes=2, spacing_mm=(3.0, 3.0, 3.0),
                        ct_window=None, cache=False, patch_size=(16, 16, 16))
    assert any(isinstance(t, _LabelToImageGridd) for t in dm.transforms("val").transforms)
    dm.setup("validate")
    item = dm.val_ds[0]
    assert item["label"].shape == item["image"].shape
    assert int((item["label"] == 1).sum()) > 0  # the plate survives the coarser grid
