"""Data modules: an endless on-the-fly synthetic stream, synthetic files, and real CT.

Every batch, synthetic or real, is a dict with ``image`` (B, 1, X, Y, Z) float32 in [0, 1] and
``label`` (B, 1, X, Y, Z) integer class indices, cropped to the same patch size, so that
pre-training batches look like fine-tuning batches. Arrays are (x, y, z) RAS inside anatomix;
the channel axis is added only here, at the torch boundary.

Randomness: the synthetic stream draws sample ``index`` of run ``seed`` from
``anatomix.synth`` (counter-based) and crops it with ``anatomix.rng.sample_rng(seed, index,
CROP_STREAM)``; the real-data augmentation is seeded from the module's ``seed`` through the
DataLoader's own ``torch.Generator``. Nothing touches global random state.
"""
# size: two data modules (synthetic stream, real data) share the label look-up, flip and datalist helpers;
# splitting them apart is planned (train/real.py) once the module API settles.

from __future__ import annotations

import glob
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from monai.transforms.transform import Randomizable
from torch.utils.data import IterableDataset, get_worker_info

from anatomix.errors import ConfigError
from anatomix.io import IMAGE_SUFFIXES, is_dicom_folder, resample_label_map
from anatomix.output_labels import IGNORE_NAME
from anatomix.rng import sample_rng

__all__ = [
    "CROP_STREAM",
    "VAL_INDEX_OFFSET",
    "RealDataModule",
    "SynthDataModule",
    "SynthStream",
    "build_label_lut",
    "crop_or_pad",
    "load_datalist",
    "nnunet_datalist",
    "stream_indices",
]

log = logging.getLogger(__name__)

#: rng stream of a synthetic sample used for cropping (the synthesis uses low stream numbers).
CROP_STREAM = 9001
#: validation samples of the on-the-fly stream use indices from here on (disjoint from training).
VAL_INDEX_OFFSET = 2**40
#: a source label named IGNORE_NAME is nnU-Net v2's ignore label (``anatomix synth`` writes one for
#: ``context: {labels: ignore}``); mapped onto classes, it becomes IGNORE_INDEX
IGNORE_INDEX = 255

Intensity = Literal["auto", "minmax", "none"]


# ---- labels ---------------------------------------------------------------------------------

def resolve_source_labels(source: str | Mapping[Any, str] | None) -> dict[int, str] | None:
    """A label table value -> name from a preset name, a JSON/YAML file, or a mapping.

    A JSON file may be an nnU-Net ``dataset.json`` (``labels``: name -> value) or a plain mapping
    value -> name; names outside the anatomix vocabulary are kept (a dataset's own classes).
    See :func:`anatomix.label_tables.load_label_table`.

    Raises:
        InputError: unknown preset, unreadable file, bad entries (all listed, with the file).
    """
    from anatomix.label_tables import load_label_table

    if source is None:
        return None
    return load_label_table(source, strict=False, option="source_labels")


def build_label_lut(source: Mapping[int, str], classes: Sequence[str], ignore_value: int | None = None) -> np.ndarray:
    """Look-up table mapping source label values to class indices (1..len(classes); 0 elsewhere).

    ``ignore_value`` (e.g. 255 from ``context: {labels: ignore}``) maps to itself, so that the
    loss can skip it (``model.ignore_index``).

    Names are compared after ``anatomix.labels.lenient_organ`` (so "Right Kidney" and
    "kidney_right" agree). A class written ``"a+b"`` merges organs a and b.

    Raises:
        ConfigError: a class that no source label provides (the message lists the available names).
    """
    from anatomix.labels import lenient_organ

    by_name: dict[str, list[int]] = {}
    for value, name in source.items():
        by_name.setdefault(lenient_organ(name), []).append(int(value))
    top = max([*source.keys(), 0, -1 if ignore_value is None else int(ignore_value)])
    lut = np.zeros(top + 1, dtype=np.uint8)
    if ignore_value is not None:
        if int(ignore_value) in source:
            raise ConfigError(f"the ignore value {ignore_value} is also the source label of "
                              f"{source[int(ignore_value)]!r}; choose another context.ignore_value")
        lut[int(ignore_value)] = int(ignore_value)
    missing = []
    for ci, cls in enumerate(classes, start=1):
        found = False
        for part in str(cls).split("+"):
            for v in by_name.get(lenient_organ(part), []):
                lut[v] = ci
                found = True
        if not found:
            missing.append(str(cls))
    if missing:
        raise ConfigError(
            f"classes {missing} are not in the source label table; available: "
            f"{', '.join(sorted(by_name)[:40])}{' ...' if len(by_name) > 40 else ''}")
    return lut


def apply_lut(label: np.ndarray, lut: np.ndarray | None) -> np.ndarray:
    """Map label values through ``lut`` (values beyond the table become 0)."""
    if lut is None:
        return label
    lab = np.asarray(label).astype(np.int64)
    lab = np.where((lab >= 0) & (lab < len(lut)), lab, 0)
    return lut[lab]


# ---- geometry helpers -----------------------------------------------------------------------

