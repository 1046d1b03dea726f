"""Named resources that ship with anatomix: organ graphs, shape banks, configs.

``--graph abdomen``, ``--bank default``, ``--config fdif`` and ``anatomix fit --config tiny`` name
files that ship inside the package, so anatomix runs from any folder after a plain ``pip install``.
In a checkout the resources are the top-level folders ``graphs/``, ``shapebank/`` and
``configs/``; a wheel carries copies of them under ``anatomix/_data/`` at the same relative paths
(see ``setup.py``), so a relative path inside a shipped config resolves identically in both.

Rules, one place:

- A value that names an existing file (graphs, configs) or bank folder (with ``manifest.json``)
  is that path; otherwise a bare name (``abdomen``, ``tiny``; ``abdomen.yaml`` also works) is
  looked up among the shipped resources of its kind; anything else is an error listing the names
  that ship.
- Input paths written *inside* a config (a synthesis config's ``graph`` and ``bank``, a Lightning
  config's ``data.init_args.synth_config``, ``overrides.graph``/``bank``, ``datalist``,
  ``nnunet_dir``) resolve relative to that config file's folder, or as a shipped name.
- Output paths (``trainer.default_root_dir``, checkpoint ``dirpath``, ``prediction_writer``,
  ``model.pretrained`` written by an earlier run, ``--out``) stay relative to the working folder.

Example:
    >>> from anatomix import resources
    >>> resources.resolve("graph", "abdomen").name
    'abdomen.yaml'
    >>> "tiny" in resources.names("config")
    True
    >>> (resources.resolve("bank", "default") / "manifest.json").is_file()
    True
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources as _ilr
from pathlib import Path
from typing import Any, Literal, Mapping

from anatomix.errors import ConfigError

__all__ = ["Kind", "KINDS", "resource_root", "names", "resolve", "resolve_in", "listing",
           "resolve_synth_paths", "resolve_lightning_config", "lightning_argv", "shipped"]

Kind = Literal["graph", "bank", "config"]
#: kind -> (folder under the resource root, file suffix; "" = a folder)
KINDS: dict[str, tuple[str, str]] = {"graph": ("graphs", ".yaml"), "bank": ("shapebank", ""),
                                     "config": ("configs", ".yaml")}


@lru_cache(maxsize=1)
def resource_root() -> Path:
    """The folder holding ``graphs/``, ``configs/`` and ``shapebank/``.

    The checkout (the package's parent folder with ``pyproject.toml``) when anatomix runs from
    one (editable install, ``PYTHONPATH``), else the installed package's ``_data`` folder.
    """
    pkg = Path(str(_ilr.files("anatomix")))
    checkout = pkg.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "graphs").is_dir():
        return checkout
    data = pkg / "_data"
    if data.is_dir():
        return data
    raise ConfigError(f"anatomix's resources are missing: neither {checkout}/graphs (a checkout) nor {data} "
                      "(an installed wheel) exists; reinstall anatomix (pip install --force-reinstall anatomix)")


def _folder(kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {sorted(KINDS)}")
    return resource_root() / KINDS[kind][0]


def names(kind: str) -> list[str]:
    """Names of the shipped resources of ``kind`` (``graph``, ``bank`` or ``config``), sorted."""
    folder, suffix = _folder(kind), KINDS[kind][1]
    if not folder.is_dir():
        return []
    if suffix:
        return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}") if p.is_file())
    return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())


def shipped(kind: str, name: str) -> Path:
    """The path of the shipped resource ``name`` of ``kind`` (whether or not it exists)."""
    folder, suffix = _folder(kind), KINDS[kind][1]
    return folder / f"{name}{suffix}"


def _is_usable(kind: str, path: Path) -> bool:
    return (path / "manifest.json").is_file() if kind == "bank" else path.is_file()


def resolve_in(kind: str, spec: str | os.PathLike[str], base: str | os.PathLike[str] | None = None,
               *, where: str = "") -> Path:
    """Like :func:`resolve`, with relative paths taken from ``base`` (a config file's folder)."""
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {sorted(KINDS)}")
    text = os.fspath(spec)
    p = Path(text).expanduser()
    cand = p if p.is_absolute() or base is None else Path(base) / p
    if _is_usable(kind, cand):
        return cand.resolve()
    suffix = KINDS[kind][1]
    name = text[: -len(suffix)] if suffix and text.endswith(suffix) else text
    if name and "/" not in name and os.sep not in name and name in names(kind):
        return shipped(kind, name).resolve()
    what = "bank folder (with manifest.json)" if kind == "bank" else "file"
    available = ", ".join(names(kind)) or "none"
    at = f"{where}: " if where else ""
    raise ConfigError(f"{at}{kind} {text!r}: no such {what} ({cand}) and not a shipped {kind} name; "
                      f"shipped {kind}s: {available} (list them with `anatomix resources`)")


def resolve(kind: str, spec: str | os.PathLike[str]) -> Path:
    """The path of a graph, bank or config given as a path (relative to the working folder) or a name.

    Args:
        kind: ``graph``, ``bank`` or ``config``.
        spec: an existing path, or a shipped name (``abdomen``, ``default``, ``tiny``).

    Raises:
        ConfigError: neither a usable path nor a shipped name (the message lists the names).
    """
    return resolve_in(kind, spec, None)


def listing() -> list[tuple[str, str, Path]]:
    """Every shipped resource as ``(kind, name, path)``."""
    return [(kind, n, resolve(kind, n)) for kind in KINDS for n in names(kind)]


def resolve_synth_paths(data: Mapping[str, Any], base: str | os.PathLike[str] | None,
                        where: str = "<config>") -> dict[str, Any]:
    """A synthesis config mapping with its ``graph`` and ``bank`` made absolute.

    Relative paths are taken from ``base`` (the config file's folder; None: the working folder);
    bare names are shipped resources. ``None`` values stay ``None``.
    """
    out = dict(data)
    for key in ("graph", "bank"):
        if out.get(key) not in (None, ""):
            out[key] = str(resolve_in(key, str(out[key]), base, where=f"{where}: {key}"))
    return out


def resolve_lightning_config(path: Path) -> dict[str, Any]:
    """A Lightning config (YAML) with its input paths resolved relative to its own folder.

    Resolved: ``data.init_args.synth_config`` (config), ``data.init_args.overrides.graph`` and
    ``.bank``, ``data.init_args.datalist`` and ``.nnunet_dir`` (files/folders). Output paths and
    ``model.pretrained`` (an earlier run's checkpoint) stay relative to the working folder.

    Raises:
        ConfigError: unreadable YAML, or an input that is neither a file nor a shipped name.
    """
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (trainer, model, data); found {type(cfg).__name__}")
    base = path.parent
    data = cfg.get("data")
    args = data.get("init_args") if isinstance(data, dict) else None
    if isinstance(args, dict):
        where = f"{path}: data.init_args"
        sc = args.get("synth_config")
        if isinstance(sc, str):
            args["synth_config"] = str(resolve_in("config", sc, base, where=f"{where}.synth_config"))
        ov = args.get("overrides")
        if isinstance(ov, dict):
            args["overrides"] = resolve_synth_paths(ov, base, where=f"{where}.overrides")
        for key in ("datalist", "nnunet_dir"):
            v = args.get(key)
            if isinstance(v, str) and v and not Path(v).is_absolute():
                cand = base / v
                if not cand.exists():
                    raise ConfigError(f"{where}.{key}: {v!r} not found relative to the config ({cand})")
                args[key] = str(cand.resolve())
    return cfg


def lightning_argv(argv: list[str]) -> list[str]:
    """``argv`` with ``--config NAME|PATH`` replaced by the resolved config as a YAML string.

    LightningCLI (jsonargparse) accepts a YAML string wherever it accepts a config file.
    """
    import yaml

    out = list(argv)
    i = 0
    while i < len(out):
        a = out[i]
        if a in ("--config", "-c") and i + 1 < len(out):
            out[i + 1] = yaml.safe_dump(resolve_lightning_config(resolve("config", out[i + 1])), sort_keys=False)
            i += 2
            continue
        if a.startswith("--config="):
            value = a.split("=", 1)[1]
            out[i] = "--config=" + yaml.safe_dump(resolve_lightning_config(resolve("config", value)), sort_keys=False)
        i += 1
    return out
