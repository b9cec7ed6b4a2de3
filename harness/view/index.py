"""An index of a trajectory store for the viewer: one row per record, filtered, sorted and counted in SQLite.

The store is read once, then incrementally: the index keeps, per segment, the byte offset after the last complete
line it read, so a refresh reads only what writers appended since (a growing store costs what it grew by). Each
row keeps where its record lies (segment, offset, length): one trajectory is read back with one seek.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from gymbox.environments.records import EpisodeError, Trajectory
from gymbox.harness.evaluate import pass_ks
from gymbox.harness.metrics import pass_at_k
from gymbox.harness.store import TrajectoryStore

_CHUNK = 16 << 20  # bytes read at a time: bounds memory on stores of any size
# Tasks of a store mostly share their sample counts: the same few (n, c, k) come back for thousands of tasks.
_pass_at_k = functools.lru_cache(maxsize=65536)(pass_at_k)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _TaskHead(_Loose):
    id: str
    env: str
    category: str | None = None
    split: str | None = None


class _ProvenanceHead(_Loose):
    env: str
    policy: str
    weights_version: str = "0"


class _TurnHead(_Loose):
    index: int


class _Head(_Loose):
    """The part of a record the list needs: validated without building its token lists, messages or tools."""

    id: str
    task: _TaskHead
    group: str
    sample: int
    provenance: _ProvenanceHead
    turns: list[_TurnHead] = []
    signals: dict[str, float] = {}
    reward: float | None = None
    error: EpisodeError | None = None
    truncated_by: str | None = None
    seconds: float = 0.0
    started_at: float | None = None


COLUMNS = ("pos", "id", "seg", "off", "len", "env", "task", "category", "split", "grp", "sample", "success",
           "masked", "error", "reward", "weights", "policy", "turns", "seconds", "started")
SORTS = ("pos", "id", "task", "reward", "turns", "seconds", "sample", "started")
_SCHEMA = """CREATE TABLE t (pos INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, seg INT, off INT, len INT, env TEXT,
task TEXT, category TEXT, split TEXT, grp TEXT, sample INT, success INT, masked INT, error TEXT, reward REAL,
weights TEXT, policy TEXT, turns INT, seconds REAL, started REAL)"""


@dataclass
class Filters:
    """What the list shows; empty fields do not filter. `success`/`masked`: "yes" or "no"; `error`: a code,
    "any" (every failed rollout) or "none"."""

    env: str = ""
    task: str = ""  # a substring of the task id
    category: str = ""
    split: str = ""
    success: str = ""
    masked: str = ""
    error: str = ""
    reward_min: float | None = None
    reward_max: float | None = None
    weights: str = ""
    group: str = ""

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        """Filters from URL query parameters; a reward bound that is not a number is a ValueError saying which."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = (query.get(f.name) or "").strip()
            if f.name.startswith("reward_"):
                try:
                    values[f.name] = float(raw) if raw else None
                except ValueError:
                    raise ValueError(f"{f.name} must be a number, got {raw!r}") from None
            else:
                values[f.name] = raw
        return cls(**values)

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters."""
        clauses, params = [], []
        for name in ("env", "category", "split", "weights"):
            if value := getattr(self, name):
                clauses.append(f"{name} = ?")
                params.append(value)
        if self.group:
            clauses.append("grp = ?")
            params.append(self.group)
        if self.task:
            clauses.append("instr(task, ?) > 0")
            params.append(self.task)
        for name in ("success", "masked"):
            if value := getattr(self, name):
                clauses.append(f"{name} = ?")
                params.append(1 if value == "yes" else 0)
        if self.error == "any":
            clauses.append("error IS NOT NULL")
        elif self.error == "none":
            clauses.append("error IS NULL")
        elif self.error:
            clauses.append("error = ?")
            params.append(self.error)
        if self.reward_min is not None:
            clauses.append("reward >= ?")
            params.append(self.reward_min)
        if self.reward_max is not None:
            clauses.append("reward <= ?")
            params.append(self.reward_max)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass
class Counts:
    """Figures of a filtered set: rollouts, masked, successes, mean reward, errors by code, pass@k."""

    total: int = 0
    masked: int = 0
    success: int = 0
    tasks: int = 0
    mean_reward: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    pass_at: dict[int, float] = field(default_factory=dict)


@dataclass
class Page:
    rows: list[dict[str, Any]]
    counts: Counts
    offset: int
    limit: int


class StoreIndex:
    """The index of one store; `refresh()` reads what was appended since the last call. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.store = TrajectoryStore(path)
        self.store.segments()  # no store there: StoreError with the reason, before a server starts
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._seg: int | None = None  # the segment being read, and the offset after its last complete line
        self._off = 0
        self.skipped: list[str] = []  # lines that are not records: where, and why
        self._indexed = False
        self._choices: dict[str, list[str]] | None = None  # cached until rows are added

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM t").fetchone()[0]

    def refresh(self, progress: Callable[[int], None] | None = None) -> int:
        """Index the records appended since the last refresh; how many were added. `progress` gets the bytes of
        each line read."""
        insert = f"INSERT OR REPLACE INTO t ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * (len(COLUMNS) - 1))})"
        with self._lock:
            added, batch = 0, []
            for seg, off, raw in self._new_lines():
                if progress is not None:
                    progress(len(raw))
                if (row := self._row(seg, off, raw)) is not None:
                    batch.append(row)
                if len(batch) >= 4096:
                    added += self._insert(insert, batch)
            added += self._insert(insert, batch)
            if added:
                self._choices = None
            if added and not self._indexed:
                # Built once, after the first load (cheaper than keeping them up to date row by row): the
                # selective filters and the error counts read them instead of scanning every row.
                for column in ("env", "category", "split", "error", "weights", "grp", "masked", "reward"):
                    self._db.execute(f"CREATE INDEX t_{column} ON t ({column})")
                # Covers the counts (grouped by task) of the whole store or a reward range: no row is read.
                self._db.execute("CREATE INDEX t_task ON t (task, masked, success, reward)")
                self._indexed = True
            self._db.commit()
            return added

    def _insert(self, sql: str, batch: list[tuple[Any, ...]]) -> int:
        self._db.executemany(sql, batch)
        n = len(batch)
        batch.clear()
        return n

    def _new_lines(self) -> Iterator[tuple[int, int, bytes]]:
        indices = [0] if self.store.single_file else [int(p.name[4:-6]) for p in self.store.segments()]
        if not indices:
            return
        if self._seg is None:
            self._seg, self._off = indices[0], 0
        for index in [i for i in indices if i >= self._seg]:
            if index != self._seg:  # moved on: what was left of the previous segment was an abandoned tail
                self._seg, self._off = index, 0
            path = self.store.segment(index)
            with open(path, "rb") as f:
                f.seek(self._off)
                rest = b""
                while chunk := f.read(_CHUNK):
                    data = rest + chunk
                    end = data.rfind(b"\n") + 1
                    start = 0
                    while start < end:
                        stop = data.index(b"\n", start) + 1
                        yield index, self._off + start, data[start:stop]
                        start = stop
                    self._off += end
                    rest = data[end:]

    def _row(self, seg: int, off: int, raw: bytes) -> tuple[Any, ...] | None:
        try:
            h = _Head.model_validate_json(raw)
        except ValidationError as exc:
            self.skipped.append(f"{self.store.segment(seg)} byte {off}: {exc.errors()[0]['msg']}")
            return None
        masked = h.error is not None and h.error.kind.masked
        success = 1 if h.signals.get("success", 0.0) >= 1.0 else 0  # as `metrics.succeeded` counts it
        return (h.id, seg, off, len(raw), h.task.env, h.task.id, h.task.category, h.task.split, h.group, h.sample,
                success, int(masked), h.error.code if h.error else None, h.reward, h.provenance.weights_version,
                h.provenance.policy, len(h.turns), h.seconds, h.started_at)

    # ---- queries ----

    def page(self, filters: Filters, *, sort: str = "pos", descending: bool = False, offset: int = 0,
             limit: int = 50) -> Page:
        """One page of the filtered, sorted rows, with the counts of the whole filtered set."""
        if sort not in SORTS:
            raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORTS)}")
        where, params = filters.where()
        order = f"{sort} {'DESC' if descending else 'ASC'}" + ("" if sort == "pos" else ", pos")
        with self._lock:
            cur = self._db.execute(f"SELECT * FROM t{where} ORDER BY {order} LIMIT ? OFFSET ?",
                                   [*params, limit, offset])
            rows = [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]
            counts = self._counts(where, params)
        return Page(rows, counts, offset, limit)

    def _counts(self, where: str, params: list[Any]) -> Counts:
        # One pass grouped by task gives every figure (pass@k needs each task's valid samples and successes;
        # masked rollouts are not samples, as in `metrics.summarize`); errors come from their own small index.
        per_task = self._db.execute(
            f"SELECT COUNT(*), SUM(masked), SUM(success * (1 - masked)), SUM(CASE WHEN masked = 0 THEN reward END), "
            f"COUNT(CASE WHEN masked = 0 THEN reward END) FROM t{where} GROUP BY task", params).fetchall()
        errors = dict(self._db.execute(f"SELECT error, COUNT(*) FROM t{where}{' AND' if where else ' WHERE'} "
                                       "error IS NOT NULL GROUP BY error ORDER BY COUNT(*) DESC", params).fetchall())
        rewards = sum(r[3] or 0.0 for r in per_task)
        scored = sum(r[4] for r in per_task)
        counts = Counts(total=sum(r[0] for r in per_task), masked=sum(r[1] for r in per_task),
                        success=sum(r[2] for r in per_task), tasks=len(per_task),
                        mean_reward=rewards / scored if scored else None, errors=errors)
        valid = [(n - m, c) for n, m, c, _, _ in per_task]
        most = max((n for n, _ in valid), default=0)
        for k in pass_ks(most) if most else []:
            scores = [_pass_at_k(n, c, k) for n, c in valid if n >= k]
            counts.pass_at[k] = sum(scores) / len(scores)
        return counts

    def choices(self) -> dict[str, list[str]]:
        """The distinct values of each filterable column, for the filter form."""
        with self._lock:
            if self._choices is None:
                self._choices = {name: [v for (v,) in self._db.execute(
                    f"SELECT DISTINCT {name} FROM t WHERE {name} IS NOT NULL ORDER BY {name}")]
                    for name in ("env", "category", "split", "error", "weights")}
            return self._choices

    def where_is(self, trajectory_id: str) -> tuple[int, int, int] | None:
        with self._lock:
            return self._db.execute("SELECT seg, off, len FROM t WHERE id = ?", [trajectory_id]).fetchone()

    def ids_of_group(self, group: str) -> list[str]:
        with self._lock:
            return [i for (i,) in self._db.execute("SELECT id FROM t WHERE grp = ? ORDER BY sample, pos", [group])]

    def load(self, trajectory_id: str) -> Trajectory:
        """The whole record, read with one seek; KeyError when the index has no such id."""
        where = self.where_is(trajectory_id)
        if where is None:
            self.refresh()
            where = self.where_is(trajectory_id)
        if where is None:
            raise KeyError(trajectory_id)
        seg, off, length = where
        with open(self.store.segment(seg), "rb") as f:
            f.seek(off)
            return Trajectory.model_validate_json(f.read(length))
