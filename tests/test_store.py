"""The trajectory store on real files and real processes: round trips, killed and concurrent writers, live readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from array import array
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gymbox.environments.api.models import Action, Message, ToolCall, ToolSpec
from gymbox.environments.records import EpisodeError, Provenance, Trajectory, Turn
from gymbox.harness.store import CorruptRecord, StoreError, StoreWarning, TrajectoryStore, UnknownTrajectory
from gymbox.harness.store_export import export
from gymbox.tasks.spec import TaskSpec, derive_seed

ROOT = Path(__file__).resolve().parents[1]
INFRA = EpisodeError(code="container_died", message="the sandbox exited with 137", infra=True, attempts=2)


def trajectory(i: int, *, group: str = "g0", turns: int = 3, tokens: int = 40,
               error: EpisodeError | None = None) -> Trajectory:
    """A realistic record: tool calls, observations, signals, aligned token ids / loss mask / logprobs."""
    task = TaskSpec(id=f"weather-{group}", env="toolcall@v1", instruction="What is the weather in Paris?",
                    payload={"city": "Paris"}, category="weather", split="train")
    made = []
    for k in range(turns):
        # Each turn: the environment's tokens (mask 0, no logprob), then what the policy generated (mask 1).
        ids = [(i * 7919 + k * 31 + j) % 151_000 for j in range(tokens)]
        mask = [0] * (tokens // 4) + [1] * (tokens - tokens // 4)
        logprobs = [-((j % 97) / 37.0) if m else None for j, m in enumerate(mask)]
        call = ToolCall.make("get_weather", {"city": "Paris", "day": k}, id=f"call_{k}")
        text = f'<tool_call>{{"name": "get_weather", "day": {k}}}</tool_call> [bold]not markup[/bold]'
        made.append(Turn(index=k, token_ids=ids, loss_mask=mask, logprobs=logprobs, text=text,
                         action=Action(text=text, tool_calls=[call]),
                         parse_error="no closing tag" if k == 1 and i % 3 == 0 else None,
                         observation=[Message(role="tool", content=f"sunny, {20 + k} C", tool_call_id=call.id)],
                         signals={"valid_call": 1.0, "progress": k / turns}, terminated=k == turns - 1,
                         env_seconds=0.01 * (k + 1), policy_seconds=0.25))
    return Trajectory(
        id=f"{group}-{i:06d}", task=task, group=group, sample=i, base_seed=7, seed=derive_seed(7, task.id, i),
        provenance=Provenance(env="toolcall@v1", runtime="process", policy="Qwen/Qwen2.5-0.5B-Instruct",
                              weights_version="3", sampling={"temperature": 1.0, "max_tokens": 512},
                              packages={"gymbox": "0.1.0"}),
        prompt=[Message(role="system", content="You are a helpful agent."),
                Message(role="user", content=task.instruction)],
        tools=[ToolSpec.make("get_weather", "The weather of a city", {"city": {"type": "string"}}, ["city"])],
        prompt_ids=list(range(100, 120)), turns=made, terminated=error is None,
        signals={"success": float(i % 2 == 0)}, rewards={"outcome": float(i % 2 == 0), "format": 0.1},
        reward=None if error else float(i % 2 == 0) + 0.1, error=error, started_at=1.7e9 + i, seconds=1.5)


def child(*args: str) -> subprocess.Popen[str]:
    """A writer in its own process, running `_child_main` below."""
    code = "from tests.test_store import _child_main; _child_main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _child_main() -> None:
    mode, path = sys.argv[1:3]
    store = TrajectoryStore(path)
    if mode == "loop":  # append one large record after another until killed
        big = trajectory(0, group="big", turns=20, tokens=20_000)
        print(len(big.model_dump_json()) + 1, flush=True)  # ids are fixed-width: every record has this size
        with store.writer(fsync_every=None) as w:
            for i in range(10**9):
                w.append(big.model_copy(update={"id": f"big-{i:06d}"}))
    elif mode == "stdin":  # append one record per line read, so the test paces the writer
        with store.writer(segment_bytes=20_000, fsync_every=1) as w:
            for i, _ in enumerate(sys.stdin):
                w.append(trajectory(i, group="live"))
    elif mode == "burst":  # many records of varied sizes, started together with another writer
        name, count = sys.argv[3], int(sys.argv[4])
        records = [trajectory(i, group=name, tokens=[10, 400, 5_000][i % 3]) for i in range(count)]
        print("ready", flush=True)
        sys.stdin.readline()
        with store.writer(segment_bytes=256 << 10, fsync_every=None) as w:
            for record in records:
                w.append(record)


def write(store: TrajectoryStore, records: list[Trajectory], **options: object) -> None:
    with store.writer(**options) as w:  # type: ignore[arg-type]
        for record in records:
            w.append(record)


@pytest.fixture
def records() -> list[Trajectory]:
    made = [trajectory(i, group=f"g{i // 3}") for i in range(6)]
    made[4] = trajectory(4, group="g1", error=INFRA)
    made[5] = trajectory(5, group="g1", turns=6, tokens=50_000)  # a large record: 300k tokens, ~8 MB
    return made


def test_records_round_trip_in_write_order(tmp_path: Path, records: list[Trajectory]) -> None:
    store = TrajectoryStore(tmp_path / "store")
    write(store, records[:3])
    write(store, records[3:], fsync_every=1)  # a second writer appends to the same segment
    assert list(store.iter()) == records
    assert [p.name for p in store.segments()] == ["seg-000000.jsonl"]
    assert store.get("g1-000004").masked and store.get("g1-000004").error == INFRA
    assert store.get("g1-000005").token_ids == records[5].token_ids
    assert {g: [t.id for t in ts] for g, ts in store.groups().items()} == {
        "g0": ["g0-000000", "g0-000001", "g0-000002"], "g1": ["g1-000003", "g1-000004", "g1-000005"]}
    with pytest.raises(UnknownTrajectory, match="nope"):
        store.get("nope")
    rescored = records[0].model_copy(update={"reward": 0.5})
    write(store, [rescored])
    assert store.get(records[0].id).reward == 0.5  # a later record with the same id supersedes


def test_a_record_json_cannot_hold_is_refused_before_writing(tmp_path: Path, records: list[Trajectory]) -> None:
    store = TrajectoryStore(tmp_path / "store")
    # Typed floats refuse NaN when a record is built; a task payload is free-form JSON, which would say null.
    task = records[0].task.model_copy(update={"payload": {"threshold": float("nan")}})
    nan_payload = records[0].model_copy(update={"task": task})
    with store.writer() as w, pytest.raises(StoreError, match=r"g0-000000: task\.payload\.threshold is not a finite"):
        w.append(nan_payload)
    assert store.segments()[0].stat().st_size == 0


def test_segments_rotate_by_size_and_keep_write_order(tmp_path: Path, records: list[Trajectory]) -> None:
    store = TrajectoryStore(tmp_path / "store")
    small = [trajectory(i) for i in range(12)]
    write(store, small[:7], segment_bytes=30_000)
    write(store, small[7:], segment_bytes=30_000)
    assert len(store.segments()) > 2
    assert all(p.stat().st_size < 30_000 + 20_000 for p in store.segments())  # at most one record past the limit
    assert [t.id for t in store.iter()] == [t.id for t in small]


def test_writer_killed_mid_record_leaves_every_finished_record_readable(tmp_path: Path) -> None:
    for attempt in range(5):
        path = tmp_path / f"store{attempt}"
        proc = child("loop", str(path))
        assert proc.stdout is not None
        size = int(proc.stdout.readline())
        segment = path / "seg-000000.jsonl"
        # Kill while the third or a later record is half written: the file then ends inside a record.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            written = segment.stat().st_size if segment.exists() else 0
            if written > 2 * size and written % size:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        written = segment.stat().st_size
        if written % size:
            break  # the kill landed mid-write (it almost always does); otherwise try again
    else:
        pytest.fail("the writer was never killed mid-write")
    finished = written // size
    store = TrajectoryStore(path)
    tail = rf"seg-000000.jsonl: skipped an incomplete last line at byte {finished * size} "
    with pytest.warns(StoreWarning, match=tail):
        ids = [t.id for t in store.iter()]
    assert ids == [f"big-{i:06d}" for i in range(finished)]
    write(store, [trajectory(0, group="after")])  # never glued to the partial tail: a new segment
    assert [p.name for p in store.segments()] == ["seg-000000.jsonl", "seg-000001.jsonl"]
    assert segment.stat().st_size == written  # written bytes are never rewritten
    with pytest.warns(StoreWarning, match="incomplete last line"):
        assert [t.id for t in store.iter()] == [*ids, "after-000000"]


def test_incomplete_tail_is_skipped_even_when_strict(tmp_path: Path, records: list[Trajectory]) -> None:
    store = TrajectoryStore(tmp_path / "store", strict=True)
    write(store, records[:2])
    segment = store.segments()[0]
    offset = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(records[2].model_dump_json().encode()[:500])  # what a writer killed mid-write leaves
    with pytest.warns(StoreWarning, match=f"at byte {offset} \\(500 bytes\\)"):
        assert list(store.iter()) == records[:2]


def test_a_complete_line_that_is_not_a_record_is_reported_and_skipped(tmp_path: Path,
                                                                       records: list[Trajectory]) -> None:
    store = TrajectoryStore(tmp_path / "store")
    write(store, records[:2])
    with open(store.segments()[0], "ab") as f:
        f.write(b"not json\n" + json.dumps({"id": "x", "task": {"id": "t"}}).encode() + b"\n")
    write(store, records[2:3])
    with pytest.warns(StoreWarning) as caught:
        assert list(store.iter()) == records[:3]
    messages = [str(w.message) for w in caught]
    assert "seg-000000.jsonl:3: skipped a line that is not a trajectory record: Invalid JSON" in messages[0]
    assert "seg-000000.jsonl:4:" in messages[1] and "task.env: Field required" in messages[1]
    with pytest.raises(CorruptRecord, match=r"seg-000000\.jsonl:3:") as err:
        list(TrajectoryStore(store.path, strict=True).iter())
    assert err.value.line == 3


def test_follow_yields_records_as_a_live_writer_appends_them(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "store")  # does not exist yet: the follower waits for it
    proc = child("stdin", str(store.path))
    assert proc.stdin is not None
    live = store.follow(timeout=60)
    try:
        for i in range(8):  # the writer appends record i only now, and waits: each is seen while it is written
            proc.stdin.write("next\n")
            proc.stdin.flush()
            assert next(live).id == f"live-{i:06d}"
    finally:
        proc.stdin.close()
        assert proc.wait(30) == 0
    assert len(store.segments()) > 1  # the follower crossed segment boundaries
    stop = threading.Event()
    seen = []
    for record in store.follow(stop=stop):
        seen.append(record)
        if len(seen) == 3:
            stop.set()
    assert len(seen) == 3
    assert list(store.follow(from_start=False, timeout=0.2)) == []  # returns at its timeout, with nothing new


def test_two_writer_processes_write_only_whole_records(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "store")
    procs = [child("burst", str(store.path), name, "45") for name in ("a", "b")]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:  # released together, so their appends contend for the same segments
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    assert [proc.wait(60) for proc in procs] == [0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn or glued record would warn
        got = list(store.iter())
    for name in ("a", "b"):
        assert [t.sample for t in got if t.group == name] == list(range(45))
    assert all(p.read_bytes().endswith(b"\n") for p in store.segments())
    assert len(store.segments()) > 1


def test_export_to_parquet_and_jsonl_reads_back(tmp_path: Path, records: list[Trajectory]) -> None:
    store = TrajectoryStore(tmp_path / "store")
    write(store, records)
    assert export(store, tmp_path / "t.parquet", "parquet") == len(records)
    rows = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert [r["id"] for r in rows] == [t.id for t in records]
    assert [r["reward"] for r in rows] == [t.reward for t in records]
    assert [r["masked"] for r in rows] == [False, False, False, False, True, False]
    assert rows[4]["error_code"] == "container_died"
    for row, t in zip(rows, records, strict=True):
        assert row["token_ids"] == t.token_ids and row["loss_mask"] == t.loss_mask
        assert row["num_tokens"] == len(t.token_ids) and row["num_turns"] == len(t.turns)
        logprobs = [None] * len(t.prompt_ids) + [lp for turn in t.turns for lp in turn.logprobs]
        assert [x is None for x in row["logprobs"]] == [x is None for x in logprobs]
        as_float32 = array("f", [x for x in logprobs if x is not None]).tolist()
        assert [x for x in row["logprobs"] if x is not None] == as_float32
        assert [row["token_ids"][s] for s in row["turn_starts"]] == [turn.token_ids[0] for turn in t.turns]
        assert json.loads(row["turns"])[0]["action"]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert json.loads(row["provenance"])["policy"] == t.provenance.policy
        assert json.loads(row["rewards"]) == t.rewards
    assert export(store, tmp_path / "t.jsonl", "jsonl") == len(records)
    assert list(TrajectoryStore(tmp_path / "t.jsonl").iter()) == records  # one file reads as a store too
    assert sorted(os.listdir(tmp_path)) == ["store", "t.jsonl", "t.parquet"]  # no temporary files left
