"""SegmentationModule: a MONAI segmenter (UNETR, SwinUNETR, SegResNet, DynUNet, BasicUNet) as a LightningModule.

Batches are dicts with ``image`` (B, C, X, Y, Z) float in [0, 1] and ``label`` (B, 1, X, Y, Z)
integer class indices (0 = background), as both data modules produce them.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Literal, Sequence

import lightning.pytorch as pl
import torch
from torch import nn

from anatomix.errors import AnatomixError

__all__ = ["ENCODER_PARTS", "NETWORKS", "IgnoreDiceCELoss", "SegmentationModule", "build_network", "warmup_cosine"]

if TYPE_CHECKING:
    from anatomix.train.checkpoint import LoadReport

log = logging.getLogger(__name__)

NetworkName = Literal["unetr", "swinunetr", "segresnet", "dynunet", "basicunet"]
NETWORKS: tuple[str, ...] = ("unetr", "swinunetr", "segresnet", "dynunet", "basicunet")

#: network -> child modules that make its encoder (frozen by ``freeze_encoder``, scaled by
#: ``encoder_lr_scale``); the output heads are listed in anatomix.train.checkpoint.HEAD_PREFIXES.
ENCODER_PARTS: dict[str, tuple[str, ...]] = {
    "unetr": ("vit",),
    "swinunetr": ("swinViT",),
    "segresnet": ("convInit", "down_layers"),
    "dynunet": ("input_block", "downsamples", "bottleneck"),
    "basicunet": ("conv_0", "down_1", "down_2", "down_3", "down_4"),
}


def build_network(
    network: NetworkName,
    in_channels: int,
    out_channels: int,
    img_size: Sequence[int],
    *,
    feature_size: int = 48,
    depths: Sequence[int] = (2, 2, 2, 2),
    swin_heads: Sequence[int] = (3, 6, 12, 24),
    use_v2: bool = False,
    use_checkpoint: bool = False,
    vit_hidden_size: int = 768,
    vit_mlp_dim: int = 3072,
    vit_heads: int = 12,
    dropout: float = 0.0,
) -> nn.Module:
    """Build a MONAI segmentation network.

    Args:
        network: ``"unetr"`` (ViT encoder, 16^3 patches), ``"swinunetr"``, or MONAI's CNNs
            ``"segresnet"``, ``"dynunet"``, ``"basicunet"`` (the ones that train usefully on a CPU).
        in_channels / out_channels: image channels; classes including background.
        img_size: training patch (x, y, z) voxels; UNETR needs multiples of 16, SwinUNETR of 32.
        feature_size: convolutional width (SwinUNETR: multiple of 12; SegResNet: of 8; the CNNs'
            first level, doubling per level).
        depths / swin_heads / use_v2 / use_checkpoint: SwinUNETR stages, heads, v2 residual
            convolutions, gradient checkpointing.
        vit_hidden_size / vit_mlp_dim / vit_heads: UNETR's transformer.
        dropout: dropout rate.

    Raises:
        AnatomixError: sizes the network cannot take.
    """
    from monai.networks.nets import UNETR, SwinUNETR

    size = tuple(int(s) for s in img_size)
    if len(size) != 3:
        raise AnatomixError(f"img_size must have 3 values (x, y, z), found {list(img_size)}")
    if network == "unetr":
        if any(s % 16 for s in size):
            raise AnatomixError(f"UNETR needs img_size divisible by 16, found {list(size)}")
        if vit_hidden_size % vit_heads:
            raise AnatomixError(
                f"vit_hidden_size ({vit_hidden_size}) must be divisible by vit_heads ({vit_heads})")
        net = UNETR(
            in_channels=in_channels, out_channels=out_channels, img_size=size,
            feature_size=feature_size, hidden_size=vit_hidden_size, mlp_dim=vit_mlp_dim,
            num_heads=vit_heads, proj_type="conv", norm_name="instance", res_block=True,
            dropout_rate=dropout,
        )
        # MONAI's TransformerBlock always builds a cross-attention LayerNorm that UNETR never
        # uses; without a gradient it makes DDP fail ("parameters that were not used"). Frozen,
        # DDP skips it; it stays in the state dict, so checkpoints are unchanged.
        for name, param in net.named_parameters():
            if ".norm_cross_attn." in name:
                param.requires_grad_(False)
        return net
    if network == "swinunetr":
        if any(s % 32 for s in size):
            raise AnatomixError(f"SwinUNETR needs img_size divisible by 32, found {list(size)}")
        if feature_size % 12:
            raise AnatomixError(f"SwinUNETR needs feature_size divisible by 12, found {feature_size}")
        if len(depths) != len(swin_heads):
            raise AnatomixError(f"depths {list(depths)} and swin_heads {list(swin_heads)} differ in length")
        return SwinUNETR(
            in_channels=in_channels, out_channels=out_channels, depths=tuple(depths),
            num_heads=tuple(swin_heads), feature_size=feature_size, drop_rate=dropout,
            use_checkpoint=use_checkpoint, use_v2=use_v2, spatial_dims=3,
        )
    if network in ("segresnet", "dynunet", "basicunet"):
        return _build_cnn(network, in_channels, out_channels, size, feature_size, dropout)
    raise AnatomixError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")


def _build_cnn(network: str, in_channels: int, out_channels: int, size: tuple[int, ...], feature_size: int,
               dropout: float) -> nn.Module:
    """MONAI's 3D CNNs: SegResNet (4 levels), DynUNet (4 levels, residual blocks), BasicUNet (5 levels)."""
    from monai.networks.nets import BasicUNet, DynUNet, SegResNet

    f = int(feature_size)
    if f < 1:
        raise AnatomixError(f"feature_size must be >= 1, found {f}")
    need = {"segresnet": 8, "dynunet": 8, "basicunet": 16}[network]
    if any(s % need for s in size):
        raise AnatomixError(f"{network} needs img_size divisible by {need}, found {list(size)}")
    if network == "segresnet":
        if f % 8:
            raise AnatomixError(f"segresnet needs feature_size divisible by 8 (group norm), found {f}")
        return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, init_filters=f,
                         blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), dropout_prob=dropout or None)
    if network == "dynunet":
        return DynUNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                       kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2],
                       filters=[f, 2 * f, 4 * f, 8 * f], res_block=True, dropout=dropout or None,
                       norm_name="instance")
    return BasicUNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                     features=(f, f, 2 * f, 4 * f, 8 * f, f), dropout=dropout)


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up from 0 to 1 over ``warmup_steps``, then cosine to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


