"""Reading and writing graph files: YAML with duplicate-key detection, every problem located
(file, field path, expected, found), and a stable YAML layout for writing."""

from __future__ import annotations

import difflib

from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from pydantic import ValidationError

from anatomix import relations as rel
from anatomix.labels import VOCABULARY, closest_organs
from anatomix.safeload import check_yaml_text, excerpt, read_text_bounded
from anatomix.graph.schema import Defaults, Gaussian3, GraphSpec, OrganEntry, RelationEntry


class _Loader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys instead of silently keeping the last."""

    duplicates: list[str]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                loader.duplicates.append(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        except TypeError:
            pass
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> tuple[Any, list[str]]:
    text = read_text_bounded(path, what="graph YAML file")
    check_yaml_text(text, str(path))  # size, depth and alias-expansion limits before building
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, loader.duplicates


def _fmt_loc(loc: Iterable[Any]) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(top level)"


def _short(v: Any, n: int = 80) -> str:
    return excerpt(v, n)  # bounded: never reprs a whole (alias-expanded) input


def _allowed_keys(loc: Sequence[Any]) -> list[str] | None:
    """The field names allowed at the model that contains ``loc[-1]`` (for unknown-key hints)."""
    parent = loc[:-1]
    model: Any = GraphSpec
    i = 0
    while i < len(parent):
        p = parent[i]
        if model is GraphSpec and p == "organs":
            model, i = OrganEntry, i + 2
            continue
        if model is GraphSpec and p == "relations":
            model, i = RelationEntry, i + 2
            continue
        if model is GraphSpec and p == "defaults":
            model, i = Defaults, i + 1
            continue
        if model in (OrganEntry,) and p == "anchor":
            model, i = Gaussian3, i + 1
            continue
        if model in (RelationEntry,) and p == "offset":
            model, i = Gaussian3, i + 1
            continue
        return None
    return sorted(model.model_fields)


def pydantic_problems(err: ValidationError, source: str) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = _fmt_loc(loc)
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            exp = f"one of the known keys ({', '.join(allowed)})" if allowed else "a known key"
            problems.append(f"{source}: {path}: unknown key; expected {exp}; found {_short(loc[-1])}")
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):  # our validators word the whole "expected ..., found ..."
            problems.append(f"{source}: {path}: {msg[len('Value error, '):]}")
            continue
        if e["type"] == "missing":
            problems.append(f"{source}: {path}: expected this required field; found nothing")
            continue
        problems.append(f"{source}: {path}: expected {msg[0].lower() + msg[1:]}; found {_short(e.get('input'))}")
    return problems


def cross_problems(raw: Any, source: str) -> list[str]:
    """Checks between fields, run on the raw dict so they report even if pydantic also fails."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        return problems
    organs = raw.get("organs")
    names: set[str] = set()
    if isinstance(organs, dict):
        labels: dict[Any, str] = {}
        for name, entry in organs.items():
            names.add(str(name))
            if str(name) not in VOCABULARY:
                close = closest_organs(str(name))
                hint = f" (closest: {', '.join(close)})" if close else ""
                problems.append(
                    f"{source}: organs.{name}: expected an organ name from anatomix.labels.VOCABULARY{hint}; "
                    f"found {name!r}"
                )
            if isinstance(entry, dict) and "label" in entry:
                lab = entry["label"]
                try:
                    hash(lab)
                except TypeError:
                    continue
                if lab in labels:
                    problems.append(
                        f"{source}: organs.{name}.label: expected a label value no other organ uses; "
                        f"found {lab!r}, already the label of {labels[lab]!r}"
                    )
                else:
                    labels[lab] = str(name)
    rels = raw.get("relations")
    if not isinstance(rels, list):
        return problems
    pair_types: dict[frozenset, dict[str, int]] = {}
    parents: dict[str, tuple[str, int]] = {}
    directions: dict[tuple[str, str, str], int] = {}
    undeclared: dict[str, list[str]] = {}  # organ name -> the fields naming it (one problem per name)
    for i, r in enumerate(rels):
        if not isinstance(r, dict):
            continue
        a, b, t = r.get("a"), r.get("b"), r.get("type")
        for key, v in (("a", a), ("b", b)):
            if isinstance(v, str) and organs is not None and v not in names:
                undeclared.setdefault(v, []).append(f"relations[{i}].{key}")
        if not (isinstance(a, str) and isinstance(b, str) and a != b):
            continue
        pair = frozenset((a, b))
        if t in ("contact", "avoid", "inside"):
            seen = pair_types.setdefault(pair, {})
            if t == "contact" and "avoid" in seen or t == "avoid" and "contact" in seen:
                other = seen.get("avoid", seen.get("contact"))
                problems.append(
                    f"{source}: relations[{i}]: expected either contact or avoid between {a} and {b}, "
                    f"found both (relations[{other}] and relations[{i}])"
                )
            seen.setdefault(t, i)
        if t == "attached_to":
            if a in parents:
                problems.append(
                    f"{source}: relations[{i}]: expected at most one attached_to parent per organ; "
                    f"found {a!r} attached to {parents[a][0]!r} (relations[{parents[a][1]}]) and to {b!r}"
                )
            else:
                parents[a] = (b, i)
        if t == "direction" and isinstance(r.get("direction"), str):
            d = r["direction"]
            opp = rel.OPPOSITE_DIRECTION.get(d)
            contradiction = directions.get((b, a, d)) if opp else None
            if contradiction is None and opp:
                contradiction = directions.get((a, b, opp))
            if contradiction is not None:
                problems.append(
                    f"{source}: relations[{i}]: expected directions that can hold together; found "
                    f"{a} {d} {b} contradicting relations[{contradiction}]"
                )
            directions.setdefault((a, b, d), i)
    # cycles in attached_to
    reported: set[frozenset] = set()
    for start in parents:
        chain = [start]
        node = start
        while node in parents:
            node = parents[node][0]
            if node in chain:
                cyc = chain[chain.index(node):]
                cycle_key = frozenset(cyc)
                if cycle_key not in reported:
                    reported.add(cycle_key)
                    idx = sorted(parents[c][1] for c in cyc)
                    where = ", ".join(f"relations[{j}]" for j in idx)
                    problems.append(
                        f"{source}: relations: expected attached_to edges without a cycle; found the cycle "
                        f"{' -> '.join(cyc + [node])} ({where})"
                    )
                break
            chain.append(node)
    for v, fields in undeclared.items():
        # the declared name a typo most likely meant (a misspelt key under `organs` too)
        close = difflib.get_close_matches(v, sorted(names), n=3, cutoff=0.6) or \
            [n for n in closest_organs(v) if n in names]
        hint = f" (closest declared: {', '.join(close)})" if close else ""
        where = fields[0] if len(fields) == 1 else f"{', '.join(fields[:4])}{', ...' if len(fields) > 4 else ''} " \
                                                    f"({len(fields)} fields)"
        problems.append(f"{source}: {where}: expected an organ declared under `organs`{hint}; found {v!r}")
    return problems


class _Dumper(yaml.SafeDumper):
    pass


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(isinstance(x, (int, float, str, bool)) or x is None for x in data)
    nested = all(isinstance(x, list) and all(isinstance(y, (int, float)) for y in x) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=bool(data) and (flat or nested))


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = "type" in data and all(not isinstance(v, dict) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def dump_yaml(data: Any) -> str:
    """YAML text with number lists in flow style ([x, y, z]) and keys in model order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
