"""MONAI CNNs (SegResNet, DynUNet, BasicUNet): build, head swap, encoder freezing, a tiny config that learns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anatomix.train.module import ENCODER_PARTS, NETWORKS, SegmentationModule, build_network

ROOT = Path(__file__).resolve().parents[1]
CNNS = ("segresnet", "dynunet", "basicunet")


def test_network_choices() -> None:
    assert set(CNNS) <= set(NETWORKS) and set(NETWORKS) == set(ENCODER_PARTS)


@pytest.mark.parametrize("network", CNNS)
def test_cnn_forward_shape(network: str) -> None:
    net = build_network(network, 2, 4, (32, 32, 32), feature_size=8)
    with torch.no_grad():
        assert tuple(net(torch.zeros(1, 2, 32, 32, 32)).shape) == (1, 4, 32, 32, 32)


@pytest.mark.parametrize("network", CNNS)
def test_head_swap_and_encoder_freeze(network: str, tmp_path: Path) -> None:
    pre = SegmentationModule(network=network, out_channels=6, img_size=(32, 32, 32), feature_size=8, init_seed=1)
    ckpt = tmp_path / "pre.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in pre.net.state_dict().items()}}, ckpt)
    ft = SegmentationModule(network=network, out_channels=3, img_size=(32, 32, 32), feature_size=8, init_seed=2,
                            pretrained=str(ckpt), freeze_encoder=True)
    report = ft.load_pretrained(str(ckpt))
    assert report.new and all(not any(n.startswith(p) for p in ENCODER_PARTS[network]) for n in report.new)
    enc_pre = dict(pre.net.named_parameters())
    for name, param in ft.net.named_parameters():
        if name.split(".")[0] in ENCODER_PARTS[network]:
            assert torch.equal(param, enc_pre[name]), name  # the encoder came from the checkpoint
    ft.setup("validate")
    enc = {id(p) for p in ft.encoder_parameters()}
    assert enc and all(not p.requires_grad for p in ft.encoder_parameters())
    assert any(p.requires_grad for p in ft.net.parameters() if id(p) not in enc)


def test_cnn_size_checks() -> None:
    from anatomix.errors import AnatomixError

    with pytest.raises(AnatomixError, match="divisible by 16"):
        build_network("basicunet", 1, 2, (40, 40, 40), feature_size=8)
    with pytest.raises(AnatomixError, match="divisible by 8"):
        build_network("segresnet", 1, 2, (32, 32, 32), feature_size=12)


@pytest.mark.slow
def test_tiny_cnn_config_learns_on_cpu() -> None:
    import yaml

    from anatomix.resources import resolve, resolve_lightning_config
    from anatomix.train.data import SynthDataModule

    cfg = resolve_lightning_config(resolve("config", "tiny_cnn"))
    assert yaml.safe_load(resolve("config", "tiny_cnn").read_text())["model"]["network"] == "segresnet"
    model = SegmentationModule(**cfg["model"])
    dm = SynthDataModule(**{**cfg["data"]["init_args"], "num_workers": 0})
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    image, label = torch.as_tensor(batch["image"]), torch.as_tensor(batch["label"])
    assert image.shape[1:] == (1, 32, 32, 32) and int(label.max()) > 0
    # one sample, its central 16^3 (keeps the test short on a shared CPU); the config's network
    image, label = image[:1, :, 8:24, 8:24, 8:24], label[:1, :, 8:24, 8:24, 8:24]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = model.loss_fn(model(image), label)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-3:]) < 0.8 * losses[0], losses
