from __future__ import annotations

import uuid

import numpy as np

from pipemon.sim import noise


def test_scalar_and_array_mixers_agree() -> None:
    xs = np.array([0, 1, 2**40 + 17, 2**63 + 5, 2**64 - 1], dtype=np.uint64)
    assert noise.mix64_array(xs).tolist() == [noise.mix64(int(x)) for x in xs]


def test_uniforms_are_open_unit_interval_and_roughly_uniform() -> None:
    u = noise.uniform(7, 3, noise.Stream.JITTER, np.arange(0, 20_000 * 60_000, 60_000, dtype=np.int64))
    assert u.min() > 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01
    z = noise.normal(7, 3, noise.Stream.ROWS_A, noise.Stream.ROWS_B, np.arange(20_000, dtype=np.int64))
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03


def test_uuid_formatting_matches_the_stdlib_and_is_version_7() -> None:
    ms = np.array([1736121600000, 1736125200000], dtype=np.int64)
    hi, lo = noise.uuid7_parts(ms, noise.bits(1, 2, noise.Stream.RUN_ID_HI, ms),
                               noise.bits(1, 2, noise.Stream.RUN_ID_LO, ms))
    texts = noise.uuid_strings(hi, lo)
    for h, low, text in zip(hi.tolist(), lo.tolist(), texts, strict=True):
        u = uuid.UUID(int=(h << 64) | low)
        assert str(u) == text == noise.uuid_string(h, low)
        assert u.version == 7 and u.variant == uuid.RFC_4122
        derived = uuid.UUID(noise.derived_uuid(h, low, 3))
        assert derived.version == 7 and derived != u
