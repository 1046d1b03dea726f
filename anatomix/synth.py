"""Synthesis front end: samples, generators, configuration and the dataset writer.

Every synthesis mode (``fdif``: formula-driven primitives, :mod:`anatomix.sdf`; ``anatomy``:
structure-aware organs, :mod:`anatomix.anatomy`) provides a *generator* following
:class:`SampleGenerator`: ``sample(index)`` returns a :class:`Sample` that depends only on the
generator's seed and ``index`` (counter-based randomness, :func:`anatomix.rng.sample_rng`).
:func:`write_dataset` writes any generator's samples to disk in the nnU-Net v2 raw layout plus a
MONAI datalist, with worker processes, shards and resume; a training stream calls
``generator.sample(index)`` directly in its data-loader workers.

Typical use::

    config = load_synth_config("configs/fdif.yaml")
    generator = build_generator(config, seed=0)
    summary = write_dataset(generator, "out/", n=100, seed=0, workers=2)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from anatomix.anatomy import AnatomyGenerator
from anatomix.config import MODES
from anatomix.errors import AnatomixError, Interrupted
from anatomix.output_labels import labels_table, output_label_lut, source_values
from anatomix.record import Pins, pin_changes
from anatomix.sample import Sample, image_to_write
from anatomix.sdf.generator import FdifGenerator

__all__ = [
    "CASE_PREFIX",
    "MODES",
    "Sample",
    "SampleGenerator",
    "SynthError",
    "build_generator",
    "case_name",
    "write_dataset",
]

CASE_PREFIX = "anatomix"
RUN_FILE = "anatomix_run.json"


class SynthError(AnatomixError):
    """A synthesis run cannot proceed (output folder holds another run, bad shard, ...)."""


# ---------------------------------------------------------------------------------------------
# Sample and generator protocol
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class SampleGenerator(Protocol):
    """What every synthesis mode provides. Instances must be picklable (workers are processes).

    Attributes:
        seed: the run seed; ``sample(i)`` depends only on (seed, i).
    """

    seed: int

    def sample(self, index: int) -> Sample:
        """The case ``index`` (deterministic: same bytes whatever the process or order)."""
        ...

    def label_names(self) -> dict[int, str]:
        """Label value -> name for the non-background labels (0 may be omitted)."""
        ...

    def summary(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """End-of-run summary over the records of all written cases (JSON-able dict)."""
        ...


def case_name(index: int) -> str:
    """The case identifier of sample ``index``: ``anatomix_000123``."""
    return f"{CASE_PREFIX}_{index:06d}"


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def build_generator(config: Any, seed: int, device: str = "cpu") -> SampleGenerator:
    """The generator of a validated config (see :func:`load_synth_config`).

    Args:
        config: an ``FdifSynthConfig`` or ``AnatomySynthConfig``.
        seed: run seed (non-negative).
        device: torch device for the generation work ("cpu", "cuda", ...); samples are numpy.
    """
    if seed < 0:
        raise SynthError(f"seed must be non-negative, got {seed}")
    mode = getattr(config, "mode", None)
    if mode == "fdif":
        return FdifGenerator(config, seed=seed, device=device)
    if mode == "anatomy":
        return AnatomyGenerator(config, seed=seed, device=device)
    raise SynthError(f"unknown synthesis mode {mode!r}; expected one of {', '.join(MODES)}")


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _write_nifti(path: Path, array: np.ndarray, spacing_mm: Sequence[float],
                 origin_mm: Sequence[float]) -> None:
    """Write a (x, y, z) RAS array as NIfTI, atomically (:func:`anatomix.io.write_volume`)."""
    from anatomix.io import write_volume

    write_volume(path, array, tuple(spacing_mm), tuple(origin_mm))


def _write_json(path: Path, data: Any) -> None:
    from anatomix.io import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _case_paths(out: Path, case: str) -> tuple[Path, Path, Path]:
    return (out / "imagesTr" / f"{case}_0000.nii.gz", out / "labelsTr" / f"{case}.nii.gz",
            out / "records" / f"{case}.json")


def _write_case(generator: SampleGenerator, out: Path, index: int) -> dict[str, Any]:
    """Generate and write case ``index``; the record is written last (the 'done' marker)."""
    case = case_name(index)
    image_path, label_path, record_path = _case_paths(out, case)
    sample = generator.sample(index)
    _write_nifti(image_path, image_to_write(sample), sample.spacing_mm, sample.origin_mm)
    lut = output_label_lut(generator)  # consecutive label values, as dataset.json declares
    _write_nifti(label_path, sample.label if lut is None else lut[sample.label], sample.spacing_mm,
                 sample.origin_mm)
    record: dict[str, Any] = {"case": case, "image": f"imagesTr/{case}_0000.nii.gz",
              "label": f"labelsTr/{case}.nii.gz", "shape": list(sample.image.shape),
              "spacing_mm": list(sample.spacing_mm), "origin_mm": list(sample.origin_mm)}
    record.update(sample.record)
    if lut is not None:  # generator value -> value in the label file (replay writes the same)
        record["label_file_values"] = {str(v): int(lut[v]) for v in source_values(generator).values()}
    _write_json(record_path, record)
    return record


# worker-process state (spawn: set by the initializer, one generator per process)
_WORKER_GENERATOR: SampleGenerator | None = None
_WORKER_OUT: Path | None = None


def _worker_init(generator: SampleGenerator, out: str, parent_pid: int | None = None) -> None:
    """Worker set-up: one generator per process; the worker dies with its parent.

    On Linux the kernel sends SIGKILL to the worker when the parent dies (``prctl
    PR_SET_PDEATHSIG``, also when the parent is SIGKILLed); a daemon thread watching the
    parent pid is the fallback elsewhere. SIGINT is ignored: the parent handles Ctrl-C and
    stops the workers itself.
    """
    global _WORKER_GENERATOR, _WORKER_OUT
    import signal
    import sys
    import threading

    if parent_pid is not None:
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
            except (OSError, AttributeError):
                pass
        if os.getppid() != parent_pid:  # the parent died before the line above
            os._exit(1)

        def _watch() -> None:
            while True:
                time.sleep(0.5)
                if os.getppid() != parent_pid:
                    os._exit(1)

        threading.Thread(target=_watch, name="anatomix-parent-watchdog", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)
    _WORKER_GENERATOR = generator
    _WORKER_OUT = Path(out)


def _worker_case(index: int) -> dict[str, Any]:
    assert _WORKER_GENERATOR is not None and _WORKER_OUT is not None
    return _write_case(_WORKER_GENERATOR, _WORKER_OUT, index)


def _done_cases(out: Path) -> dict[int, Path]:
    """index -> record path of every finished case in ``out``."""
    done: dict[int, Path] = {}
    records = out / "records"
    if not records.is_dir():
        return done
    prefix = CASE_PREFIX + "_"
    for p in records.glob(f"{prefix}*.json"):
        stem = p.stem[len(prefix):]
        if stem.isdigit():
            image, label, _ = _case_paths(out, p.stem)
            if image.exists() and label.exists():
                done[int(stem)] = p
    return done


def _run_info(generator: SampleGenerator, seed: int) -> dict[str, Any]:
    config = getattr(generator, "config", None)
    dumped = config.model_dump(mode="json") if config is not None and hasattr(config, "model_dump") else None
    pins = getattr(generator, "pins", None)
    return {"format_version": 2, "seed": int(seed),
            "pins": pins.model_dump(mode="json") if pins is not None else None,
            "generator": f"{type(generator).__module__}.{type(generator).__qualname__}",
            "config": dumped,
            "labels": {str(k): v for k, v in sorted(generator.label_names().items())}}


def _channel_name(generator: SampleGenerator) -> str:
    """nnU-Net channel name: the config's ``channel_name``; else ``CT`` for CT-windowed (anatomy) images."""
    config = getattr(generator, "config", None)
    name = getattr(config, "channel_name", None)
    if name:
        return str(name)
    return "CT" if getattr(config, "mode", None) == "anatomy" else "synthetic"


