"""The trajectory store: append-only, crash-safe JSON-lines segments, readable while they are written."""

from __future__ import annotations

import fcntl
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from gymbox.environments.records import Trajectory

SEGMENT = "seg-{:06d}.jsonl"
_SEGMENT_NAME = re.compile(r"seg-(\d{6,})\.jsonl")


class StoreError(Exception):
    """The store cannot be read or written as asked."""


class CorruptRecord(StoreError):
    """A complete line that is not a valid trajectory record (raised by strict readers only)."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: not a trajectory record: {reason}")
        self.path, self.line, self.reason = path, line, reason


class UnknownTrajectory(StoreError, LookupError):
    """No record with the asked id."""


class StoreWarning(UserWarning):
    """A line was skipped: the incomplete tail of a killed writer, or a complete line that is not a record."""


class TrajectoryStore:
    """A directory of JSON-lines segments `seg-000000.jsonl`, `seg-000001.jsonl`, ...: one `Trajectory` a line.

    Guarantees:
    - Whole records. A writer serializes a record first and writes `json + "\\n"` with one write() (looping only
      on a short write) to a segment opened with O_APPEND, under an exclusive `flock` of that segment. Writers in
      any number of processes and threads share the newest segment and never interleave bytes.
    - Write order. Writers append only to the newest segment, only while it is smaller than `segment_bytes` and
      ends with a newline; so segment number, then line number, is the order records were written in.
    - Crash safety. A writer killed mid-write leaves at most one incomplete last line. Bytes once written are never
      rewritten (a reader may be reading them): the next append sees the incomplete tail under the lock and starts
      a new segment, so no record is glued to garbage. Readers skip such a tail with a `StoreWarning` naming the
      file and byte offset; a tail that a live writer is still writing (it holds the lock) is waited for silently.
    - Durability. Written bytes are in the kernel at once (no user-space buffer), so a killed process loses at
      most the record it was writing; `fsync_every` bounds what a machine crash can lose.
    - A complete line that is not a valid record is reported with its file and line number and skipped;
      `strict=True` raises `CorruptRecord` instead. Records refuse NaN and infinities in their typed fields when
      built; a NaN in free-form JSON (a task payload, sampling options) is refused here, before any byte is written.

    A single JSON-lines file (an export, a copied segment) opens as a read-only store of one segment.
    """

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict

    @property
    def single_file(self) -> bool:
        return self.path.is_file()

    def segment(self, index: int) -> Path:
        return self.path if self.single_file else self.path / SEGMENT.format(index)

    def segments(self) -> list[Path]:
        """The segment files in write order."""
        if self.single_file:
            return [self.path]
        if not self.path.is_dir():
            raise StoreError(f"no trajectory store at {self.path} (a store is a directory of seg-*.jsonl files)")
        return [self.segment(i) for i in _indices(self.path)]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.segments())

    def writer(self, *, segment_bytes: int = 128 << 20, fsync_every: int | None = 64) -> TrajectoryWriter:
        """A writer appending to this store (created if missing); close it, or use it as a context manager."""
        if self.single_file:
            raise StoreError(f"{self.path} is a single file, read-only as a store; write to a store directory")
        return TrajectoryWriter(self.path, segment_bytes=segment_bytes, fsync_every=fsync_every)

    def scan(self) -> Iterator[tuple[Trajectory, int]]:
        """Each record in write order with the bytes its line took (for progress), up to the end as it is now."""
        self.segments()  # a missing store is an error for a one-pass reader (a follower waits for it instead)
        yield from _Cursor(self).read(final=True)

    def iter(self) -> Iterator[Trajectory]:
        """Every record in write order; skips (and warns about) lines that are not whole records."""
        for record, _ in self.scan():
            yield record

    __iter__ = iter

    def get(self, trajectory_id: str) -> Trajectory:
        """The last record written with this id (a later record with the same id supersedes an earlier one)."""
        self.segments()
        found = None
        # Lines without the id's JSON text cannot match: skip them without decoding (records can be MBs).
        for record, _ in _Cursor(self, match=trajectory_id).read(final=True):
            if record.id == trajectory_id:
                found = record
        if found is None:
            raise UnknownTrajectory(f"no trajectory {trajectory_id!r} in {self.path}")
        return found

    def groups(self) -> dict[str, list[Trajectory]]:
        """Records by `Trajectory.group`, each group in write order (holds the whole store in memory)."""
        groups: dict[str, list[Trajectory]] = {}
        for record in self.iter():
            groups.setdefault(record.group, []).append(record)
        return groups

    def follow(self, *, timeout: float | None = None, stop: threading.Event | None = None,
               from_start: bool = True, poll: float = 0.05) -> Iterator[Trajectory]:
        """Records as writers append them, until `timeout` seconds pass or `stop` is set (or the caller stops).

        `from_start=False` skips the records already written. A store that does not exist yet is waited for.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = _Cursor(self, from_end=not from_start)
        while True:
            for record, _ in cursor.read(final=False):
                yield record
                if _done(stop, deadline):
                    return
            if _done(stop, deadline):
                return
            wait = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)

    def _parse(self, raw: bytes, path: Path, line: int) -> Trajectory | None:
        try:
            return Trajectory.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            where = ".".join(map(str, errors[0]["loc"]))
            reason = f"{where + ': ' if where else ''}{errors[0]['msg']}" + \
                (f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else "")
            if self.strict:
                raise CorruptRecord(path, line, reason) from None
            warnings.warn(StoreWarning(f"{path}:{line}: skipped a line that is not a trajectory record: {reason}"),
                          stacklevel=4)
            return None


