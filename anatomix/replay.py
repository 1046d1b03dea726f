"""Replaying a case from its record: ``records/<case>.json`` -> the same image and label, byte for byte.

A record holds every drawn parameter of its case (the scene, field of view, appearance, lesions
or FDIF objects) and pins the inputs (:class:`anatomix.record.Pins`). Rendering needs nothing
else but, for anatomy cases, the shape bank the run used: it is found from ``--bank``, else the
record's ``config.bank`` (else the embedded bank), and refused unless its content hash is the
pinned one.

Typical use::

    sample = replay_record("synth/records/anatomix_000003.json")
    paths = replay_to_folder("synth/records/anatomix_000003.json", "replayed/")
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from anatomix import __version__
from anatomix.anatomy import render_anatomy_record
from anatomix.bank import ShapeBank
from anatomix.config import FdifSynthConfig
from anatomix.errors import AnatomixError
from anatomix.io import write_volume
from anatomix.record import Pins
from anatomix.sample import Sample, image_to_write
from anatomix.sdf.generator import FdifGenerator

__all__ = ["ReplayError", "load_record", "replay_record", "replay_to_folder"]


class ReplayError(AnatomixError):
    """A record cannot be replayed (unreadable, not a case record, or its bank is not the pinned one)."""


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a case record JSON file (checked to be one)."""
    p = Path(path)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReplayError(f"{p}: cannot read the record ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ReplayError(f"{p}: expected a case record (JSON); found invalid JSON at line {exc.lineno}") from None
    if not isinstance(record, dict) or record.get("mode") not in ("anatomy", "fdif"):
        raise ReplayError(f"{p}: expected a case record with `mode: anatomy` or `mode: fdif`; found "
                          f"{type(record).__name__ if not isinstance(record, dict) else record.get('mode')!r}")
    if "pins" not in record or "config" not in record:
        raise ReplayError(f"{p}: the record has no `pins`/`config` (written by an anatomix older than 0.2); "
                          "regenerate the case with `anatomix synth`")
    return record


def _bank_for(record: dict[str, Any], bank: ShapeBank | str | os.PathLike[str] | None, source: str) -> ShapeBank:
    if isinstance(bank, ShapeBank):
        found = bank
    else:
        from anatomix.resources import resolve

        path = bank if bank is not None else record["config"].get("bank")
        # `default` (the embedded bank) or another shipped name, as every other --bank takes
        found = ShapeBank.load(resolve("bank", path)) if path else ShapeBank.default()
    pinned = record["pins"].get("bank_sha256")
    have = found.manifest.content_hash  # verified when the bank was loaded
    if pinned and have != pinned:
        raise ReplayError(f"{source}: the record pins shape bank {pinned[:12]}, but the bank at {found.root} "
                          f"is {have[:12]}; pass --bank with the bank the run used")
    return found


def replay_record(record: dict[str, Any] | str | os.PathLike[str], *,
                  bank: ShapeBank | str | os.PathLike[str] | None = None, device: str = "cpu") -> Sample:
    """Rebuild a case from its record (a dict or a ``records/<case>.json`` path).

    Args:
        record: the case record.
        bank: for anatomy cases, the shape bank (object or folder); default: the record's
            ``config.bank``, else the embedded bank. Its content must be the pinned one.
        device: torch device for FDIF rendering.

    Raises:
        ReplayError: unreadable record, or a bank other than the pinned one.
    """
    source = str(record) if not isinstance(record, dict) else "record"
    rec = load_record(record) if not isinstance(record, dict) else record
    pins = Pins.model_validate(rec["pins"])
    if pins.anatomix_version != __version__:
        warnings.warn(f"{source}: written by anatomix {pins.anatomix_version}, replayed with {__version__}; "
                      "bytes may differ", stacklevel=2)
    if rec["mode"] == "fdif":
        generator = FdifGenerator(FdifSynthConfig.model_validate(rec["config"]), seed=int(rec["seed"]), device=device)
        return generator.render_record(rec)
    return render_anatomy_record(rec, _bank_for(rec, bank, source))


def replay_to_folder(record_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                     bank: ShapeBank | str | os.PathLike[str] | None = None) -> list[Path]:
    """Replay a record and write ``<case>_0000.nii.gz`` and ``<case>.nii.gz`` into ``out_dir``
    (the names ``anatomix synth`` gives them). Returns the two paths."""
    sample = replay_record(record_path, bank=bank)  # errors name the record file
    rec = load_record(record_path)
    case = str(rec.get("case") or Path(record_path).stem)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image = write_volume(out / f"{case}_0000.nii.gz", image_to_write(sample), sample.spacing_mm, sample.origin_mm)
    values = rec.get("label_file_values")  # synth writes consecutive values (anatomix.output_labels.output_label_lut)
    lab = sample.label
    if values:
        lut = np.zeros(256, dtype=np.uint8)
        for v, w in values.items():
            lut[int(v)] = int(w)
        lab = lut[lab]
    label = write_volume(out / f"{case}.nii.gz", lab, sample.spacing_mm, sample.origin_mm)
    return [image, label]
