"""Writing a bank folder atomically (temp folder + rename), under a lock beside the output.

``_write_bank`` holds an exclusive ``fcntl.flock`` on ``.<name>.lock`` beside the output for the
whole write: it removes temp/old folders a killed run left (``.<name>.tmp-*``,
``.<name>.old-*``; only the lock holder ever writes them, so they are stale), checks again
that ``out`` may be written (exists and not ``overwrite`` -> refused: of two concurrent ingests
exactly one wins), writes the new bank into a temp folder and renames it into place, and
removes the lock file. A killed run leaves at most the lock file (unlocked; reused next time)
and temp folders the next run removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from anatomix.bank.manifest import BankManifest
from anatomix.errors import InputError

#: How long a run waits for another run writing the same bank folder (s).
LOCK_WAIT_S = 60.0


@contextlib.contextmanager
def output_lock(out: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[Path]:
    """Exclusive lock on ``.<out.name>.lock`` beside ``out`` (released on exit or death).

    The lock file is removed on release; a waiter that then holds the lock of a removed file
    notices (its inode is no longer the path's) and locks the new file instead.

    Raises:
        InputError: another process holds it for longer than ``wait_s``.
    """
    import fcntl

    lock = out.parent / f".{out.name}.lock"
    deadline = time.monotonic() + wait_s
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                raise InputError([f"{out}: expected to be the only run writing this folder, "
                                  f"found another one holding {lock} for over {wait_s:g} s; "
                                  "wait for it to finish or choose another --out"]) from None
            time.sleep(0.05)
            continue
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file the previous holder had already removed: retry
    try:
        yield lock
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)  # releases the lock


def clean_stale(out: Path) -> list[Path]:
    """Remove temp/old folders of killed runs beside ``out`` (call under :func:`output_lock`)."""
    gone = []
    for pat in (f".{out.name}.tmp-*", f".{out.name}.old-*"):
        for p in out.parent.glob(pat):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
    return gone


def check_output_folder(out: Path, overwrite: bool) -> list[str]:
    """Problems with writing a bank to ``out`` (empty list: fine)."""
    if out.is_symlink():
        return [f"{out}: expected a new output folder, found a symbolic link; choose another "
                "--out"]
    if out.exists() and not overwrite:
        return [f"{out}: expected a new output folder, found it exists; pass --overwrite to "
                "replace it"]
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and
                                              not (out / "manifest.json").is_file())):
        return [f"{out}: expected a shape bank folder to overwrite, found a "
                f"{'file' if not out.is_dir() else 'non-empty folder without manifest.json'}"
                "; choose another --out"]
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"{out}: expected a folder path, found {parent} is a file; choose another --out"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{out}: expected a writable place, found {parent} not writable (read-only "
                "filesystem or no permission); choose another --out"]
    return []


def _write_bank(out: Path, manifest: BankManifest, files: dict[str, bytes],
                overwrite: bool = True) -> None:
    """Write into a temp folder beside ``out``, then swap it in with renames (under the lock)."""
    out = out.absolute()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError([f"{out}: expected a writable output folder, found {e.strerror or e}; "
                          "choose another --out"]) from None
    with output_lock(out):
        clean_stale(out)
        problems = check_output_folder(out, overwrite)  # again: another run may have won
        if problems:
            raise InputError(problems)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        old: Path | None = None
        try:
            for rel, data in sorted(files.items()):
                f = tmp / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(data)
            (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=1) + "\n")
            for d in sorted([tmp, *(p for p in tmp.rglob("*") if p.is_dir())]):
                os.chmod(d, 0o755)
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.rmdir(old)
                os.replace(out, old)
            os.replace(tmp, out)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and old.exists() and not out.exists():
                os.replace(old, out)
            raise InputError([f"{out}: expected to write the bank, found "
                              f"{e.strerror or e} ({e.filename or out}); nothing was written "
                              "(an old bank there is unchanged)"]) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and old.exists() and not out.exists():
                os.replace(old, out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