class TrajectoryWriter:
    """Appends records to a store directory; may be shared by threads, and run beside writers in other processes.

    `fsync_every`: fsync after this many records and on close (1: every record; None: never, leaving write-back to
    the OS: a killed process still loses nothing it finished writing, only a machine crash can).
    """

    def __init__(self, root: Path, *, segment_bytes: int = 128 << 20, fsync_every: int | None = 64) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        if fsync_every is not None and fsync_every < 1:
            raise ValueError(f"fsync_every must be at least 1 (every record) or None (never), got {fsync_every}")
        self.root, self.segment_bytes, self.fsync_every = root, segment_bytes, fsync_every
        root.mkdir(parents=True, exist_ok=True)
        existing = _indices(root)
        self._index = existing[-1] if existing else 0
        self._fd = self._open(self._index)
        self._end = -1  # where this writer's last record ended: when the size still says so, the tail is whole
        self._unsynced = 0
        self._mutex = threading.Lock()  # flock excludes other open files, not threads sharing this one
        self.closed = False

    def append(self, trajectory: Trajectory) -> None:
        """Write one record; when this returns, any reader can read it."""
        if (where := _non_finite(_numbers(trajectory), "")) is not None:
            raise StoreError(f"trajectory {trajectory.id}: {where} is not a finite number, and JSON has none: it "
                             "would read back as null (None), or not at all; fix the value before storing it")
        # Serialized before locking: a record that cannot be serialized writes nothing, and the lock is held only
        # for the write itself.
        data = trajectory.model_dump_json().encode() + b"\n"
        with self._mutex:
            if self.closed:
                raise StoreError(f"append to a closed writer of {self.root}")
            while not self._write_locked(data):
                self._next_segment()
            self._unsynced += 1
            if self.fsync_every is not None and self._unsynced >= self.fsync_every:
                os.fsync(self._fd)
                self._unsynced = 0

    def close(self) -> None:
        with self._mutex:
            if self.closed:
                return
            if self._unsynced and self.fsync_every is not None:
                os.fsync(self._fd)
            os.close(self._fd)
            self.closed = True

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_locked(self, data: bytes) -> bool:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(self._fd).st_size
            if not self._writable(size):
                return False
            view = memoryview(data)
            while view:  # a regular file takes the whole write at once unless it is huge; loop all the same
                view = view[os.write(self._fd, view):]
            self._end = size + len(data)
            return True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _writable(self, size: int) -> bool:
        if (self.root / SEGMENT.format(self._index + 1)).exists():
            return False  # another writer moved on; this segment takes no more records
        if size >= self.segment_bytes:
            return False
        # A tail without a newline was left by a killed writer (we hold the lock, so nobody is writing it): do not
        # glue a record to it, nor rewrite it under a reader's feet; start a new segment instead.
        return size == 0 or size == self._end or os.pread(self._fd, 1, size - 1) == b"\n"

    def _next_segment(self) -> None:
        if self._unsynced and self.fsync_every is not None:
            os.fsync(self._fd)
            self._unsynced = 0
        os.close(self._fd)
        self._index += 1
        self._fd = self._open(self._index)
        self._end = -1

    def _open(self, index: int) -> int:
        path = self.root / SEGMENT.format(index)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if created and self.fsync_every is not None:  # a new name survives a machine crash once its folder is synced
            dir_fd = os.open(self.root, os.O_RDONLY)
            os.fsync(dir_fd)
            os.close(dir_fd)
        return fd


