"""Exceptions anatomix raises for bad user input. The CLI turns them into one clear message."""

from __future__ import annotations

import reprlib
from typing import Any


class AnatomixError(ValueError):
    """Base class: a user-facing problem (bad file, bad config, bad option), with what to do next."""


class InputError(AnatomixError):
    """One or more input files are unreadable or not what the command expects.

    Attributes:
        problems: one line per problem (file, expected, found), all collected before raising.
    """

    def __init__(self, problems: list[str], what: str = "input") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the {what}; nothing was written:\n{lines}")


class ConfigError(AnatomixError):
    """A YAML/JSON configuration file does not validate (file, field path, expected, found)."""


_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxdict = 6
_repr.maxlist = 6
_repr.maxtuple = 6
_repr.maxset = 6
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlong = 40


def excerpt(value: Any, limit: int = 80) -> str:
    """A bounded ``repr`` of ``value`` (at most ``limit`` characters, "..." when cut).

    Cost is bounded whatever the value: nested containers are cut at 3 levels and 6 items.
    """
    try:
        text = _repr.repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def _describe(value: Any) -> str:
    return excerpt(value, 60)  # bounded: never reprs a whole (alias-expanded) input


def validation_problems(error: Any) -> list[str]:
    """One line per problem of a pydantic ValidationError: ``field.path: expected ..., found ...``.

    The shared formatter for configuration and manifest errors; callers prefix the file name.
    """
    lines = []
    for e in error.errors():
        loc = ".".join(str(p) for p in e.get("loc", ())) or "(top level)"
        kind = e.get("type", "")
        if kind == "extra_forbidden":
            lines.append(f"{loc}: unknown key (remove it or check its spelling)")
        elif kind == "missing":
            lines.append(f"{loc}: missing required key")
        elif kind == "json_invalid":
            why = str((e.get("ctx") or {}).get("error", e.get("msg", "")))
            hint = " (the file is truncated)" if "EOF" in why else ""
            lines.append(f"{loc}: expected valid JSON, found a syntax error: {why}{hint}")
        else:
            msg = e.get("msg", "invalid").removeprefix("Value error, ")
            lines.append(f"{loc}: expected {msg[0].lower() + msg[1:] if msg else 'valid value'}; "
                         f"found {_describe(e.get('input'))}")
    return lines


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a command; the message says what was kept and how to resume.

    A ``KeyboardInterrupt`` (so nothing that catches ``Exception`` swallows it); the CLI prints
    the message and exits with 130.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
