"""What a restarted room server needs, in a SQLite file: rooms and used tokens.

``Store(None)`` (or ``":memory:"``) keeps it in memory: gone with the server, as the embedded
server and tests want. ``Store(data_dir)`` keeps ``<data_dir>/rooms.sqlite3``.

Kept: each room (its REST description and the last stream id it handed out, so ids are never
reused across a restart) and each used token (``jti`` -> the client id that used it, and its
expiry), so a client rejoining with its original token after a restart is recognised
(PROTOCOL.md section 8). Participants, streams and media are not kept: a restart drops every
socket and peer connection, and the clients rejoin.

The writes are tiny (one row) and rare (room created or deleted, a join, a publish). They run
on the event loop thread, synchronously: with WAL and ``synchronous=NORMAL`` a commit appends
to the log without an fsync and takes tens of microseconds, less than handing the write to a
thread would cost, and it keeps writes in the order the events happened. A power cut may lose
the last commits (not a crash of the process: the OS still has them); for a test and demo
server that is the right trade.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

Json = dict[str, Any]

FILENAME = "rooms.sqlite3"
MEMORY = ":memory:"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    last_stream_id INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS used_tokens (
    jti TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    exp REAL NOT NULL
);
"""


class StoreError(Exception):
    """The data directory or its database cannot be used."""


class Store:
    """Rooms and used tokens, persisted (``data_dir``) or in memory (``None``/``":memory:"``)."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.path: Path | None = None
        if data_dir is None or str(data_dir) == MEMORY:
            target = MEMORY
        else:
            directory = Path(data_dir)
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create data directory {directory}: {exc.strerror or exc}") from None
            self.path = directory / FILENAME
            target = str(self.path)
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(target, isolation_level=None)
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{target}: written by a newer server (schema {version})")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {target}: {exc}") from None

    @property
    def persistent(self) -> bool:
        return self.path is not None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is closed")
        return self._db

    # ------------------------------------------------------------------ rooms

    def rooms(self) -> list[tuple[Json, int]]:
        """Every stored room: (REST description, last stream id)."""
        rows = self._conn().execute("SELECT body, last_stream_id FROM rooms ORDER BY rowid").fetchall()
        return [(json.loads(body), int(last)) for body, last in rows]

    def save_room(self, room_id: str, body: Json, last_stream_id: int) -> None:
        with self._conn() as db:
            db.execute(
                "INSERT INTO rooms (room_id, body, last_stream_id) VALUES (?, ?, ?) "
                "ON CONFLICT(room_id) DO UPDATE SET body = excluded.body, "
                "last_stream_id = excluded.last_stream_id",
                (room_id, json.dumps(body), last_stream_id),
            )

    def save_last_stream_id(self, room_id: str, last_stream_id: int) -> None:
        with self._conn() as db:
            db.execute("UPDATE rooms SET last_stream_id = ? WHERE room_id = ?", (last_stream_id, room_id))

    def delete_room(self, room_id: str) -> None:
        with self._conn() as db:
            db.execute("DELETE FROM rooms WHERE room_id = ?", (room_id,))

    # ------------------------------------------------------------------ used tokens

    def used_tokens(self) -> list[tuple[str, str, float]]:
        """(jti, client id, expiry) of every used token not yet forgotten."""
        rows = self._conn().execute("SELECT jti, client_id, exp FROM used_tokens").fetchall()
        return [(str(j), str(c), float(e)) for j, c, e in rows]

    def save_used_token(self, jti: str, client_id: str, exp: float) -> None:
        with self._conn() as db:
            db.execute(
                "INSERT INTO used_tokens (jti, client_id, exp) VALUES (?, ?, ?) "
                "ON CONFLICT(jti) DO UPDATE SET client_id = excluded.client_id, exp = excluded.exp",
                (jti, client_id, exp),
            )

    def forget_tokens_expired_by(self, now: float) -> None:
        with self._conn() as db:
            db.execute("DELETE FROM used_tokens WHERE exp <= ?", (now,))

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the database (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None
