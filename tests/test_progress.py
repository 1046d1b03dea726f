"""progress.py: the one rich progress bar (ingest, synth)."""

from __future__ import annotations

from anatomix.progress import progress_bar


def test_progress_bar_counts_and_notes(capsys) -> None:
    with progress_bar("synth", 3, note="resuming: 2 finished case(s) kept") as advance:
        for _ in range(3):
            advance()
    out = capsys.readouterr().out
    assert "resuming: 2 finished case(s) kept" in out and "synth" in out and "3/3" in out


def test_progress_bar_disabled_draws_nothing(capsys) -> None:
    with progress_bar("ingest", 5, enabled=False) as advance:
        advance()
    assert capsys.readouterr().out == ""
