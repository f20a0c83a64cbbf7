"""sha256 of files, remembered by what the kernel says of them, so a re-check costs a stat.

A remembered digest is keyed by the file's device and inode (so a rename keeps it), and holds
only while its size, mtime and ctime are unchanged. Any write,
truncation, replacement or `touch -d` changes ctime, which no user call can set back, so a
remembered digest is the file's current one: checking a 4 GB dist again costs a stat per file,
and a file edited in place is hashed anew (and found altered). The memo is stdlib sqlite3 in
the user cache folder: atomic updates from concurrent processes without a lock of our own.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

from wsd.paths import cache_root

# A file changed within this many seconds of being hashed could change again inside one
# timestamp tick unseen (git's "racily clean" case): such digests are not remembered.
RACY_S = 2.0
_SCHEMA = "CREATE TABLE IF NOT EXISTS digest (inode TEXT PRIMARY KEY, stamp TEXT NOT NULL, sha256 BLOB NOT NULL)"


def hash_file(path: Path) -> bytes:
    """sha256 of a file's bytes, read in 1 MiB blocks (no memo)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def _inode(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _db() -> sqlite3.Connection | None:
    try:
        root = cache_root()
        root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(root / "digests.sqlite", timeout=30)
        conn.execute(_SCHEMA)
        return conn
    except sqlite3.Error:
        return None  # an unusable memo only costs time: every file is hashed


def _lookup(st: os.stat_result) -> bytes | None:
    conn = _db()
    if conn is None:
        return None
    try:
        row = conn.execute("SELECT stamp, sha256 FROM digest WHERE inode = ?", (_inode(st),)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return bytes(row[1]) if row and row[0] == _stamp(st) else None


def remember(path: Path, sha256: bytes, st: os.stat_result | None = None) -> None:
    """Record a digest known for a file as it is now (after a verified copy, say)."""
    st = st or Path(path).stat()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_S * 1e9:
        return
    conn = _db()
    if conn is None:
        return
    try:
        with conn:
            conn.execute("INSERT OR REPLACE INTO digest VALUES (?, ?, ?)", (_inode(st), _stamp(st), sha256))
    except sqlite3.Error:
        pass
    finally:
        conn.close()


def file_digest(path: Path) -> bytes:
    """sha256 of a file, from the memo when the file is unchanged since it was last hashed."""
    path = Path(path)
    before = path.stat()
    known = _lookup(before)
    if known is not None:
        return known
    raw = hash_file(path)
    if _stamp(path.stat()) == _stamp(before):  # not written while we read it
        remember(path, raw, before)
    return raw
