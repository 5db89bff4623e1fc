"""Raw event bodies, compressed: zstd with a dictionary trained on this database's own events.

An OpenLineage event is ~2 KB of JSON, most of it the same facet names, `_producer` and `_schemaURL` strings
in every event; compressed alone it is ~650 B, with a dictionary of what events here look like ~130 B. The
writer compresses each body as it stores it (`BodyCodec.encode`, ~2 µs), and trains a dictionary from the
first SAMPLES bodies it sees, then again every RETRAIN_EVERY events (so a fleet whose producers change gets
a new one); each is kept in `event_dicts`, keyed by the id written in every frame that uses it.

A stored body is one of: NULL (a ping), a zstd frame (magic 28 b5 2f fd; its header names its dictionary,
or none), or, in rows written before migration 0007, the JSON as received (which starts with `{` or `[`,
never the magic). `BodyReader.decode` reads all three.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

import zstandard
from sqlalchemy.engine import Connection

from pipemon.store.writes import _sql

log = logging.getLogger(__name__)

MAGIC = b"\x28\xb5\x2f\xfd"
LEVEL = 3                 # zstd's default: with a dictionary ~2 µs a body; higher levels gain ~10 % for 6x
DICT_SIZE = 64 * 1024     # bytes of dictionary; 16-64 KB all give ~120-130 B a demo event
SAMPLES = 1_000           # bodies a dictionary is trained on (~40 ms of training, once)
MAX_SAMPLE = 64 * 1024    # larger bodies are not typical of the stream: not sampled
RETRAIN_EVERY = 250_000   # events between two dictionaries


class BodyCodec:
    """The writer's side: compresses bodies with the newest dictionary and trains the next one.

    Not thread-safe: only the single writer uses it, inside its transaction. `load()` after every
    rollback (the writer reloads its state then), so a dictionary trained in a rolled-back transaction
    is never used."""

    def __init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=LEVEL)
        self._dict_id = 0
        self._since = 0            # events stored since the current dictionary was trained
        self._sample_from = 0      # ... from which count on bodies are sampled for the next one
        self._samples: list[bytes | bytearray | memoryview] = []

    def load(self, conn: Connection) -> None:
        q = "SELECT id, event_id, dict FROM event_dicts ORDER BY id DESC LIMIT 1"
        row = conn.exec_driver_sql(q).first()
        self._samples = []
        if row is None:
            self._compressor, self._dict_id, self._since = zstandard.ZstdCompressor(level=LEVEL), 0, 0
            self._sample_from = 0
            return
        self._use(row[0], bytes(row[2]))
        last = conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM events").scalar_one()
        self._since = max(0, int(last) - int(row[1]))
        self._sample_from = RETRAIN_EVERY - SAMPLES

    def _use(self, dict_id: int, data: bytes) -> None:
        d = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
        d.precompute_compress(level=LEVEL)
        self._compressor = zstandard.ZstdCompressor(level=LEVEL, dict_data=d, write_dict_id=True)
        self._dict_id = dict_id

    def encode(self, raw: bytes | None) -> bytes | None:
        if raw is None:
            return None
        self._since += 1
        if len(self._samples) < SAMPLES and len(raw) <= MAX_SAMPLE and self._since >= self._sample_from:
            self._samples.append(raw)
        return self._compressor.compress(raw)

    def maybe_train(self, conn: Connection, now: float) -> None:
        """Once SAMPLES bodies are in: train a dictionary, store it in this transaction, use it from now."""
        if len(self._samples) < SAMPLES:
            return
        samples, self._samples = self._samples, []
        dict_id = int(conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) + 1 FROM event_dicts").scalar_one())
        try:
            d = zstandard.train_dictionary(DICT_SIZE, samples, dict_id=dict_id, level=LEVEL)
        except zstandard.ZstdError as e:  # too few distinct bytes to learn from: try again a window later
            log.info("no compression dictionary from %d event bodies (%s); next try in %d events",
                     len(samples), e, RETRAIN_EVERY)
            self._sample_from = self._since + RETRAIN_EVERY - SAMPLES
            return
        data = d.as_bytes()
        last = conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM events").scalar_one()
        conn.exec_driver_sql(_sql(conn, "INSERT INTO event_dicts (id, created_at, event_id, dict) "
                                        "VALUES (?, ?, ?, ?)"), (dict_id, now, int(last), data))
        self._use(dict_id, data)
        self._since, self._sample_from = 0, RETRAIN_EVERY - SAMPLES
        log.info("event bodies: compression dictionary %d trained on %d bodies (%d bytes)",
                 dict_id, len(samples), len(data))


class BodyReader:
    """Reads stored bodies back (compressed or not), loading dictionaries as frames name them."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._plain = zstandard.ZstdDecompressor()
        self._by_dict: dict[int, zstandard.ZstdDecompressor] = {}

    def decode(self, blob: bytes | memoryview | None) -> bytes | None:
        if blob is None:
            return None
        blob = bytes(blob)
        if not blob.startswith(MAGIC):
            return blob  # stored before 0007: the JSON as received
        dict_id = zstandard.get_frame_parameters(blob).dict_id
        if not dict_id:
            return self._plain.decompress(blob)
        dec = self._by_dict.get(dict_id)
        if dec is None:
            data = self._conn.exec_driver_sql(_sql(self._conn, "SELECT dict FROM event_dicts WHERE id = ?"),
                                              (dict_id,)).scalar()
            if data is None:
                raise LookupError(f"event body compressed with dictionary {dict_id}, which is not stored")
            d = zstandard.ZstdCompressionDict(bytes(data), dict_type=zstandard.DICT_TYPE_FULLDICT)
            dec = self._by_dict[dict_id] = zstandard.ZstdDecompressor(dict_data=d)
        return dec.decompress(blob)

    def decode_all(self, blobs: Iterable[bytes | memoryview | None]) -> list[bytes | None]:
        return [self.decode(b) for b in blobs]


def read_bodies(conn: Connection, where: str = "", params: tuple = ()) -> list[bytes]:
    """The stored bodies of events (`where`: an SQL condition on `events e`, `?` parameters), decoded."""
    sql = "SELECT e.body FROM events e" + (f" WHERE {where}" if where else "") + " ORDER BY e.id"
    reader = BodyReader(conn)
    out = reader.decode_all(r[0] for r in conn.exec_driver_sql(_sql(conn, sql), params))
    return [b for b in out if b is not None]
