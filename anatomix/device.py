"""The torch device generation runs on: one checked place, so a requested GPU never silently becomes the CPU.

``resolve_device("cuda")`` returns ``torch.device("cuda", current index)`` when CUDA works and
raises :class:`anatomix.errors.AnatomixError` (what was asked, what was found, what to do)
when it does not; ``None`` and ``"cpu"`` are the CPU.
"""

from __future__ import annotations

import torch

from anatomix.errors import AnatomixError

__all__ = ["resolve_device", "to_device"]


def resolve_device(device: torch.device | str | None) -> torch.device:
    """The torch device named by ``device`` (``None``: CPU), checked to be usable here.

    Raises:
        AnatomixError: an unknown device name, or a CUDA device on a machine without CUDA (or
            with fewer GPUs than the index asks for).
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise AnatomixError(f"device {device!r}: not a torch device name; use 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise AnatomixError(f"device {device!r}: CUDA is not available on this machine (torch "
                                f"{torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu")
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= count:
            raise AnatomixError(f"device {device!r}: this machine has {count} CUDA device(s) "
                                f"(cuda:0..cuda:{count - 1}); choose one of them")
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise AnatomixError(f"device {device!r}: generation runs on 'cpu' or 'cuda', found {dev.type!r}")
    return dev


def to_device(data, dtype: torch.dtype | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``torch.tensor(data, dtype=dtype, device=device)`` without the host sync of a plain copy
    to a GPU (which waits for every queued kernel): through pinned memory, asynchronously. On
    the CPU it is ``torch.tensor``."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return torch.tensor(data, dtype=dtype, device=dev)
    return torch.tensor(data, dtype=dtype, device="cpu").pin_memory().to(dev, non_blocking=True)