def _write_indexes(generator: SampleGenerator, out: Path, seed: int) -> list[dict[str, Any]]:
    """Rewrite dataset.json and datalist.json from the finished cases on disk (under a lock)."""
    lock_path = out / ".anatomix.lock"
    with open(lock_path, "a+") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX: shards must not finish at once
            pass
        done = _done_cases(out)
        records = [json.loads(done[i].read_text(encoding="utf-8")) for i in sorted(done)]
        dataset = {
            "name": "anatomix",
            "description": f"anatomix synthetic volumes (seed {seed})",
            "channel_names": {"0": _channel_name(generator)},
            "labels": labels_table(generator),
            # generator value of each written class (written values are consecutive, see output_label_lut)
            "anatomix_source_values": source_values(generator),
            "numTraining": len(records),
            "file_ending": ".nii.gz",
            "licence": "synthetic data, no restrictions",
        }
        _write_json(out / "dataset.json", dataset)
        datalist = {
            "name": "anatomix",
            "labels": {str(v): k for k, v in labels_table(generator).items()},
            "numTraining": len(records),
            "training": [{"image": r["image"], "label": r["label"]} for r in records],
        }
        _write_json(out / "datalist.json", datalist)
    return records


def _check_run(out: Path, info: dict[str, Any]) -> None:
    run_file = out / RUN_FILE
    if run_file.exists():
        try:
            old = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if old != info:
            changed: list[str] = []
            if isinstance(old, dict) and isinstance(old.get("pins"), dict) and info.get("pins"):
                try:
                    changed = pin_changes(Pins.model_validate(old["pins"]), Pins.model_validate(info["pins"]))
                except ValueError:
                    changed = []
            if isinstance(old, dict):
                changed += [k for k in info if k not in ("pins", "config") and old.get(k) != info[k]]
                if not changed and old.get("config") != info.get("config"):
                    changed.append("config (input paths)")
            raise SynthError(
                f"{out} already holds a different synthesis run (changed: {', '.join(changed) or 'all'}); "
                "a run resumes only with the same seed, config, graph and bank contents; restore them, "
                "or choose a new --out folder"
            )
    else:
        _write_json(run_file, info)


