"""Ignored label voxels (``context: {labels: ignore}``): the loss skips them, the LUT keeps them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("monai")

from monai.losses import DiceCELoss  # noqa: E402

from anatomix.errors import AnatomixError  # noqa: E402
from anatomix.train.data import SynthDataModule, build_label_lut  # noqa: E402
from anatomix.train.module import IgnoreDiceCELoss, SegmentationModule  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CNN = dict(network="segresnet", img_size=(16, 16, 16), feature_size=8, out_channels=3)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 3, 4, 4, 8, generator=g)
    label = torch.randint(0, 3, (1, 1, 4, 4, 8), generator=g)
    label[..., 4:] = 255  # the right half is ignored
    return logits, label


def test_ignored_voxels_get_exactly_zero_gradient_and_loss_equals_cropped_loss() -> None:
    logits, label = _batch()
    logits.requires_grad_(True)
    loss = IgnoreDiceCELoss(255)(logits, label)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(logits.grad[..., 4:] == 0)
    assert torch.any(logits.grad[..., :4] != 0)
    cropped = DiceCELoss(to_onehot_y=True, softmax=True)(logits.detach()[..., :4], label[..., :4])
    assert loss.item() == pytest.approx(float(cropped), rel=1e-5)


def test_without_ignore_index_the_loss_is_monai_dicece() -> None:
    logits, label = _batch()
    label[label == 255] = 1
    m = SegmentationModule(**CNN)
    assert isinstance(m.loss_fn, DiceCELoss)
    assert float(m.loss_fn(logits, label)) == float(DiceCELoss(to_onehot_y=True, softmax=True)(logits, label))


def test_label_lut_keeps_the_ignore_value() -> None:
    lut = build_label_lut({1: "liver", 2: "spleen", 3: "stomach"}, ["spleen", "liver"], ignore_value=255)
    assert len(lut) == 256 and lut[255] == 255
    assert list(lut[[0, 1, 2, 3]]) == [0, 2, 1, 0]
    assert len(build_label_lut({1: "liver"}, ["liver"])) == 2  # unchanged without an ignore value


class _DM:
    num_classes = 3

    def __init__(self, ignore_index):
        self.ignore_index = ignore_index


def test_module_adopts_data_ignore_index_and_refuses_a_different_one() -> None:
    m = SegmentationModule(**CNN)
    m._adopt_ignore_index(_DM(255).ignore_index)
    assert m.ignore_index == 255 and isinstance(m.loss_fn, IgnoreDiceCELoss)
    m2 = SegmentationModule(**CNN, ignore_index=200)
    with pytest.raises(AnatomixError, match="ignore_index is 200.*255"):
        m2._adopt_ignore_index(255)
    m2._adopt_ignore_index(None)
    assert m2.ignore_index == 200


def test_fit_step_on_stream_with_ignored_context_is_finite() -> None:
    dm = SynthDataModule(synth_config="synth", classes=["liver", "spleen"], patch_size=(16, 16, 16),
                         batch_size=1, num_workers=0, val_samples=0,
                         overrides={"graph": str(REPO / "graphs" / "abdomen.yaml"),
                                    "context": {"labels": "ignore"}, "grid": {"shape": [32, 32, 32]}})
    assert dm.ignore_index == 255
    assert dm.lut()[255] == 255
    batch = dm.stream().item(0)
    assert set(np.unique(batch["label"].numpy())) <= {0, 1, 2, 255}
    m = SegmentationModule(**CNN)
    m._adopt_ignore_index(dm.ignore_index)
    b = {"image": batch["image"][None], "label": batch["label"][None]}
    loss = m.loss_fn(m(b["image"]), b["label"])
    loss.backward()
    assert torch.isfinite(loss)


def test_written_ignore_label_is_nnunet_s_and_read_back_as_ignored(tmp_path: Path) -> None:
    """`anatomix synth` writes the ignore label as N + 1, declared `ignore` in dataset.json (nnU-Net
    v2: the highest value); replay writes the same bytes, and the data modules skip it again."""
    import json

    import SimpleITK as sitk

    from anatomix.api import synth_config
    from anatomix.replay import replay_to_folder
    from anatomix.synth import build_generator, write_dataset

    cfg = synth_config(graph="abdomen")
    cfg = cfg.model_copy(update={"context": cfg.context.model_copy(update={"labels": "ignore"}),
                                 "grid": cfg.grid.model_copy(update={"shape": (40, 40, 40),
                                                                     "spacing_mm": (4.0, 4.0, 4.0)})})
    gen = build_generator(cfg, seed=0)
    out = tmp_path / "synth"
    write_dataset(gen, out, n=1, seed=0, workers=1, progress=False)
    labels = json.loads((out / "dataset.json").read_text())["labels"]
    ignore = labels["ignore"]
    assert ignore == max(labels.values()) == len(labels) - 1  # after background and N classes

    def read(path: Path) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)

    written = read(out / "labelsTr" / "anatomix_000000.nii.gz")
    source = gen.sample(0).label
    assert (source == 255).any() and np.array_equal(written == ignore, source == 255)
    again = replay_to_folder(out / "records" / "anatomix_000000.json", tmp_path / "replay")
    assert read(again[1]).tobytes() == written.tobytes()

    with_classes = SynthDataModule(files=str(out), classes=["liver", "spleen"], patch_size=(40, 40, 40),
                                   batch_size=1, num_workers=0)
    with_classes.setup("fit")
    assert with_classes.ignore_index == 255
    lut = with_classes._files_dm.lut()
    assert lut[ignore] == 255 and lut[labels["liver"]] == 1 and lut[labels["spleen"]] == 2
    plain = SynthDataModule(files=str(out), patch_size=(40, 40, 40), batch_size=1, num_workers=0)
    assert plain.ignore_index == ignore and plain.num_classes == ignore  # classes 0..N, ignore not one
    # evaluate and ingest read such a folder too (the ignore label is no organ they score or keep)
    from anatomix.bank import ingest_masks
    from anatomix.evaluate import load_synthetic_set

    summaries, _ = load_synthetic_set(out)
    assert "liver" in summaries[0].volumes_ml
    bank = ingest_masks([out / "labelsTr"], tmp_path / "bank", labels=out / "dataset.json", spacing_mm=4.0)
    assert "ignore" not in {r.organ for r in bank.shapes}


def test_an_ignore_value_that_a_class_uses_is_refused() -> None:
    from anatomix.api import synth_config
    from anatomix.errors import ConfigError
    from anatomix.output_labels import output_label_lut
    from anatomix.synth import build_generator

    cfg = synth_config(graph="abdomen")
    cfg = cfg.model_copy(update={"context": cfg.context.model_copy(update={"labels": "ignore", "ignore_value": 6})})
    with pytest.raises(ConfigError, match=r"context.ignore_value: .*found 6 \(the value of 'liver'\)"):
        output_label_lut(build_generator(cfg, seed=0))
