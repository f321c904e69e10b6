"""Named random streams: study seed -> replication -> one stream per purpose.

A stream is keyed by (study seed, replication index, stream name) and nothing else: not the
architecture, the scenario, the process or the machine. So every architecture and every scenario
of replication r draws the same arrivals and sizes (common random numbers), and a result never
depends on where it ran.
"""

from __future__ import annotations

import zlib

import numpy as np

ARRIVALS = "arrivals"
PROMPT_TOKENS = "prompt_tokens"
OUTPUT_TOKENS = "output_tokens"
CLASSES = "classes"  # which class of a mixture each request belongs to
ROUTING = "routing"  # `routing: random`: which instance each request is sent to


def stream_key(name: str) -> int:
    """A stable integer for a stream name (CRC-32, the same on every platform and run)."""
    return zlib.crc32(name.encode("utf-8"))


def seed_sequence(seed: int, replication: int, name: str) -> np.random.SeedSequence:
    """The SeedSequence of one named stream: a child of the study's root sequence."""
    return np.random.SeedSequence(entropy=seed, spawn_key=(replication, stream_key(name)))


def stream(seed: int, replication: int, name: str) -> np.random.Generator:
    """A fresh Generator for one purpose in one replication."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, replication, name)))
