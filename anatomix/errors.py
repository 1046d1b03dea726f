"""Exceptions anatomix raises for bad user input. The CLI turns them into one clear message."""

from __future__ import annotations


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
