"""Bounded reading of YAML/JSON input files, and bounded excerpts for error messages.

Every YAML/JSON file a user hands anatomix (graphs, synthesis and training configs, label
tables) is read through :func:`load_yaml_file` / :func:`load_yaml_text`: the file size, the
nesting depth, the number of nodes and the number of nodes *after alias expansion* are
checked on PyYAML's event stream (no Python object is built yet, nothing is recursive), so a
353-byte "billion laughs" alias bomb or a 100,000-deep document is refused in milliseconds.
Only then is the document constructed with ``yaml.SafeLoader`` (or a subclass of it).

:func:`excerpt` (defined in :mod:`anatomix.errors`, re-exported here) gives a short ``repr`` of
any value (``reprlib``: it never walks a whole structure), for messages that show what was found.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from anatomix.errors import AnatomixError, excerpt

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "InputLimitError",
    "check_yaml_text",
    "excerpt",
    "load_json_file",
    "load_yaml_file",
    "load_yaml_text",
    "read_text_bounded",
]

#: Largest YAML/JSON input file read (bytes). Graphs and configs are a few kB.
MAX_BYTES = 16 << 20
#: Deepest nesting of mappings/sequences.
MAX_DEPTH = 64
#: Most scalar + collection nodes, counting every alias as the full node it expands to.
MAX_NODES = 2_000_000
#: Most alias uses in one document (YAML anchors are legal; nobody needs thousands of them).
MAX_ALIASES = 10_000


class InputLimitError(AnatomixError):
    """A YAML/JSON input is too large, too deep or expands (aliases) beyond the limits."""


def read_text_bounded(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES,
                      what: str = "input file") -> str:
    """Read a UTF-8 text file of at most ``max_bytes`` bytes (checked before reading).

    Raises:
        InputLimitError: the file is larger than ``max_bytes``.
        OSError, UnicodeDecodeError: as ``Path.read_text`` (callers word them).
    """
    p = Path(path)
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise InputLimitError(f"{p}: expected a {what} of at most {max_bytes >> 20} MB, found "
                                  f"{size / (1 << 20):.1f} MB; this is not a file anatomix reads")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while reading (or a special file)
        raise InputLimitError(f"{p}: expected a {what} of at most {max_bytes >> 20} MB, found more")
    return data.decode("utf-8")


def check_yaml_text(text: str, source: str = "<yaml>", *, max_bytes: int = MAX_BYTES,
                    max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES,
                    max_aliases: int = MAX_ALIASES) -> None:
    """Check a YAML (or JSON) document against the limits on its event stream.

    Counts, without building any object: nesting depth, nodes, alias uses and the number of
    nodes the document would have with every alias expanded (an anchor's expanded size is
    known when its node ends; an alias adds that size).

    Raises:
        InputLimitError: one limit exceeded (the message says which, where, and the limit).
        yaml.YAMLError: a syntax error (callers word it as they do for the loader).
    """
    if len(text) > max_bytes:
        raise InputLimitError(f"{source}: expected at most {max_bytes >> 20} MB of YAML/JSON, "
                              f"found {len(text) / (1 << 20):.1f} MB")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    anchors: dict[str, int] = {}
    stack: list[list[Any]] = []  # [expanded node count so far, anchor name]
    total = 0
    aliases = 0

    def fail(what: str, limit: int, event: Any) -> InputLimitError:
        mark = getattr(event, "start_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return InputLimitError(f"{source}{where}: expected a YAML/JSON document with {what} at "
                               f"most {limit:,}, found more; this is not a file anatomix writes "
                               "or needs (an alias bomb or a runaway generator?)")

    def add(n: int, event: Any) -> None:
        nonlocal total
        if stack:
            stack[-1][0] += n
        else:
            total += n
        if total + sum(s[0] for s in stack) > max_nodes:
            raise fail("nodes (aliases expanded)", max_nodes, event)

    def _scan(events: Any) -> None:
        nonlocal aliases
        for event in events:
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= max_depth:
                    raise fail("nesting depth", max_depth, event)
                stack.append([1, event.anchor])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                n, anchor = stack.pop()
                if anchor is not None:
                    anchors[anchor] = n
                add(n, event)
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    anchors[event.anchor] = 1
                add(1, event)
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > max_aliases:
                    raise fail("alias uses", max_aliases, event)
                add(anchors.get(event.anchor, 1), event)

    try:
        _scan(yaml.parse(text, Loader=loader))
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):  # libyaml's own limit (1000), hit first
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise InputLimitError(f"{source}{where}: expected a YAML/JSON document with nesting "
                                  f"depth at most {max_depth:,}, found more than 1,000") from None
        raise


def load_yaml_text(text: str, source: str = "<yaml>", *,
                   loader: type[yaml.SafeLoader] = yaml.SafeLoader, **limits: int) -> Any:
    """:func:`check_yaml_text`, then ``yaml.load(text, Loader=loader)`` (a SafeLoader)."""
    if not (isinstance(loader, type) and issubclass(loader, yaml.SafeLoader)):
        raise TypeError("loader must be yaml.SafeLoader or a subclass")
    check_yaml_text(text, source, **limits)
    return yaml.load(text, Loader=loader)


def load_yaml_file(path: str | os.PathLike[str], *,
                   loader: type[yaml.SafeLoader] = yaml.SafeLoader,
                   max_bytes: int = MAX_BYTES, **limits: int) -> Any:
    """Read a YAML/JSON file with the size limit, then :func:`load_yaml_text`.

    Raises:
        InputLimitError, yaml.YAMLError, OSError, UnicodeDecodeError.
    """
    text = read_text_bounded(path, max_bytes=max_bytes, what="YAML/JSON file")
    return load_yaml_text(text, str(path), loader=loader, max_bytes=max_bytes, **limits)


def load_json_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES,
                   max_depth: int = MAX_DEPTH) -> Any:
    """Read a JSON file with size and depth limits (JSON has no aliases).

    Raises:
        InputLimitError: too large or too deep; ``json.JSONDecodeError`` for bad JSON.
    """
    text = read_text_bounded(path, max_bytes=max_bytes, what="JSON file")
    try:
        data = json.loads(text)
    except RecursionError:
        raise InputLimitError(f"{path}: expected a JSON document nested at most {max_depth} "
                              "deep, found far deeper") from None
    todo: list[tuple[Any, int]] = [(data, 0)]
    while todo:  # iterative depth check (no recursion)
        v, d = todo.pop()
        if d > max_depth:
            raise InputLimitError(f"{path}: expected a JSON document nested at most {max_depth} "
                                  "deep, found deeper")
        if isinstance(v, dict):
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, d + 1) for x in v)
    return data
