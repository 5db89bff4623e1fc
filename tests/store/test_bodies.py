"""Raw event bodies are stored compressed, with a dictionary trained on the stream, and read back exactly;
rows stored before compression read back too. On SQLite and PostgreSQL."""
from __future__ import annotations

import msgspec
import pytest
import zstandard

from pipemon import sim
from pipemon.app import build
from pipemon.ingest import native, openlineage
from pipemon.store import bodies
from pipemon.store.bodies import MAGIC, BodyCodec, BodyReader, read_bodies

_ENC = msgspec.json.Encoder()


def demo_events(n: int) -> list:
    """The first n events of the demo fleet's OpenLineage stream, parsed as the front door does."""
    feeder = sim.Feeder(sim.build_fleet(0, 240), sim.DEFAULT_START)
    out: list = []
    for ev in feeder.history(sim.DEFAULT_START, sim.DEFAULT_START + 86400):
        out += openlineage.parse(_ENC.encode(ev), sim.DEFAULT_START + 86400)
        if len(out) >= n:
            return out[:n]
    raise AssertionError("the demo stream is shorter than asked")


@pytest.fixture
def small_windows(monkeypatch):
    monkeypatch.setattr(bodies, "SAMPLES", 100)
    monkeypatch.setattr(bodies, "RETRAIN_EVERY", 400)


def stored(pm) -> list[bytes]:
    with pm.db.connect() as c:
        return [bytes(r[0]) for r in c.exec_driver_sql("SELECT body FROM events ORDER BY id")]


def test_bodies_are_compressed_and_read_back_exactly(pm, small_windows):
    events = demo_events(600)
    for i in range(0, 600, 50):
        pm.writer.ingest(events[i:i + 50])
    raw = stored(pm)
    assert len(raw) == 600 and all(b.startswith(MAGIC) for b in raw)
    with pm.db.connect() as c:
        assert read_bodies(c) == [e.raw for e in events]
        dicts = c.exec_driver_sql("SELECT id, event_id FROM event_dicts ORDER BY id").all()
    # trained after the first 100 bodies, and again once 400 more were stored
    assert [d[0] for d in dicts] == [1, 2] and dicts[0][1] == 100
    ids = [zstandard.get_frame_parameters(b).dict_id for b in raw]
    assert ids[:100] == [0] * 100 and set(ids[100:500]) == {1} and ids[-1] == 2
    with_dict = sum(map(len, raw[100:500])) / 400
    alone = sum(map(len, raw[:100])) / 100
    ratio = sum(len(e.raw) for e in events[100:500]) / 400 / with_dict
    assert with_dict < alone / 2 and ratio > 5, (with_dict, alone, ratio)


def test_rows_stored_before_compression_still_read(pm):
    [ev] = native.parse(b'{"pipeline": "old/job", "type": "COMPLETE", "run_id": "r1"}', 1_790_000_000.0)
    pm.writer.ingest([ev])
    pid = pm.writer.pipelines["old/job"].id
    with pm.db.begin() as c:  # as 0005 and earlier stored it: the JSON as received
        c.exec_driver_sql(bodies._sql(c, "INSERT INTO events (key, pipeline_id, run_id, type, source, time, "
                                         "received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                          ("k" * 32, pid, "r0", "COMPLETE", "native", 1.0, 1.0, b'{"legacy": true}'))
    with pm.db.connect() as c:
        assert sorted(read_bodies(c)) == sorted([ev.raw, b'{"legacy": true}'])


def test_a_dictionary_from_a_rolled_back_transaction_is_never_used(pm, small_windows):
    codec = BodyCodec()
    samples = [e.raw for e in demo_events(100)]
    with pm.db.connect() as c:
        tx = c.begin()
        codec.load(c)
        for s in samples:
            codec.encode(s)
        codec.maybe_train(c, 0.0)
        assert zstandard.get_frame_parameters(codec.encode(samples[0])).dict_id == 1
        tx.rollback()
        with c.begin():
            codec.load(c)  # what the writer does after every rollback
            assert c.exec_driver_sql("SELECT COUNT(*) FROM event_dicts").scalar_one() == 0
        assert zstandard.get_frame_parameters(codec.encode(samples[0])).dict_id == 0


def test_after_a_restart_the_stored_dictionary_is_used(db_url, small_windows):
    events = demo_events(300)
    pm = build(db_url, deliver=False)
    pm.writer.ingest(events[:200])
    pm.close()
    pm = build(db_url, deliver=False)
    try:
        pm.writer.ingest(events[200:])
        raw = stored(pm)
        assert zstandard.get_frame_parameters(raw[-1]).dict_id == 1
        with pm.db.connect() as c:
            assert c.exec_driver_sql("SELECT COUNT(*) FROM event_dicts").scalar_one() == 1
            assert read_bodies(c) == [e.raw for e in events]
    finally:
        pm.close()


def test_a_missing_dictionary_is_a_clear_error(pm, small_windows):
    events = demo_events(150)
    pm.writer.ingest(events[:100])  # trains dictionary 1 after these
    pm.writer.ingest(events[100:])
    with pm.db.begin() as c:
        c.exec_driver_sql("DELETE FROM event_dicts")
    with pm.db.connect() as c:
        last = c.exec_driver_sql("SELECT body FROM events ORDER BY id DESC LIMIT 1").scalar_one()
        with pytest.raises(LookupError, match="dictionary 1, which is not stored"):
            BodyReader(c).decode(last)
