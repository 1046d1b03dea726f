"""The label values a run writes: its producible classes numbered 1..N (nnU-Net v2 needs
consecutive values), then the ignore label, N + 1 (nnU-Net v2's convention), for
``context: {labels: ignore}``. ``anatomix synth``'s files and dataset.json, replay and the
Python API all take them from here."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["IGNORE_NAME", "ignore_value", "output_label_lut", "produced_labels", "labels_table",
           "source_values", "written_label_names"]

#: dataset.json's name of the ignore label (nnU-Net v2's convention)
IGNORE_NAME = "ignore"


def produced_labels(generator: Any) -> dict[int, str]:
    """Generator label value -> name, for the classes this run can produce (sorted by value).

    Graph organs without a bank shape (``generator.missing_organs``) can never appear.
    """
    missing = set(getattr(generator, "missing_organs", None) or ())
    return {int(v): str(n) for v, n in sorted(generator.label_names().items())
            if int(v) != 0 and str(n) not in missing}


def ignore_value(generator: Any) -> int | None:
    """The generator's ignore label (``context: {labels: ignore}``: ``context.ignore_value`` on
    context structures), or None."""
    ctx = getattr(getattr(generator, "config", None), "context", None)
    if ctx is None or not getattr(ctx, "enabled", False) or getattr(ctx, "labels", None) != "ignore":
        return None
    return int(ctx.ignore_value)


def output_label_lut(generator: Any) -> np.ndarray | None:
    """Look-up table generator value -> written value; None: identity.

    Classes are written consecutive 1..N (nnU-Net v2), and the ignore label as N + 1, declared
    ``ignore`` in dataset.json: nnU-Net v2's ignore label must be the highest value.
    """
    produced = produced_labels(generator)
    ignore = ignore_value(generator)
    if ignore is not None and (ignore in produced or len(produced) + 1 > 255):
        from anatomix.errors import ConfigError

        why = f"the value of {produced[ignore]!r}" if ignore in produced else f"{len(produced)} classes"
        raise ConfigError(f"context.ignore_value: expected a value no class uses, with at most 254 classes; "
                          f"found {ignore} ({why}); choose another context.ignore_value (default 255)")
    if list(produced) == list(range(1, len(produced) + 1)) and ignore in (None, len(produced) + 1):
        return None
    lut = np.zeros(256, dtype=np.uint8)
    for new, old in enumerate(produced, start=1):
        lut[old] = new
    if ignore is not None:
        lut[ignore] = len(produced) + 1
    return lut


def written_label_names(generator: Any) -> dict[int, str]:
    """Written label value -> name: the classes the run can produce, consecutive from 1, then
    ``ignore`` where the run writes one (the values of the label files, dataset.json's ``labels``)."""
    names = {new: name for new, name in enumerate(produced_labels(generator).values(), start=1)}
    if ignore_value(generator) is not None:
        names[len(names) + 1] = IGNORE_NAME
    return names


def source_values(generator: Any) -> dict[str, int]:
    """The generator's value of each written class, the ignore label last (dataset.json's
    ``anatomix_source_values``; a record's ``label_file_values`` maps them through the LUT)."""
    values = {name: v for v, name in produced_labels(generator).items()}
    ignore = ignore_value(generator)
    if ignore is not None:
        values[IGNORE_NAME] = ignore
    return values


def labels_table(generator: Any) -> dict[str, int]:
    """dataset.json ``labels``: background 0, then only the classes the run can produce, consecutive
    (the label files are written through :func:`output_label_lut`)."""
    table: dict[str, int] = {"background": 0}
    table.update({name: new for new, name in written_label_names(generator).items()})
    return table