class _Cursor:
    """A position in a store: reads complete lines onward, moving to the next segment once one exists."""

    def __init__(self, store: TrajectoryStore, *, from_end: bool = False, match: str | None = None) -> None:
        self.store = store
        self.index: int | None = None
        self.offset = self.line = 0
        self.match = _needle(match)
        if from_end and (indices := _indices_of(store)):
            self.index = indices[-1]
            self.offset, self.line = _end_of_lines(store.segment(self.index))

    def read(self, *, final: bool) -> Iterator[tuple[Trajectory, int]]:
        """Records written since the last read. `final`: nobody reads on, so report an incomplete tail of the
        newest segment now (unless a live writer holds it) instead of waiting for it to complete."""
        store = self.store
        if self.index is None:
            if not (indices := _indices_of(store)):
                return  # no store yet: a follower waits for one
            self.index = indices[0]
        while True:
            path = store.segment(self.index)
            # Checked before draining: once segment k+1 exists, k gets no more records.
            closed = not store.single_file and store.segment(self.index + 1).exists()
            if path.exists():
                with open(path, "rb") as f:
                    for raw in _complete_lines(f, self.offset):
                        self.offset += len(raw)
                        self.line += 1
                        if self.match is not None and self.match not in raw:
                            continue
                        record = store._parse(raw, path, self.line)
                        if record is not None:
                            yield record, len(raw)
                    if closed or final:
                        self._report_tail(f, path, closed)
            if not closed:
                return
            self.index, self.offset, self.line = self.index + 1, 0, 0

    def _report_tail(self, f: BinaryIO, path: Path, closed: bool) -> None:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        if size <= self.offset:
            return
        if not closed:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a writer holds the segment: the line is being written, not abandoned
            try:
                size = os.fstat(fd).st_size
                if os.pread(fd, 1, size - 1) == b"\n":
                    return  # completed since it was read: the next read yields it
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        warnings.warn(StoreWarning(f"{path}: skipped an incomplete last line at byte {self.offset} "
                                   f"({size - self.offset} bytes), left by a writer killed mid-write"), stacklevel=4)


def _complete_lines(f: BinaryIO, offset: int) -> Iterator[bytes]:
    """Each complete line from `offset`, stopping before an incomplete tail."""
    f.seek(offset)
    while (raw := f.readline()).endswith(b"\n"):
        yield raw


def _end_of_lines(path: Path) -> tuple[int, int]:
    """The byte offset just past the last complete line, and how many lines end before it."""
    offset = lines = pos = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            if (n := chunk.count(b"\n")) > 0:
                lines += n
                offset = pos + chunk.rindex(b"\n") + 1
            pos += len(chunk)
    return offset, lines


def _needle(trajectory_id: str | None) -> bytes | None:
    # The id as it appears in the JSON text; ids with characters JSON may escape differently are not prefiltered.
    if trajectory_id is None or not trajectory_id.isascii() or not trajectory_id.isprintable() or \
            any(c in trajectory_id for c in '"\\/'):
        return None
    return f'"{trajectory_id}"'.encode()


def _indices(root: Path) -> list[int]:
    return sorted(int(m.group(1)) for name in os.listdir(root) if (m := _SEGMENT_NAME.fullmatch(name)))


def _indices_of(store: TrajectoryStore) -> list[int]:
    return [0] if store.single_file else _indices(store.path) if store.path.is_dir() else []


def _numbers(t: Trajectory) -> dict[str, object]:
    """The record's free-form parts: its typed floats are checked when it is built (records refuse NaN and
    infinities), but a task payload or sampling options are plain JSON that pydantic would dump as null."""
    return {"task.payload": t.task.payload, "provenance.sampling": t.provenance.sampling}


def _non_finite(value: object, where: str) -> str | None:
    """The path of the first NaN or infinity in a dumped record."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    for key, item in items:
        if (found := _non_finite(item, f"{where}.{key}" if where else str(key))) is not None:
            return found
    return None


def _done(stop: threading.Event | None, deadline: float | None) -> bool:
    return (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline)
