"""Loading pre-trained weights safely for fine-tuning.

Checkpoints are read with ``torch.load(..., weights_only=True)``: nothing in the file is
executed. Both Lightning checkpoints (``state_dict`` with ``net.`` prefixed keys) and plain
network state dicts are accepted. Tensors whose shape differs only in the output head (a
different number of classes) are left at their new initialisation; any other mismatch is an
error, because it means the checkpoint was made for another network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from anatomix.errors import AnatomixError

__all__ = ["CheckpointError", "LoadReport", "check_lightning_checkpoint", "load_pretrained",
           "read_state_dict", "HEAD_PREFIXES"]

#: Parameter-name prefixes of the output head in MONAI UNETR / SwinUNETR.
HEAD_PREFIXES: tuple[str, ...] = ("out.",  # UNETR, SwinUNETR
                                   "conv_final.",  # SegResNet
                                   "output_block.", "deep_supervision_heads.",  # DynUNet
                                   "final_conv.")  # BasicUNet


class CheckpointError(AnatomixError):
    """A checkpoint is unreadable, unsafe, or made for a different network."""


@dataclass
class LoadReport:
    """Which weights came from the checkpoint and which are new.

    Attributes:
        path: the checkpoint file.
        loaded: parameter names copied from the checkpoint.
        new: parameter names of the network left at their initialisation (e.g. a new head).
        ignored: checkpoint tensors the network has no place for.
    """

    path: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for logs: counts, and the names of new and ignored tensors."""
        lines = [
            f"pre-trained weights from {self.path}: {len(self.loaded)} tensors loaded, "
            f"{len(self.new)} new, {len(self.ignored)} ignored"
        ]
        if self.new:
            lines.append("  new (initialised here): " + ", ".join(self.new))
        if self.ignored:
            lines.append("  ignored (in checkpoint only): " + ", ".join(self.ignored[:20])
                         + (" ..." if len(self.ignored) > 20 else ""))
        return "\n".join(lines)


def _load_safely(p: Path) -> object:
    """``torch.load(p, weights_only=True)`` with every failure as a CheckpointError."""
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {p} {what}; pass the .ckpt written by `anatomix fit`")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"cannot read checkpoint {p}: it is corrupt, truncated, or holds objects that are not "
            f"plain tensors (read with weights_only=True). Underlying error: {first[:300]}"
        ) from None


def check_lightning_checkpoint(path: str | Path) -> None:
    """Check a ``--ckpt_path`` file before Lightning resumes from it (same checks as
    ``--model.pretrained``, plus what a resume needs).

    Raises:
        CheckpointError: missing, corrupt, truncated, unsafe (needs pickled objects), or not a
            full Lightning checkpoint (e.g. a plain state dict: use ``--model.pretrained``).
    """
    p = Path(path)
    obj = _load_safely(p)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"--ckpt_path {p}: expected a Lightning checkpoint (a mapping), "
                              f"found a {type(obj).__name__}")
    missing = [k for k in ("pytorch-lightning_version", "state_dict") if k not in obj]
    if missing or not isinstance(obj.get("state_dict"), Mapping):
        kind = ("a plain state dict" if obj and all(isinstance(v, torch.Tensor) for v in obj.values())
                else f"a mapping without {', '.join(missing) or 'a state_dict mapping'}")
        raise CheckpointError(
            f"--ckpt_path {p}: expected a full Lightning checkpoint (written by `anatomix fit`, "
            f"with state_dict, optimizer and loop state), found {kind}; to start from these "
            "weights without resuming, pass it as --model.pretrained instead")
    if not any(isinstance(v, torch.Tensor) for v in obj["state_dict"].values()):
        raise CheckpointError(f"--ckpt_path {p}: expected network weights in its state_dict, "
                              "found no tensors")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the network weights from a checkpoint, safely.

    Args:
        path: a Lightning ``.ckpt`` (its ``state_dict``, keys prefixed ``net.``) or a file holding
            a plain state dict (``torch.save(net.state_dict(), path)``).

    Returns:
        Parameter name (without the ``net.`` prefix) -> tensor.

    Raises:
        CheckpointError: missing, corrupt, unsafe (needs arbitrary pickled objects) or holding no
            tensors.
    """
    p = Path(path)
    obj = _load_safely(p)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {p} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"checkpoint {p} holds no tensors")
    if any(k.startswith("net.") for k in tensors):
        tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    return tensors


def load_pretrained(net: nn.Module, path: str | Path, *, allow_head_mismatch: bool = True) -> LoadReport:
    """Copy matching weights from a checkpoint into ``net``.

    Args:
        net: the network to initialise (MONAI UNETR or SwinUNETR).
        path: checkpoint file (see :func:`read_state_dict`).
        allow_head_mismatch: keep the new head when its shape differs (different class count).

    Returns:
        A :class:`LoadReport`.

    Raises:
        CheckpointError: unreadable file, or no tensor fits, or tensors outside the output head
            differ in shape (a checkpoint of another architecture or size).
    """
    to_load, report = _match_pretrained(net, read_state_dict(path), path, allow_head_mismatch)
    net.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    return report


def check_pretrained(net: nn.Module, path: str | Path, *, allow_head_mismatch: bool = True) -> None:
    """Raise the :class:`CheckpointError` :func:`load_pretrained` would raise, loading nothing
    (run before Lightning writes anything, so a refused file leaves no run folder behind)."""
    _match_pretrained(net, read_state_dict(path), path, allow_head_mismatch)


def _match_pretrained(net: nn.Module, source: dict[str, torch.Tensor], path: str | Path,
                      allow_head_mismatch: bool) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """The checkpoint tensors that fit ``net`` by name and shape, and the report; raises when the
    checkpoint does not fit (see :func:`load_pretrained`)."""
    target = net.state_dict()
    report = LoadReport(path=str(path))
    mismatched: list[str] = []
    to_load: dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        if name not in source:
            report.new.append(name)
            continue
        src = source[name]
        if tuple(src.shape) != tuple(tensor.shape):
            if allow_head_mismatch and name.startswith(HEAD_PREFIXES):
                report.new.append(name)
            else:
                mismatched.append(f"{name}: checkpoint {tuple(src.shape)}, network {tuple(tensor.shape)}")
            continue
        to_load[name] = src
    report.ignored = sorted(set(source) - set(target))
    named = [n for n in target if n in source]
    if not named:
        raise CheckpointError(
            f"checkpoint {path} has no tensor this network can use ({len(source)} tensors, none with a "
            "matching name); it was made for another network type (unetr vs swinunetr?)"
        )
    if len(named) < len(target) // 2:
        raise CheckpointError(
            f"checkpoint {path} names only {len(named)} of {len(target)} tensors of this network; "
            "it was made for another network type or depth"
        )
    if mismatched:
        shown = "\n  ".join(mismatched[:10]) + ("\n  ..." if len(mismatched) > 10 else "")
        raise CheckpointError(
            f"checkpoint {path} does not fit this network ({len(mismatched)} tensors differ in shape "
            f"outside the output head):\n  {shown}\nUse the same network settings (network, "
            "feature_size, depths, heads, img_size) as the pre-training run."
        )
    return to_load, report
