"""Label tables: value -> organ name from a preset, a JSON/YAML file (an nnU-Net ``dataset.json``
too) or a mapping; the one reader of ``--labels``, ``source_labels`` and ``--real-labels``.

Names are spelled in the vocabulary of :mod:`anatomix.labels` (``canonical_organ``, or
``lenient_organ`` where a file's own names are data).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from anatomix.labels import PRESETS, UnknownOrganError, canonical_organ, lenient_organ, normalise_name
from anatomix.output_labels import IGNORE_NAME

__all__ = ["load_label_entries", "load_label_table", "parse_label_entries", "read_label_file"]

_BACKGROUND_NAMES = frozenset({"background", "bg", "clear_label"})


def _is_int_key(k: object) -> bool:
    if isinstance(k, bool):
        return False
    if isinstance(k, int) or type(k).__name__.startswith(("int", "uint")):
        return True
    try:
        int(str(k).strip())
        return True
    except ValueError:
        return False


def read_label_file(path: "str | os.PathLike[str]") -> tuple[Mapping[object, object] | None, list[str]]:
    """Parse a JSON/YAML label file (``yaml.safe_load``; JSON is YAML): the mapping and any problems.

    An nnU-Net ``dataset.json`` (a mapping with a ``labels`` mapping) yields its ``labels``.
    Problems name the file, what was expected and what was found.
    """
    import yaml

    from anatomix.safeload import InputLimitError, load_yaml_file

    p = Path(path)
    try:
        raw = load_yaml_file(p)
    except InputLimitError as exc:
        return None, [str(exc)]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, [f"{p}: expected a JSON/YAML mapping of label value to organ name, "
                      f"found an unreadable file ({first})"]
    if isinstance(raw, Mapping) and isinstance(raw.get("labels"), Mapping):
        raw = raw["labels"]  # nnU-Net dataset.json
    if not isinstance(raw, Mapping):
        return None, [f"{p}: expected a mapping of label value to organ name, found {type(raw).__name__}"]
    return raw, []


def parse_label_entries(
    raw: Mapping[object, object], source: str, problems: list[str], *, strict: bool = True,
    allow_ignore: bool = False, allow_renames: bool = False,
) -> tuple[dict[int, str | None], dict[str, str | None]]:
    """Entries of a label table: ``value: name`` or nnU-Net ``name: value``, names canonicalised.

    Args:
        raw: the parsed mapping.
        source: where it came from (file name, option), for messages.
        problems: appended to (one line per problem: source, expected, found).
        strict: names outside the vocabulary are problems; otherwise kept as
            :func:`lenient_organ` spells them.
        allow_ignore: ``value: null`` ignores that value (returned as None).
        allow_renames: ``embedded name: organ`` (or null) renames the names a file embeds.

    Returns:
        ``(values, renames)``: label value -> organ (None = ignore) and embedded name -> organ.
        Background entries (value 0 named background/bg/clear_label or null; with
        ``strict=False`` any value 0 or background name) are skipped, and so are nnU-Net region
        entries (``name: [values]``).
    """
    values: dict[int, str | None] = {}
    renames: dict[str, str | None] = {}

    def organ(name: str, where: str) -> tuple[bool, str | None]:
        try:
            return True, canonical_organ(name)
        except UnknownOrganError as exc:
            if strict:
                problems.append(f"{source}: {where}: {exc}")
                return False, None
            return True, lenient_organ(name)  # the normalised spelling (canonical failed above)

    for k, v in raw.items():
        if isinstance(k, bool):
            problems.append(f"{source}: expected a label value or name as key, found {k!r}")
            continue
        if _is_int_key(k) and (isinstance(v, str) or v is None):
            value, name = int(str(k).strip()), v
        elif not _is_int_key(k) and _is_int_key(v):
            value, name = int(str(v).strip()), str(k)  # nnU-Net dataset.json: name -> value
        elif not _is_int_key(k) and isinstance(v, list):
            continue  # nnU-Net region (name -> list of values): not a label value
        elif allow_renames and isinstance(k, str) and (isinstance(v, str) or v is None):
            ok, target = organ(v, f"entry {k!r}") if v is not None else (True, None)
            if ok:
                renames[k.strip().lower()] = target
            continue
        else:
            problems.append(f"{source}: expected 'value: organ name' or 'organ name: value' entries, "
                            f"found {k!r}: {v!r}")
            continue
        if name is None or normalise_name(name) in _BACKGROUND_NAMES:
            if value == 0 or (name is not None and not strict):
                continue
            if name is None and allow_ignore:
                values[value] = None
                continue
            problems.append(f"{source}: label {value}: expected an organ name, found {name!r}")
            continue
        if strict and normalise_name(name) == IGNORE_NAME:
            # nnU-Net v2's ignore label (anatomix synth writes one): not an organ; ignored where the
            # caller ignores values, else kept under its own name (evaluate scores shared organs only)
            values[value] = None if allow_ignore else IGNORE_NAME
            continue
        if value == 0 and not strict:
            continue  # a file's own name for its background
        if value <= 0:
            problems.append(f"{source}: expected label values > 0 for organs, found {value}: {name!r} "
                            "(0 is background)")
            continue
        ok, target = organ(name, f"label {value}")
        if ok:
            values[value] = target
    return values, renames


def load_label_entries(
    spec: "str | os.PathLike[str] | Mapping[object, object]", *, strict: bool = True,
    allow_ignore: bool = False, allow_renames: bool = False, option: str = "labels",
    alternatives: str = "",
) -> tuple[dict[int, str | None], dict[str, str | None], str]:
    """Read a label table from a preset name, a JSON/YAML file or a mapping (see
    :func:`parse_label_entries`); returns ``(values, renames, source)``.

    ``option`` names the option or field in messages; ``alternatives`` lists what else the
    caller accepts there (e.g. ``"'auto'"``).

    Raises:
        InputError: unknown preset / missing or unreadable file / bad entries (all listed, each
            with the file, what was expected and what was found).
    """
    from anatomix.errors import InputError

    if isinstance(spec, Mapping):
        raw, source = spec, f"{option} mapping"
    else:
        key = str(spec).strip().lower()
        if key in PRESETS:
            return dict(PRESETS[key]), {}, f"preset {key}"
        p = Path(spec)
        if not p.is_file():
            other = f"{alternatives}, " if alternatives else ""
            raise InputError([f"{option} {spec}: expected {other}a label preset ({', '.join(sorted(PRESETS))}) or a "
                              "JSON/YAML file mapping label value to organ name, found neither a preset "
                              "nor a file"], what="label table")
        parsed, problems = read_label_file(p)
        if parsed is None:
            raise InputError(problems, what="label table")
        raw, source = parsed, str(p)
    problems = []
    values, renames = parse_label_entries(raw, source, problems, strict=strict, allow_ignore=allow_ignore,
                                          allow_renames=allow_renames)
    if not values and not renames and not problems:
        problems.append(f"{source}: expected at least one organ label, found none")
    if problems:
        raise InputError(problems, what="label table")
    return values, renames, source


def load_label_table(spec: "str | os.PathLike[str] | Mapping[object, object]", *, strict: bool = True,
                     option: str = "labels") -> dict[int, str]:
    """Label value -> organ name from a preset name, a JSON/YAML file mapping value -> name, an
    nnU-Net ``dataset.json`` (``labels``: name -> value), or a mapping in either direction.

    Args:
        spec: the preset name, file or mapping.
        strict: names outside the vocabulary are problems (else kept, normalised: see
            :func:`lenient_organ`).
        option: the option or field the table came from, for messages.

    Raises:
        InputError: all problems at once (file, expected, found).
    """
    values, _, _ = load_label_entries(spec, strict=strict, option=option)
    return {v: n for v, n in values.items() if n is not None}