class SegmentationModule(pl.LightningModule):
    """3D segmentation with MONAI UNETR / SwinUNETR, DiceCE loss, per-class Dice.

    Args:
        network: ``"swinunetr"``, ``"unetr"``, ``"segresnet"``, ``"dynunet"`` or ``"basicunet"``.
        in_channels: image channels.
        out_channels: classes including background (0).
        img_size: training patch (x, y, z); also the sliding-window size for validation/prediction.
        feature_size, depths, swin_heads, use_v2, use_checkpoint: SwinUNETR settings
            (``use_checkpoint`` = gradient checkpointing).
        vit_hidden_size, vit_mlp_dim, vit_heads: UNETR settings.
        dropout: dropout rate.
        class_names: names of classes 1..out_channels-1, for per-class Dice logs.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        max_steps: steps of the cosine schedule (use the trainer's max_steps; -1 = 10000).
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        pretrained: checkpoint to initialise from (fine-tuning); a different class count replaces
            the output head.
        freeze_encoder: keep the encoder fixed (:data:`ENCODER_PARTS`).
        encoder_lr_scale: learning-rate factor for the encoder (e.g. 0.1).
        sw_batch_size: windows per forward pass in sliding-window inference.
        sw_overlap: sliding-window overlap.
        init_seed: seed of the weight initialisation (global torch state is left untouched).
        ignore_index: label value the loss and the validation Dice skip (e.g. 255, written by a
            synthesis config ``context: {labels: ignore}``): cross-entropy with ``ignore_index`` plus
            MONAI's ``DiceLoss(ignore_index=...)`` (ignored voxels masked out of both sums, zero
            gradient there); in validation they count as background in prediction and label.
            None (default): plain DiceCE; adopts the data module's ``ignore_index`` when it has one.
    """

    def __init__(
        self,
        network: NetworkName = "swinunetr",
        in_channels: int = 1,
        out_channels: int = 14,
        img_size: tuple[int, int, int] = (96, 96, 96),
        feature_size: int = 48,
        depths: tuple[int, ...] = (2, 2, 2, 2),
        swin_heads: tuple[int, ...] = (3, 6, 12, 24),
        use_v2: bool = False,
        use_checkpoint: bool = False,
        vit_hidden_size: int = 768,
        vit_mlp_dim: int = 3072,
        vit_heads: int = 12,
        dropout: float = 0.0,
        class_names: list[str] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        warmup_steps: int = 100,
        max_steps: int = -1,
        min_lr_ratio: float = 0.0,
        pretrained: str | None = None,
        freeze_encoder: bool = False,
        encoder_lr_scale: float = 1.0,
        sw_batch_size: int = 2,
        sw_overlap: float = 0.5,
        init_seed: int = 0,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if class_names is not None and len(class_names) != out_channels - 1:
            raise AnatomixError(
                f"class_names has {len(class_names)} names but out_channels={out_channels} needs "
                f"{out_channels - 1} (background is class 0)")
        self.class_names = list(class_names) if class_names else [f"class_{i}" for i in range(1, out_channels)]
        # Typed copies of the settings used after construction (``self.hparams`` is an untyped
        # mapping; it stays the record Lightning writes into checkpoints and re-feeds to __init__).
        self.network_name: str = str(network)
        self.out_channels = int(out_channels)
        self.img_size: tuple[int, ...] = tuple(int(s) for s in img_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.warmup_steps = int(warmup_steps)
        self.max_steps = -1 if max_steps is None else int(max_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.pretrained = pretrained
        self.freeze_encoder = bool(freeze_encoder)
        self.encoder_lr_scale = float(encoder_lr_scale)
        self.sw_batch_size = int(sw_batch_size)
        self.sw_overlap = float(sw_overlap)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation; global state restored after
            torch.manual_seed(int(init_seed))
            self.net = build_network(
                network, in_channels, out_channels, img_size, feature_size=feature_size, depths=depths,
                swin_heads=swin_heads, use_v2=use_v2, use_checkpoint=use_checkpoint,
                vit_hidden_size=vit_hidden_size, vit_mlp_dim=vit_mlp_dim, vit_heads=vit_heads,
                dropout=dropout)
        if pretrained:  # a file that does not fit is refused now, before Lightning writes a run folder
            from anatomix.train.checkpoint import check_pretrained

            check_pretrained(self.net, pretrained)
        from monai.losses import DiceCELoss
        from monai.metrics import DiceMetric

        self.ignore_index: int | None = None if ignore_index is None else int(ignore_index)
        self.loss_fn: nn.Module = (DiceCELoss(to_onehot_y=True, softmax=True) if self.ignore_index is None
                                   else IgnoreDiceCELoss(self.ignore_index))
        self.dice = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
        self.load_report: LoadReport | None = None
        self._pretrained_done = False

    # ---- network parts -------------------------------------------------------------------------
    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder (:data:`ENCODER_PARTS`: SwinUNETR ``swinViT``, UNETR ``vit``,
        the CNNs' input block and down-sampling path)."""
        params: list[nn.Parameter] = []
        for part in ENCODER_PARTS.get(self.network_name, ()):
            module = getattr(self.net, part, None)
            if module is not None:
                params.extend(module.parameters())
        return params

    def load_pretrained(self, path: str) -> LoadReport:
        """Load matching weights from ``path`` into the network; returns a LoadReport."""
        from anatomix.train.checkpoint import load_pretrained

        report = load_pretrained(self.net, path)
        self.load_report = report
        from lightning.pytorch.utilities import rank_zero_info

        log.info(report.summary())
        rank_zero_info(report.summary())
        return report

    def setup(self, stage: str) -> None:
        if stage == "fit":  # before the optimiser is built; validate/test/predict: see below
            self._load_pretrained_once()
        if self.freeze_encoder:
            for p in self.encoder_parameters():
                p.requires_grad_(False)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        n = getattr(dm, "num_classes", None)
        if n is not None and int(n) != int(self.out_channels):
            raise AnatomixError(
                f"the data has {n} classes (background included) but model.out_channels is "
                f"{self.out_channels}; set model.out_channels: {n}")
        self._adopt_ignore_index(getattr(dm, "ignore_index", None))

    def _adopt_ignore_index(self, data_ignore: int | None) -> None:
        """Take the data module's ignore value when the model has none; refuse two different ones."""
        if data_ignore is None:
            return
        if self.ignore_index is None:
            self.ignore_index = int(data_ignore)
            self.loss_fn = IgnoreDiceCELoss(self.ignore_index)
            log.info("model.ignore_index = %d, from the data module (its synthesis config writes it on "
                     "context structures); the loss and validation Dice skip those voxels", self.ignore_index)
        elif int(data_ignore) != self.ignore_index:
            raise AnatomixError(
                f"model.ignore_index is {self.ignore_index} but the data module's labels use "
                f"{int(data_ignore)} as the ignore value (synthesis config context.ignore_value); "
                f"set model.ignore_index: {int(data_ignore)} or leave it unset")

    def _load_pretrained_once(self) -> None:
        """Load ``pretrained`` once, unless the trainer restores a ``--ckpt_path`` (every weight)."""
        if not self.pretrained or self._pretrained_done:
            return
        ckpt_path = getattr(self._trainer, "ckpt_path", None) if self._trainer is not None else None
        if ckpt_path and self.trainer.state.fn != "fit":
            log.info("model.pretrained %s not loaded: the weights come from --ckpt_path %s",
                     self.pretrained, ckpt_path)
        else:
            self.load_pretrained(self.pretrained)
        self._pretrained_done = True

    # validate/test/predict know their --ckpt_path only after setup(): load there (zero-shot runs).
    def on_validation_start(self) -> None:
        self._load_pretrained_once()

    def on_test_start(self) -> None:
        self._load_pretrained_once()

    def on_predict_start(self) -> None:
        self._load_pretrained_once()

    # ---- steps ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        image, label = _plain_tensor(batch["image"]), _plain_tensor(batch["label"])
        logits = self(image)
        loss = self.loss_fn(logits, label)
        self.log("train/loss", loss, prog_bar=True, batch_size=image.shape[0], sync_dist=False)
        return loss

    def infer(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for whole volumes by sliding-window inference (windows of ``img_size``)."""
        from monai.inferers import sliding_window_inference

        logits = sliding_window_inference(
            image, roi_size=self.img_size, sw_batch_size=self.sw_batch_size,
            predictor=self.net, overlap=self.sw_overlap, mode="gaussian")
        if not isinstance(logits, torch.Tensor):  # only for predictors that return tuples/dicts
            raise AnatomixError(f"{self.network_name} returned {type(logits).__name__}, expected one logits tensor")
        return logits

    def _eval_step(self, batch: dict, prefix: str) -> torch.Tensor:
        from monai.networks.utils import one_hot

        image, label = _plain_tensor(batch["image"]), _plain_tensor(batch["label"])
        logits = self.infer(image)
        loss = self.loss_fn(logits, label)
        pred = logits.argmax(dim=1, keepdim=True)
        n = self.out_channels
        if self.ignore_index is not None:  # ignored voxels: background in both, so Dice skips them
            ignored = label == self.ignore_index
            label = torch.where(ignored, torch.zeros_like(label), label)
            pred = torch.where(ignored, torch.zeros_like(pred), pred)
        self.dice(y_pred=one_hot(pred, n), y=one_hot(label.long(), n))
        self.log(f"{prefix}/loss", loss, batch_size=image.shape[0], sync_dist=True)
        return loss

    def _eval_end(self, prefix: str) -> None:
        per_class = self.dice.aggregate()
        self.dice.reset()
        per_class = torch.as_tensor(per_class, dtype=torch.float32, device=self.device).flatten()
        for name, value in zip(self.class_names, per_class):
            if not torch.isnan(value):
                self.log(f"{prefix}/dice_{name}", value, sync_dist=True)
        valid = per_class[~torch.isnan(per_class)]
        self.log(f"{prefix}/dice", valid.mean() if valid.numel() else torch.tensor(0.0, device=self.device),
                 prog_bar=True, sync_dist=True)

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Returns ``{"pred": (B, 1, X, Y, Z) uint8 labels, "image": the input (meta kept)}``."""
        logits = self.infer(_plain_tensor(batch["image"]))
        return {"pred": logits.argmax(dim=1, keepdim=True).to(torch.uint8), "image": batch["image"]}

    # ---- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        enc_ids = {id(p) for p in self.encoder_parameters()}
        enc = [p for p in self.net.parameters() if id(p) in enc_ids and p.requires_grad]
        rest = [p for p in self.net.parameters() if id(p) not in enc_ids and p.requires_grad]
        groups = [{"params": rest, "lr": self.lr}]
        if enc:
            groups.append({"params": enc, "lr": self.lr * self.encoder_lr_scale})
        opt = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        max_steps = self.max_steps
        if max_steps <= 0:
            tmax = getattr(self.trainer, "max_steps", -1) if self._trainer is not None else -1
            max_steps = tmax if tmax and tmax > 0 else 10000
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.warmup_steps, max_steps, self.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Plain containers only, so that the file loads with torch.load(weights_only=True).
        hp = checkpoint.get("hyper_parameters")
        if hp is not None:
            checkpoint["hyper_parameters"] = _plain(dict(hp))


class IgnoreDiceCELoss(nn.Module):
    """DiceCE that skips voxels labelled ``ignore_index``: cross-entropy with ``ignore_index``
    (mean over the other voxels) + MONAI ``DiceLoss(ignore_index=...)``, which masks the ignored
    voxels out of prediction and target. Ignored voxels get exactly zero gradient. Same weights and
    smoothing as MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)``."""

    def __init__(self, ignore_index: int) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.ignore_index = int(ignore_index)
        self.dice = DiceLoss(to_onehot_y=True, softmax=True, ignore_index=self.ignore_index)
        self.ce = nn.CrossEntropyLoss(ignore_index=self.ignore_index)

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        target = label[:, 0].long() if label.shape[1] == 1 else label.long()
        ce = self.ce(logits, target)
        if not bool((target != self.ignore_index).any()):  # all ignored: CE is NaN; no signal
            ce = logits.sum() * 0.0
        return self.dice(logits, label) + ce


def _plain_tensor(x: torch.Tensor) -> torch.Tensor:
    """A MONAI MetaTensor as a plain tensor (faster, and logs stay plain)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)