def _parse_shard(shard: tuple[int, int] | str | None) -> tuple[int, int]:
    if shard is None:
        return (0, 1)
    if isinstance(shard, str):
        try:
            k_text, n_text = shard.split("/")
            shard = (int(k_text), int(n_text))
        except ValueError:
            raise SynthError(f"shard: expected 'k/n' (e.g. 0/4), found {shard!r}") from None
    k, n_shards = shard
    if n_shards < 1 or not 0 <= k < n_shards:
        raise SynthError(f"shard: expected 0 <= k < n with n >= 1, found {k}/{n_shards}")
    return int(k), int(n_shards)


def write_dataset(
    generator: SampleGenerator,
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int | None = None,
    workers: int = 1,
    shard: tuple[int, int] | str | None = (0, 1),
    progress: bool = True,
) -> dict[str, Any]:
    """Write cases 0..n-1 (this shard's share) of a generator to disk.

    Layout (nnU-Net v2 raw dataset + MONAI datalist)::

        out_dir/imagesTr/anatomix_000000_0000.nii.gz   image: int16 HU (CT-like), uint8 (FDIF), else float32
        out_dir/labelsTr/anatomix_000000.nii.gz        uint8 labels
        out_dir/records/anatomix_000000.json           seed, index, every drawn parameter
        out_dir/dataset.json                           channel_names, labels, numTraining, file_ending
        out_dir/datalist.json                          {"training": [{"image", "label"}, ...]} (relative)
        out_dir/anatomix_run.json                      seed + config: a resume must match it

    Each case is written atomically, its record last: a killed run leaves no half case and a
    rerun skips the finished ones. Output bytes do not depend on ``workers`` or ``shard``.

    Args:
        generator: any :class:`SampleGenerator` (picklable when ``workers > 1``).
        out_dir: output folder (created).
        n: total number of cases of the run (indices 0..n-1).
        seed: the run seed; must equal ``generator.seed`` when given.
        workers: processes generating cases (spawned; 1 = in this process).
        shard: ``(k, n_shards)`` or ``"k/n"``: write only indices with ``index % n_shards == k``.
        progress: show a rich progress bar.

    Returns:
        dict: ``written``, ``skipped`` (already finished), ``total_done`` (cases on disk),
        ``seconds``, ``out_dir``, ``generator_summary`` (``generator.summary(records)``).

    Raises:
        SynthError: bad arguments or ``out_dir`` holds a run with another seed/config.
    """
    if n < 0:
        raise SynthError(f"n: expected a non-negative number of cases, found {n}")
    if workers < 1:
        raise SynthError(f"workers: expected >= 1, found {workers}")
    gen_seed = getattr(generator, "seed", None)
    if seed is None:
        seed = gen_seed if gen_seed is not None else 0
    elif gen_seed is not None and int(gen_seed) != int(seed):
        raise SynthError(f"seed {seed} differs from the generator's seed {gen_seed}")
    k, n_shards = _parse_shard(shard)
    out = Path(out_dir)
    for sub in ("imagesTr", "labelsTr", "records"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    _check_run(out, _run_info(generator, seed))
    # leftovers of a killed run (temp files are dot-files, never counted as cases)
    for sub in ("imagesTr", "labelsTr", "records"):
        for tmp in [*(out / sub).glob(".*.tmp*"), *(out / sub).glob(".tmp-*")]:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass

    done = _done_cases(out)
    todo = [i for i in range(k, n, n_shards) if i not in done]
    skipped = len(range(k, n, n_shards)) - len(todo)
    t0 = time.perf_counter()
    for _ in _iterate_cases(generator, out, todo, workers, progress, skipped):
        pass
    seconds = time.perf_counter() - t0
    records = _write_indexes(generator, out, seed)
    run_records = [r for r in records if r.get("index", -1) < n]
    return {
        "out_dir": str(out),
        "written": len(todo),
        "skipped": skipped,
        "total_done": len(records),
        "seconds": seconds,
        "generator_summary": generator.summary(run_records),
    }


def _iterate_cases(generator: SampleGenerator, out: Path, todo: list[int], workers: int,
                   progress: bool, skipped: int) -> Iterable[dict[str, Any]]:
    """Write the cases of ``todo`` (in this process or a spawned pool), yielding records.

    Ctrl-C stops the workers at once (unfinished cases are dropped; finished ones are kept,
    each written atomically) and raises :class:`anatomix.errors.Interrupted` saying what was
    kept and how to resume.
    """
    from anatomix.progress import progress_bar

    note = f"resuming: {skipped} finished case(s) kept" if skipped else None
    written = 0

    def interrupted() -> Interrupted:
        if written == 0 and skipped == 0:  # the command removes the folder it made for this run
            return Interrupted(f"interrupted before the first case was written ({len(todo)} not written); "
                               "run the command again")
        return Interrupted(f"interrupted: {written} case(s) written by this run and {skipped} "
                           f"earlier ones are kept in {out} ({len(todo) - written} not written); "
                           "run the same command again to resume (finished cases are skipped, "
                           "the output is the same)")

    with progress_bar("synth", len(todo), enabled=progress, note=note) as advance:
        if workers == 1 or len(todo) <= 1:
            try:
                for i in todo:
                    rec = _write_case(generator, out, i)
                    written += 1
                    advance()
                    yield rec
            except KeyboardInterrupt:
                raise interrupted() from None
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                   initializer=_worker_init,
                                   initargs=(generator, str(out), os.getpid()))
        try:
            for rec in pool.map(_worker_case, todo, chunksize=1):
                written += 1
                advance()
                yield rec
        except KeyboardInterrupt:
            procs = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.join(5)
            raise interrupted() from None
        except BaseException:
            procs = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            raise
        else:
            pool.shutdown(wait=True)
