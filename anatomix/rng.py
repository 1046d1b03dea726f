"""Counter-based randomness: (seed, sample index) decides a sample.

Every random function in anatomix takes its generator as an argument. A sample's generators
are derived from ``SeedSequence(seed, spawn_key=(index,))`` rather than ``seed + index``, so
run 0 sample 1 never equals run 1 sample 0, and a sample is the same whatever the worker
count, shard or order in which it is produced.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_rng"]


def sample_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """A numpy Generator for sample ``index`` of run ``seed``.

    ``stream`` separates independent purposes within one sample (placement, appearance, ...),
    so adding draws to one stage never shifts the draws of another.
    """
    ss = np.random.SeedSequence(seed, spawn_key=(index, stream))
    return np.random.Generator(np.random.PCG64(ss))