def crop_or_pad(
    image: np.ndarray, label: np.ndarray, patch: Sequence[int], rng: np.random.Generator,
    pos_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """A random patch of (x, y, z) arrays, centred on a foreground voxel with probability
    ``pos_fraction``; arrays smaller than the patch are zero-padded (centred)."""
    patch = tuple(int(p) for p in patch)
    pad = [max(0, p - s) for p, s in zip(patch, image.shape)]
    if any(pad):
        widths = [(d // 2, d - d // 2) for d in pad]
        image = np.pad(image, widths)
        label = np.pad(label, widths)
    shape = image.shape
    if tuple(shape) == patch:
        return image, label
    fg = np.flatnonzero(label)
    if fg.size and rng.random() < pos_fraction:
        centre = np.unravel_index(fg[rng.integers(fg.size)], shape)
    else:
        centre = tuple(int(rng.integers(s)) for s in shape)
    start = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, shape)]
    sl = tuple(slice(a, a + p) for a, p in zip(start, patch))
    return image[sl], label[sl]


def scale_intensity(image: np.ndarray, mode: Intensity) -> np.ndarray:
    """Bring a synthetic image to [0, 1]: ``auto`` leaves [0, 1] images alone and min-max scales others."""
    image = np.asarray(image, dtype=np.float32)
    if mode == "none":
        return image
    lo, hi = float(image.min()), float(image.max())
    if mode == "auto" and lo >= 0.0 and hi <= 1.0:
        return image
    return ((image - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(image)


def stream_indices(start: int, global_worker: int, total_workers: int) -> Iterator[int]:
    """Sample indices of one worker: start + global_worker, then every ``total_workers``-th."""
    i = start + global_worker
    while True:
        yield i
        i += total_workers


# ---- synthetic stream -----------------------------------------------------------------------

class _GeneratorFactory:
    """Picklable recipe that builds the synthesis generator inside each worker.

    Args:
        synth_config: a synthesis YAML path or an already-parsed mapping (with ``mode``).
        seed: run seed.
        device: torch device of the generation work.
        overrides: top-level fields replaced before validation (e.g. ``{"shape": [64, 64, 64]}``).
    """

    def __init__(self, synth_config: str | Mapping[str, Any], seed: int, device: str = "cpu",
                 overrides: Mapping[str, Any] | None = None) -> None:
        self.synth_config = synth_config
        self.seed = int(seed)
        self.device = device
        self.overrides = dict(overrides or {})

    def config(self) -> Any:
        from anatomix.config import validate_synth_config

        if isinstance(self.synth_config, Mapping):
            data, source = dict(self.synth_config), "data.synth_config"
        else:
            from anatomix.resources import resolve, resolve_synth_paths
            from anatomix.safeload import load_yaml_file

            p = resolve("config", self.synth_config)  # a path, or a shipped name (synth, fdif)
            data, source = load_yaml_file(p), str(p)
            if isinstance(data, dict):  # graph/bank written in the file: relative to the file
                data = resolve_synth_paths(data, p.parent, where=source)
        if self.overrides:
            if not isinstance(data, dict):
                raise ConfigError(f"{source}: expected a mapping")
            from anatomix.resources import resolve_synth_paths

            data = _deep_merge(data, resolve_synth_paths(self.overrides, None, where="data.overrides"))
            source += " (with data.overrides)"
        return validate_synth_config(data, source=source)

    def __call__(self) -> Any:
        from anatomix import synth

        return synth.build_generator(self.config(), seed=self.seed, device=self.device)


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _same_patches(k: int, patch: Sequence[int], shape: Sequence[int]) -> ConfigError:
    return ConfigError(
        f"data.num_samples: {k} patches of {list(patch)} from samples of {[int(n) for n in shape]} would all be "
        f"the whole sample, the same patch {k} times; use num_samples 1, or a grid larger than the patch "
        "(e.g. data.overrides grid fov whole)")


def _patches_per_sample(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"data.num_samples: expected a whole number of patches per generated sample, "
                          f">= 1; found {n!r}")
    return int(n)


class SynthStream(IterableDataset):
    """Endless stream of synthetic patches generated on the fly.

    Worker w of rank r (``num_workers`` per rank, ``world_size`` ranks) draws indices
    ``start_index + g, start_index + g + T, ...`` with ``g = r * num_workers + w`` and
    ``T = world_size * num_workers``: disjoint across workers and ranks, and reproducible.

    Args:
        factory: zero-argument callable building the generator (``sample(index)``, ``label_names()``).
        seed: the synthesis seed (used for the crop streams).
        patch_size: (x, y, z) output patch.
        start_index: first index of this run (resume).
        rank / world_size: distributed position (set by the data module from the trainer).
        lut: label look-up table to the fine-tuning class set, or None.
        pos_fraction: probability of a foreground-centred crop.
        intensity: see :func:`scale_intensity`.
        num_samples: patches cropped from each generated sample, one after another (MONAI's
            ``num_samples``): they come from one crop stream of the sample, so its first patch is
            the patch of ``num_samples=1``.
        samples_per_call: samples the generator renders in one call (FDIF mode's batched renderer,
            ``FdifGenerator.sample_batch``; pays on a GPU). 1 renders one at a time.
    """

    def __init__(self, factory: Callable[[], Any], seed: int, patch_size: Sequence[int],
                 start_index: int = 0, rank: int = 0, world_size: int = 1,
                 lut: np.ndarray | None = None, pos_fraction: float = 0.5,
                 intensity: Intensity = "auto", num_samples: int = 1, samples_per_call: int = 1) -> None:
        super().__init__()
        self.factory = factory
        self.seed = int(seed)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.start_index = int(start_index)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.lut = lut
        self.pos_fraction = float(pos_fraction)
        self.intensity = intensity
        self.num_samples = _patches_per_sample(num_samples)
        if int(samples_per_call) < 1:
            raise ConfigError(f"data.samples_per_call: expected 1 or more, found {samples_per_call}")
        self.samples_per_call = int(samples_per_call)
        self._generator = None

    @property
    def generator(self) -> Any:
        if self._generator is None:
            self._generator = self.factory()
        return self._generator

    def worker_position(self) -> tuple[int, int]:
        """(global worker id, total workers) of the calling process."""
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * nw + wid, self.world_size * nw

    def items(self, index: int, sample: Any = None) -> list[dict[str, Any]]:
        """The ``num_samples`` patches of sample ``index`` (generated here unless ``sample`` is
        given), each a dict of channels-first tensors (``index``: the sample, ``patch``: which of
        its patches)."""
        s = self.generator.sample(int(index)) if sample is None else sample
        if self.num_samples > 1 and all(n <= p for n, p in zip(s.image.shape, self.patch_size)):
            raise _same_patches(self.num_samples, self.patch_size, s.image.shape)
        image = scale_intensity(s.image, self.intensity)
        label = apply_lut(np.asarray(s.label), self.lut).astype(np.uint8)
        rng = sample_rng(self.seed, int(index), CROP_STREAM)
        out = []
        for k in range(self.num_samples):
            im, lb = crop_or_pad(image, label, self.patch_size, rng, self.pos_fraction)
            out.append({
                "image": torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32))[None],
                "label": torch.from_numpy(np.ascontiguousarray(lb).astype(np.int64))[None],
                "index": int(index),
                "patch": k,
            })
        return out

    def item(self, index: int) -> dict[str, Any]:
        """The first patch of sample ``index`` (the patch of ``num_samples=1``)."""
        return self.items(index)[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if get_worker_info() is not None:
            torch.set_num_threads(1)  # one core per worker process
        g, total = self.worker_position()
        indices = stream_indices(self.start_index, g, total)
        if self.samples_per_call == 1:
            for index in indices:
                yield from self.items(index)
        if not hasattr(self.generator, "sample_batch"):
            raise ConfigError(f"data.samples_per_call {self.samples_per_call}: only FDIF-mode generators render "
                              f"several samples per call; this one is {type(self.generator).__name__}. "
                              "Set data.samples_per_call to 1.")
        while True:
            batch = [next(indices) for _ in range(self.samples_per_call)]
            for index, sample in zip(batch, self.generator.sample_batch(batch)):
                yield from self.items(index, sample)


class _SynthVolumes(torch.utils.data.Dataset):
    """Whole synthetic volumes (validation by sliding window), indices from VAL_INDEX_OFFSET."""

    def __init__(self, stream: SynthStream, n: int) -> None:
        self.stream, self.n = stream, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> dict[str, Any]:
        s = self.stream.generator.sample(VAL_INDEX_OFFSET + k)
        image = scale_intensity(s.image, self.stream.intensity)
        label = apply_lut(np.asarray(s.label), self.stream.lut).astype(np.int64)
        return {"image": torch.from_numpy(np.ascontiguousarray(image))[None],
                "label": torch.from_numpy(np.ascontiguousarray(label))[None]}


def _seeded_loader_generator(seed: int, rank: int) -> torch.Generator:
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(rank),))
    g = torch.Generator()
    g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


