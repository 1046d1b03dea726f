"""The one progress bar of anatomix (rich): label, bar, done/total, elapsed, remaining."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(label: str, total: int, *, enabled: bool = True,
                 note: str | None = None) -> Iterator[Callable[[], None]]:
    """A rich progress bar for ``total`` steps; yields ``advance()`` (one step done).

    Args:
        label: the bar's name (``ingest``, ``synth``).
        total: number of steps.
        enabled: False yields a no-op ``advance`` and draws nothing.
        note: a line printed above the bar when it starts (e.g. what a resume kept).
    """
    if not enabled:
        yield lambda: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(label, total=total)
        if note:
            bar.console.print(note, markup=False)
        yield lambda: bar.advance(task)
