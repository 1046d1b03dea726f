"""Checks the CLI runs before a command computes anything, and after a synthesis run.

Output paths are checked up front (a folder under a file, a folder where a file is expected, a
read-only place) so that a bad ``--out`` fails in milliseconds, not after the computation; OS
errors while writing (full disk, ...) become one message; a failed ``synth`` removes the output
folder it created when no case was finished; cases that break hard constraints are listed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from anatomix.safeload import load_json_file

#: Most cases one `synth` run may be asked for (a typo guard; shards share one n).
MAX_CASES = 10_000_000


def check_output_path(path: str, option: str, *, folder: bool) -> str | None:
    """Why ``path`` cannot be written (None: it can), checked before any computation.

    Args:
        path: the output file or folder.
        option: the option's name, for the message.
        folder: the output is a folder (else a file).
    """
    p = Path(path)
    if p.exists() and folder and not p.is_dir():
        return f"{option} {p}: expected a folder, found a file; choose another {option}"
    if p.exists() and not folder and p.is_dir():
        return f"{option} {p}: expected a file path, found a folder; give a file name"
    parent = p if (folder and p.is_dir()) else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{option} {p}: expected a path under a folder, found {parent} is a file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (f"{option} {p}: expected a writable place, found {parent} is not writable "
                "(read-only filesystem or no permission)")
    return None


def os_error_message(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    return (f"{where}{e.strerror or e} while writing; outputs are written atomically, so no "
            "half-written file was left (free space or choose another --out, then rerun)")


def remove_empty_run(out: str, existed: bool) -> None:
    """After a failed synth: remove the --out folder this command created if it holds no case
    (only the run file, empty subfolders and temp files of the failed first case)."""
    p = Path(out)
    if existed or not p.is_dir():
        return
    if any((p / "records").glob("*.json")) or any((p / "imagesTr").glob("[!.]*")):
        return
    allowed = {"anatomix_run.json", ".anatomix.lock", "imagesTr", "labelsTr", "records"}
    if all(c.name in allowed for c in p.iterdir()):
        shutil.rmtree(p, ignore_errors=True)


def violating_cases(out: str, n: int) -> list[tuple[str, str]]:
    """(case, why) for the run's cases whose record says a required organ failed or a hard
    constraint does not hold."""
    bad = []
    for p in sorted((Path(out) / "records").glob("*.json")):
        try:
            rec = load_json_file(p)
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or int(rec.get("index", -1)) >= n:
            continue
        c = rec.get("constraints") or {}
        hard = c.get("hard_violations") or []
        # a required organ that was not placed also makes hard_ok false, with no violation to name
        why = ([f"required organ(s) not placed: {', '.join(c['failed'])}"] if c.get("failed") else []) + \
            ([f"hard violations: {', '.join(hard or ['?'])}"]
             if c.get("hard_ok") is False and (hard or not c.get("failed")) else [])
        if why:
            bad.append((str(rec.get("case", p.stem)), "; ".join(why)))
    return bad