class SynthDataModule(pl.LightningDataModule):
    """Synthetic pre-training data: generated on the fly (default) or read from ``anatomix synth`` output.

    Args:
        synth_config: synthesis YAML (``configs/fdif.yaml``, ``configs/synth.yaml``) or an inline
            mapping with ``mode``; required unless ``files`` is given.
        files: instead of streaming, a folder written by ``anatomix synth`` (datalist.json /
            nnU-Net layout); its images are already on the synthesis grid and are not resampled.
        seed: synthesis seed; (seed, index) decides every sample.
        start_index: first sample index (continue a run without repeating samples).
        patch_size: (x, y, z) patch, the same as the fine-tuning patch.
        batch_size: generated samples per step and rank (each gives ``num_samples`` patches).
        num_samples: patches cropped from each generated sample (as ``RealDataModule``'s
            ``num_samples``): a step trains on ``batch_size * num_samples`` patches. Above 1 it
            reuses each sample, which pays where the grid is larger than the patch (a whole-abdomen
            field of view) and generation is the bottleneck; patches of one sample are correlated.
        num_workers: DataLoader workers generating samples (each uses one thread).
        classes: map the generator's label names to this class set (organs not listed become
            background); None keeps the generator's label values.
        num_classes: override the class count (background included) when ``classes`` is None.
        pos_fraction: probability of a foreground-centred crop.
        intensity: ``auto`` (keep [0, 1] images, min-max scale others), ``minmax`` or ``none``.
        val_samples: whole synthetic volumes for validation (indices from 2**40).
        device: device the generator runs on inside the workers (``cpu``; ``cuda`` with num_workers 0).
        overrides: fields replaced in the loaded synthesis config, merged key by key
            (e.g. ``{graph: graphs/abdomen.yaml, grid: {shape: [64, 64, 64]}}``).
        samples_per_call: FDIF mode: samples rendered per call of the batched renderer (with
            ``device: cuda`` and ``num_workers: 0``, where one call of many volumes pays); a
            sample then agrees with the one-at-a-time sample within the tolerances of
            tests/test_sdf_batch.py, not byte for byte. 1 (default) renders one at a time.
    """

    def __init__(
        self,
        synth_config: str | dict[str, Any] | None = None,
        files: str | None = None,
        seed: int = 0,
        start_index: int = 0,
        patch_size: tuple[int, int, int] = (96, 96, 96),
        batch_size: int = 2,
        num_workers: int = 2,
        classes: list[str] | None = None,
        num_classes: int | None = None,
        pos_fraction: float = 0.5,
        intensity: Intensity = "auto",
        val_samples: int = 2,
        device: str = "cpu",
        overrides: dict[str, Any] | None = None,
        num_samples: int = 1,
        samples_per_call: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.synth_config = synth_config
        self.files = files
        self.seed = int(seed)
        self.start_index = int(start_index)
        if len(patch_size) != 3:
            raise ConfigError(f"data.patch_size: expected three sizes (x, y, z), found {list(patch_size)}")
        self.patch_size: tuple[int, int, int] = (int(patch_size[0]), int(patch_size[1]), int(patch_size[2]))
        self.batch_size = int(batch_size)
        self.num_samples = _patches_per_sample(num_samples)
        self.num_workers = int(num_workers)
        self.classes = list(classes) if classes else None
        self._num_classes = num_classes
        self.pos_fraction = pos_fraction
        self.intensity = intensity
        self.val_samples = int(val_samples)
        self.device = device
        self.overrides = overrides
        self.samples_per_call = int(samples_per_call)
        self._files_dm: RealDataModule | None = None
        self._label_names: dict[int, str] | None = None
        self._resumed_step = 0  # the trainer's step when start_index was set from a checkpoint
        if files is not None:
            self._files_dm = RealDataModule(
                datalist=str(Path(files) / "datalist.json") if (Path(files) / "datalist.json").is_file() else None,
                nnunet_dir=None if (Path(files) / "datalist.json").is_file() else files,
                classes=self.classes, source_labels=str(Path(files) / "dataset.json")
                if (Path(files) / "dataset.json").is_file() else None,
                num_classes=num_classes, patch_size=self.patch_size, spacing_mm=None, ct_window=None,
                batch_size=batch_size, num_samples=self.num_samples, num_workers=num_workers, seed=seed,
                augment=False)

    # -- stream pieces --
    def factory(self) -> _GeneratorFactory:
        if self.synth_config is None:
            raise ConfigError("SynthDataModule needs data.synth_config (a synthesis YAML) or data.files")
        return _GeneratorFactory(self.synth_config, self.seed, self.device, self.overrides)

    def label_names(self) -> dict[int, str]:
        """The generator's label table (value -> name)."""
        if self._label_names is None:
            self._label_names = {int(k): str(v) for k, v in self.factory()().label_names().items()}
        return self._label_names

    def lut(self) -> np.ndarray | None:
        return build_label_lut(self.label_names(), self.classes, self.ignore_index) if self.classes else None

    @property
    def ignore_index(self) -> int | None:
        """The label value the loss should skip: the synthesis config's ``context.ignore_value``
        when ``context.labels`` is ``ignore``, else None; for ``files``, that of their
        dataset.json's ``ignore`` label (see :attr:`RealDataModule.ignore_index`)."""
        if self._files_dm is not None:
            return self._files_dm.ignore_index
        if self.synth_config is None:
            return None
        ctx = getattr(self.factory().config(), "context", None)  # fdif configs have no context
        return int(ctx.ignore_value) if ctx is not None and ctx.labels == "ignore" else None

    @property
    def num_classes(self) -> int | None:
        """Classes including background (None when ``files`` are given and their classes are unknown)."""
        if self._files_dm is not None:
            return self._files_dm.num_classes
        if self.classes:
            return len(self.classes) + 1
        if self._num_classes is not None:
            return int(self._num_classes)
        return max(self.label_names()) + 1

    def _rank(self) -> tuple[int, int]:
        t = getattr(self, "trainer", None)
        if t is None:
            return 0, 1
        return int(t.global_rank), int(t.world_size)

    def stream(self, rank: int | None = None, world_size: int | None = None) -> SynthStream:
        """The training stream for a given rank (defaults: the trainer's)."""
        r, w = self._rank()
        return SynthStream(
            self.factory(), self.seed, self.patch_size, start_index=self.start_index,
            rank=r if rank is None else rank, world_size=w if world_size is None else world_size,
            lut=self.lut(), pos_fraction=self.pos_fraction, intensity=self.intensity,
            num_samples=self.num_samples, samples_per_call=self.samples_per_call)

    # -- Lightning hooks --
    def setup(self, stage: str | None = None) -> None:
        if self._files_dm is not None:
            self._files_dm.trainer = getattr(self, "trainer", None)
            self._files_dm.setup(stage)

    def _check_num_samples(self) -> None:
        """K > 1 patches of samples no larger than the patch would all be the same: refused here,
        in the main process, where the config gives the sample's shape (a window grid or FDIF's
        shape; whole-abdomen grids are larger than any patch, and the stream checks them too)."""
        if self.num_samples == 1:
            return
        cfg = self.factory().config()
        grid = getattr(cfg, "grid", None)
        shape = (grid.shape if getattr(grid, "fov", "window") == "window" else None) if grid is not None \
            else getattr(cfg, "shape", None)
        if shape is not None and all(int(n) <= p for n, p in zip(shape, self.patch_size)):
            raise _same_patches(self.num_samples, self.patch_size, shape)

    def _check_samples_per_call(self) -> None:
        """Batched rendering is FDIF mode's: refused here, in the main process, before training
        starts (the stream itself only finds out in its first sample, maybe in a worker)."""
        if self.samples_per_call == 1:
            return
        from anatomix.config import FdifSynthConfig

        if not isinstance(self.factory().config(), FdifSynthConfig):
            raise ConfigError(f"data.samples_per_call {self.samples_per_call}: only FDIF-mode synthesis "
                              f"(data.synth_config: fdif.yaml) renders several samples per call; "
                              f"{self.synth_config!r} is not FDIF mode. Set data.samples_per_call to 1.")
        if str(self.device).startswith("cpu"):
            log.warning("data.samples_per_call %d on the CPU: the batched renderer is for GPUs and is 3-6x "
                        "slower on a CPU than one sample at a time (data.samples_per_call 1)", self.samples_per_call)

    def train_dataloader(self) -> Any:
        if self._files_dm is not None:
            return self._files_dm.train_dataloader()
        self._check_num_samples()
        self._check_samples_per_call()
        r, _ = self._rank()
        # a worker batches its own items: batch_size * num_samples of them are batch_size whole samples
        return torch.utils.data.DataLoader(
            self.stream(), batch_size=self.batch_size * self.num_samples, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
            generator=_seeded_loader_generator(self.seed, r))

    def val_dataloader(self) -> Any:
        if self._files_dm is not None:
            return self._files_dm.val_dataloader()
        if self.val_samples <= 0:
            return []
        return torch.utils.data.DataLoader(_SynthVolumes(self.stream(), self.val_samples), batch_size=1,
                                           num_workers=0)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: where a resumed run continues the stream (approximately: the
        samples prefetched by the workers, two batches each, are skipped, never repeated).

        An optimiser step trains ``accumulate_grad_batches`` batches of ``batch_size`` samples per
        rank; only the steps since this run started from ``start_index`` are counted (``step``
        is saved too, so a second resume does not count the first run's steps again).
        """
        t = getattr(self, "trainer", None)
        step = int(t.global_step) if t is not None else 0
        accumulate = max(1, int(getattr(t, "accumulate_grad_batches", 1) or 1)) if t is not None else 1
        _, w = self._rank()
        batches = (step - self._resumed_step) * accumulate + 2 * max(1, self.num_workers)
        return {"next_index": self.start_index + batches * self.batch_size * w, "step": step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "next_index" in state:
            self.start_index = int(state["next_index"])
            self._resumed_step = int(state.get("step", 0))  # older checkpoints: 0 (skips more, never repeats)


# ---- real data ------------------------------------------------------------------------------

def load_datalist(path: str | Path, base_dir: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Read a MONAI/Decathlon datalist: ``{"training": [{image, label}], "validation": [...], "test": [...]}``.

    Read with MONAI's ``load_decathlon_datalist``. An ``image`` may be a list of files (one per
    channel, e.g. CT + PET or several MR contrasts): it stays a list and is loaded as channels.
    Relative paths are resolved against ``base_dir`` (default: the datalist's folder).

    Raises:
        ConfigError: missing file, missing keys, missing images.
    """
    from monai.data import load_decathlon_datalist

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"datalist {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"datalist {p} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"datalist {p}: expected a JSON object with a 'training' list")
    base = Path(base_dir) if base_dir else p.parent
    out: dict[str, list[dict[str, Any]]] = {}
    problems = []
    for key in ("training", "validation", "test"):
        if data.get(key) is None:
            continue
        items = load_decathlon_datalist(p, is_segmentation=True, data_list_key=key, base_dir=base)
        rows = []
        for i, item in enumerate(items):
            row: dict[str, Any] = {}
            for k in ("image", "label"):
                if k not in item:
                    continue
                files = [str(f) for f in item[k]] if isinstance(item[k], (list, tuple)) else [str(item[k])]
                if k == "label" and len(files) != 1:
                    problems.append(f"{p}: {key}[{i}].label: expected one label map, found {len(files)}")
                for f in files:
                    if not Path(f).exists():
                        problems.append(f"{p}: {key}[{i}].{k}: file {f} not found")
                row[k] = files[0] if len(files) == 1 else files
            rows.append(row)
        out[key] = rows
    if "training" not in out:
        problems.append(f"{p}: no 'training' list (expected a MONAI/Decathlon datalist)")
    channels = {len(r["image"]) if isinstance(r.get("image"), list) else 1 for rows in out.values() for r in rows}
    if len(channels) > 1:
        problems.append(f"{p}: expected the same number of image channels in every item, found {sorted(channels)}")
    if problems:
        raise ConfigError("datalist problems:\n  " + "\n  ".join(problems))
    return out


def nnunet_datalist(folder: str | Path) -> tuple[dict[str, list[dict[str, Any]]], dict[int, str]]:
    """Datalist and label table of an nnU-Net v2 raw dataset (imagesTr/<case>_0000, labelsTr/<case>);
    with several ``channel_names`` in dataset.json, each image is the list <case>_0000, _0001, ..."""
    root = Path(folder)
    dj = root / "dataset.json"
    if not dj.is_file():
        raise ConfigError(f"{root} is not an nnU-Net v2 raw dataset: no dataset.json")
    meta = json.loads(dj.read_text())
    ending = meta.get("file_ending", ".nii.gz")
    n_channels = max(1, len(meta.get("channel_names") or meta.get("modality") or {"0": ""}))

    def channels(folder: Path, case: str) -> str | list[str]:
        files = [str(folder / f"{case}_{c:04d}{ending}") for c in range(n_channels)]
        return files[0] if n_channels == 1 else files

    rows = []
    for lab in sorted((root / "labelsTr").glob(f"*{ending}")):
        case = lab.name[: -len(ending)]
        imgs = channels(root / "imagesTr", case)
        for img in [imgs] if isinstance(imgs, str) else imgs:
            if not Path(img).is_file():
                raise ConfigError(f"{root}: label {lab.name} has no image imagesTr/{Path(img).name} "
                                  f"(dataset.json declares {n_channels} channel(s))")
        rows.append({"image": imgs, "label": str(lab)})
    if not rows:
        raise ConfigError(f"{root}: no labelsTr/*{ending} files")
    tests = [{"image": channels(root / "imagesTs", f.name[: -len(f"_0000{ending}")])}
             for f in sorted((root / "imagesTs").glob(f"*_0000{ending}"))]
    names = {int(v): str(k) for k, v in meta.get("labels", {}).items() if not isinstance(v, list)}
    return {"training": rows, **({"test": tests} if tests else {})}, names


class _RemapLabeld:
    """MONAI-style dict transform mapping the ``label`` key through a look-up table."""

    def __init__(self, lut: np.ndarray) -> None:
        self.lut = torch.as_tensor(lut.astype(np.int64))

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        lab = d["label"]
        t = torch.as_tensor(lab).long()
        t = torch.where((t >= 0) & (t < len(self.lut)), t, torch.zeros_like(t))
        mapped = self.lut[t]
        if hasattr(lab, "copy_meta_from"):
            from monai.data import MetaTensor

            mapped = MetaTensor(mapped, affine=lab.affine, meta=lab.meta)
        d["label"] = mapped
        return d


def _predict_files(spec: str | Sequence[str]) -> list[str]:
    """Expand ``predict_files``: files, globs, DICOM-series folders (one image each) and folders of
    images (each image file and each DICOM-series sub-folder)."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            if is_dicom_folder(p):
                out.append(str(p))
                continue
            out += sorted(str(f) for f in p.iterdir()
                          if (f.is_file() and f.name.lower().endswith(IMAGE_SUFFIXES)) or is_dicom_folder(f))
        elif any(c in str(item) for c in "*?["):
            out += sorted(glob.glob(str(item)))
        elif p.is_file():
            out.append(str(p))
        else:
            raise ConfigError(f"predict input {item} does not exist")
    if not out:
        raise ConfigError(f"no images found in {items}")
    return out


class _LabelToImageGridd:
    """Resample ``label`` onto the grid of ``image`` (after ``Spacingd`` on the image) with
    :func:`anatomix.io.resample_label_map`, the package's label resampler (thin organs kept)."""

    def __call__(self, data: dict) -> dict:
        from monai.data import MetaTensor

        d = dict(data)
        img, lab = d["image"], d["label"]
        a_in = np.asarray(torch.as_tensor(lab.affine), dtype=np.float64)
        a_out = np.asarray(torch.as_tensor(img.affine), dtype=np.float64)
        for a, what in ((a_in, "label"), (a_out, "image")):
            if not np.allclose(a[:3, :3], np.diag(np.diag(a[:3, :3])), atol=1e-4) or (np.diag(a[:3, :3]) <= 0).any():
                raise ConfigError(f"the {what} grid is not axis-aligned RAS (affine {a[:3, :3].tolist()}); "
                                  "read images through anatomix.train.reader.AnatomixReader")
        arr = np.asarray(torch.as_tensor(lab)[0]).astype(np.int64)
        out = resample_label_map(arr, np.diag(a_in)[:3].tolist(), a_in[:3, 3].tolist(), np.diag(a_out)[:3].tolist(),
                                 a_out[:3, 3].tolist(), tuple(img.shape[1:]))
        d["label"] = MetaTensor(torch.from_numpy(out[None]).to(torch.as_tensor(lab).dtype), affine=img.affine,
                                meta=dict(lab.meta))
        d["label"].affine = img.affine
        return d


def lateral_swap_table(names: Mapping[int, str]) -> np.ndarray:
    """Look-up table value -> value with every left/right pair of ``names`` (value -> organ) swapped."""
    from anatomix.labels import lateral_pairs, lenient_organ

    organ = {int(v): lenient_organ(str(n)) for v, n in names.items()}
    value_of = {n: v for v, n in organ.items()}
    table = np.arange(max(organ, default=0) + 1, dtype=np.int64)
    for left, right in lateral_pairs(organ.values()):
        table[value_of[left]], table[value_of[right]] = value_of[right], value_of[left]
    return table


class _RandLeftRightFlipd(Randomizable):
    """Mirror along x (RAS left-right; channels-first arrays) with probability ``prob`` and swap
    the labels of every lateral pair, so a flipped left kidney is labelled as the right kidney.

    MONAI-compatible: ``set_random_state`` is honoured (seeded like MONAI's own random transforms).
    """

    def __init__(self, keys: Sequence[str], prob: float, swap: np.ndarray | None) -> None:
        import monai.transforms as T

        self.keys = list(keys)
        self.prob = float(prob)
        self.swap = None if swap is None else torch.as_tensor(swap)
        self._flip = T.Flipd(keys=self.keys, spatial_axis=0)
        self._do = False

    def randomize(self, data: Any = None) -> None:
        self._do = bool(self.R.rand() < self.prob)

    def __call__(self, data: dict) -> dict:
        self.randomize()
        if not self._do:
            return dict(data)
        d = self._flip(dict(data))
        if self.swap is not None and "label" in d:
            lab = d["label"]
            values = torch.as_tensor(lab).long()
            n = len(self.swap)
            swapped = torch.where(values < n, self.swap[values.clamp(0, n - 1)], values)
            d["label"] = lab.clone().copy_(swapped.to(values.dtype)) if hasattr(lab, "copy_") else swapped
        return d


class RealDataModule(pl.LightningDataModule):
    """Real CT for fine-tuning, validation, testing and prediction (the BTCV recipe).

    Preprocessing: orientation RAS, spacing ``spacing_mm`` (1.5 x 1.5 x 2.0), CT window
    ``ct_window`` (-175..250 HU) to [0, 1], crop to the body; training adds foreground-biased
    random crops of ``patch_size`` (``num_samples`` per volume, positive:negative 1:1), random
    flips along each axis, random 90-degree rotations, intensity scaling and shifting.

    Args:
        datalist: MONAI/Decathlon datalist JSON (``training``, optional ``validation``/``test``).
        nnunet_dir: alternatively an nnU-Net v2 raw dataset folder.
        base_dir: folder that relative datalist paths start from (default: the datalist's).
        classes: target class names (class 1, 2, ...); source labels are mapped by organ name.
        source_labels: the source label table: preset name (``totalsegmentator``, ``btcv``, ...),
            a JSON/YAML file (nnU-Net ``dataset.json`` or value -> name), or a mapping. Defaults to
            the nnU-Net dataset's own labels.
        num_classes: class count (background included) when ``classes`` is not given.
        patch_size, spacing_mm, ct_window: see above; ``spacing_mm``/``ct_window`` None skip the
            step (synthetic files already on their grid and in [0, 1]).
        batch_size: volumes per step (each gives ``num_samples`` patches).
        val_fraction: share of training cases held out when the datalist has no ``validation``;
            with a single case, that case is used for both.
        seed: split and augmentation seed.
        augment: the random flips/rotations/intensity changes (crops always happen).
        cache: keep preprocessed volumes in memory.
        predict_files: images (files, folders or globs) for ``anatomix predict``.
    """

    def __init__(
        self,
        datalist: str | None = None,
        nnunet_dir: str | None = None,
        base_dir: str | None = None,
        classes: list[str] | None = None,
        source_labels: str | dict[int, str] | None = None,
        num_classes: int | None = None,
        patch_size: tuple[int, int, int] = (96, 96, 96),
        spacing_mm: tuple[float, float, float] | None = (1.5, 1.5, 2.0),
        ct_window: tuple[float, float] | None = (-175.0, 250.0),
        batch_size: int = 1,
        num_samples: int = 4,
        num_workers: int = 2,
        val_fraction: float = 0.2,
        seed: int = 0,
        augment: bool = True,
        cache: bool = True,
        predict_files: list[str] | str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datalist_path = datalist
        self.nnunet_dir = nnunet_dir
        self.base_dir = base_dir
        self.classes = list(classes) if classes else None
        self.source_labels = source_labels
        self._num_classes = num_classes
        self.patch_size = tuple(int(p) for p in patch_size)
        self.spacing_mm = tuple(spacing_mm) if spacing_mm else None
        self.ct_window = tuple(ct_window) if ct_window else None
        self.batch_size = batch_size
        self.num_samples = num_samples
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.augment = augment
        self.cache = cache
        self.predict_files = predict_files
        self._lists: dict[str, list[dict[str, str]]] | None = None
        self._source: dict[int, str] | None = None
        self.train_ds = self.val_ds = self.test_ds = self.predict_ds = None

    # -- lists and labels --
    def _load_lists(self) -> dict[str, list[dict[str, str]]]:
        if self._lists is not None:
            return self._lists
        if self.datalist_path:
            lists = load_datalist(self.datalist_path, self.base_dir)
            self._source = resolve_source_labels(self.source_labels)
        elif self.nnunet_dir:
            lists, names = nnunet_datalist(self.nnunet_dir)
            self._source = resolve_source_labels(self.source_labels) or names
        else:
            lists, self._source = {}, resolve_source_labels(self.source_labels)
        if lists and "validation" not in lists:
            train = lists["training"]
            if len(train) == 1:
                log.warning("a single training case: it is used for validation too")
                lists["validation"] = list(train)
            else:
                rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(0,)))
                order = rng.permutation(len(train))
                n_val = max(1, int(round(self.val_fraction * len(train))))
                lists["validation"] = [train[i] for i in sorted(order[:n_val])]
                lists["training"] = [train[i] for i in sorted(order[n_val:])]
        self._lists = lists
        return lists

    def _source_ignore(self) -> int | None:
        """The source value of an ``ignore`` label (nnU-Net v2's convention), or None."""
        self._load_lists()
        return next((int(v) for v, n in (self._source or {}).items() if n == IGNORE_NAME), None)

    def lut(self) -> np.ndarray | None:
        self._load_lists()
        if not self.classes:
            return None
        if self._source is None:
            raise ConfigError("data.classes needs data.source_labels (a preset such as 'totalsegmentator', "
                              "or a dataset.json) to know which source label is which organ")
        ignore = self._source_ignore()
        if ignore is None:
            return build_label_lut(self._source, self.classes)
        if len(self.classes) >= IGNORE_INDEX:
            raise ConfigError(f"data.classes: expected at most {IGNORE_INDEX - 1} classes with an ignore label "
                              f"(mapped to {IGNORE_INDEX}), found {len(self.classes)}")
        lut = build_label_lut({v: n for v, n in self._source.items() if v != ignore}, self.classes)
        if len(lut) <= ignore:
            lut = np.concatenate([lut, np.zeros(ignore + 1 - len(lut), dtype=lut.dtype)])
        lut[ignore] = IGNORE_INDEX
        return lut

    @property
    def ignore_index(self) -> int | None:
        """The label value the loss should skip: where the source labels have an ``ignore`` label,
        IGNORE_INDEX (255) once mapped onto ``classes``, else its own value; None without one."""
        ignore = self._source_ignore()
        if ignore is None:
            return None
        return IGNORE_INDEX if self.classes else ignore

    def lateral_swap(self) -> np.ndarray | None:
        """Label value -> its mirror's value (kidney_left <-> kidney_right, every lateral pair of
        :func:`anatomix.labels.lateral_pairs`) in the training label space; None without names."""
        self._load_lists()
        if self.classes:
            names = {i + 1: n for i, n in enumerate(self.classes)}
        elif self._source:
            names = dict(self._source)
        else:
            return None
        return lateral_swap_table(names)

    @property
    def num_classes(self) -> int | None:
        """Classes including background (None when unknown)."""
        if self.classes:
            return len(self.classes) + 1
        if self._num_classes is not None:
            return int(self._num_classes)
        self._load_lists()
        ignore = self._source_ignore()
        values = [v for v in (self._source or {}) if v != ignore]
        return max(values) + 1 if values else None

    # -- transforms --
    def _base(self, keys: list[str]) -> list[Any]:
        import monai.transforms as T

        from anatomix.train.reader import AnatomixReader

        # Read through anatomix.io (SimpleITK): NIfTI, NRRD, MHA/MHD and DICOM-series folders,
        # as RAS arrays with their RAS affine (Orientationd is then a no-op, Spacingd works as usual).
        # MONAI annotates LoadImaged(reader=) as a class or name, but documents and accepts an
        # ImageReader instance (it is registered as is): the annotation is wrong, not this call.
        t: list[Any] = [T.LoadImaged(keys=[k], reader=AnatomixReader("label" if k == "label" else "image"),  # type: ignore[arg-type]
                                     image_only=True) for k in keys]
        t += [
            T.EnsureChannelFirstd(keys=keys),
            T.EnsureTyped(keys=["image"], dtype=torch.float32),
            T.Orientationd(keys=keys, axcodes="RAS"),
        ]
        if self.spacing_mm:
            t.append(T.Spacingd(keys=["image"], pixdim=self.spacing_mm, mode="bilinear"))
            if "label" in keys:  # labels onto the image's new grid by io.resample_label_map (no aliasing)
                t.append(_LabelToImageGridd())
        if self.ct_window:
            t.append(T.ScaleIntensityRanged(keys=["image"], a_min=self.ct_window[0], a_max=self.ct_window[1],
                                            b_min=0.0, b_max=1.0, clip=True))
        else:
            t.append(T.ScaleIntensityd(keys=["image"], minv=0.0, maxv=1.0))
        if "label" in keys:
            lut = self.lut()
            if lut is not None:
                t.append(_RemapLabeld(lut))
        return t

    def transforms(self, stage: Literal["train", "val", "predict"]) -> Any:
        """The MONAI Compose for a stage."""
        import monai.transforms as T

        if stage == "predict":
            return T.Compose(self._base(["image"]))
        keys = ["image", "label"]
        t = self._base(keys)
        t.append(T.CropForegroundd(keys=keys, source_key="image", allow_smaller=True))
        if stage == "train":
            t += [
                T.SpatialPadd(keys=keys, spatial_size=self.patch_size),
                T.RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=self.patch_size, pos=1,
                                         neg=1, num_samples=self.num_samples, image_key="image",
                                         image_threshold=0),
            ]
            if self.augment:
                t += [
                    _RandLeftRightFlipd(keys=keys, prob=0.1, swap=self.lateral_swap()),
                    T.RandFlipd(keys=keys, prob=0.1, spatial_axis=1),
                    T.RandFlipd(keys=keys, prob=0.1, spatial_axis=2),
                    T.RandRotate90d(keys=keys, prob=0.1, max_k=3),
                    T.RandScaleIntensityd(keys=["image"], factors=0.1, prob=0.1),
                    T.RandShiftIntensityd(keys=["image"], offsets=0.1, prob=0.5),
                ]
        t.append(T.EnsureTyped(keys=["label"], dtype=torch.int64))
        return T.Compose(t)

    # -- Lightning hooks --
    def _rank(self) -> int:
        t = getattr(self, "trainer", None)
        return int(t.global_rank) if t is not None else 0

    def _dataset(self, rows: list[dict[str, str]], stage: Literal["train", "val", "predict"]) -> Any:
        from monai.data import CacheDataset, Dataset

        tf = self.transforms(stage)
        if self.cache and stage != "predict":
            return CacheDataset(rows, tf, cache_rate=1.0, num_workers=0, progress=False)
        return Dataset(rows, tf)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate", "test"):
            lists = self._load_lists()
            if not lists:
                raise ConfigError("RealDataModule needs data.datalist or data.nnunet_dir for training/validation")
            if stage in (None, "fit") and self.train_ds is None:
                self.train_ds = self._dataset(lists["training"], "train")
            if stage in (None, "fit", "validate") and self.val_ds is None:
                self.val_ds = self._dataset(lists["validation"], "val")
            if stage == "test" and self.test_ds is None:
                rows = [r for r in lists.get("test", []) if "label" in r] or lists["validation"]
                self.test_ds = self._dataset(rows, "val")
        if stage == "predict":
            if not self.predict_files:
                raise ConfigError("`anatomix predict` needs --data.predict_files (images, folders or globs)")
            self._load_lists()
            self.predict_ds = self._dataset([{"image": f} for f in _predict_files(self.predict_files)], "predict")

    def _loader(self, ds: Any, shuffle: bool, batch_size: int) -> Any:
        from monai.data import DataLoader

        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=False, generator=_seeded_loader_generator(self.seed, self._rank()))

    def train_dataloader(self) -> Any:
        return self._loader(self.train_ds, True, self.batch_size)

    def val_dataloader(self) -> Any:
        return self._loader(self.val_ds, False, 1)

    def test_dataloader(self) -> Any:
        return self._loader(self.test_ds, False, 1)

    def predict_dataloader(self) -> Any:
        return self._loader(self.predict_ds, False, 1)
