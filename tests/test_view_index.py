"""The viewer's store index: filters, sorting, counts and pass@k of the filtered set, and incremental reads while
writers append (new records, new segments, a tail being written, a line that is not a record, a superseded id)."""

from __future__ import annotations

import os

import pytest

from gymbox.environments.records import EpisodeError, Provenance, Trajectory, Turn
from gymbox.harness.metrics import summarize
from gymbox.harness.store import TrajectoryStore
from gymbox.harness.view.index import Filters, StoreIndex
from gymbox.tasks.spec import TaskSpec


def record(task: int, sample: int, *, success: bool, reward: float | None = None, error: str | None = None,
           weights: str = "0", category: str | None = None, env: str = "echo") -> Trajectory:
    spec = TaskSpec(id=f"t{task}", env=env, instruction="say it", category=category or f"c{task % 2}",
                    split="test" if task % 3 == 0 else "train")
    return Trajectory(
        id=f"t{task}@0#{sample}", task=spec, group=f"t{task}@0", sample=sample, base_seed=0, seed=task * 100 + sample,
        provenance=Provenance(env=f"{env}@v1", runtime="local", policy="scripted", weights_version=weights),
        turns=[Turn(index=0, token_ids=[1, 2], loss_mask=[0, 1], logprobs=[None, -0.5], text="hi")],
        signals={"success": 1.0 if success else 0.0}, reward=reward if reward is not None else float(success),
        error=EpisodeError(code=error, message="it failed") if error else None)


def records() -> list[Trajectory]:
    out = []
    for task in range(6):
        for sample in range(4):
            out.append(record(task, sample, success=sample < task % 4, weights=str(sample % 2)))
    out.append(record(0, 4, success=False, reward=None, error="env_crashed"))  # infrastructure: masked
    out.append(record(1, 4, success=False, error="invalid_action"))  # the agent's doing: scored, not masked
    return out


def write(path: os.PathLike[str], items: list[Trajectory], **options: int) -> None:
    with TrajectoryStore(path).writer(**options) as writer:
        for t in items:
            writer.append(t)


def test_filters_counts_and_pass_at_k_match_the_metrics(tmp_path: os.PathLike[str]) -> None:
    items = records()
    write(tmp_path, items)
    index = StoreIndex(tmp_path)
    assert index.refresh() == len(items) == len(index)
    everything = index.page(Filters())
    assert everything.counts.total == 26 and everything.counts.masked == 1 and everything.counts.tasks == 6
    assert everything.counts.errors == {"env_crashed": 1, "invalid_action": 1}
    # pass@k for k = 1, powers of 2 and the most samples a task has (5), as `gymbox eval` reports them.
    assert sorted(everything.counts.pass_at) == [1, 2, 4, 5]
    expected = summarize(items, [1, 2, 4, 5])
    assert everything.counts.pass_at == pytest.approx(expected.overall.pass_at)
    assert everything.counts.success == sum(t.signals["success"] >= 1 for t in items if not t.masked)
    # The filtered set's figures are those of the same records filtered in Python.
    cases = [(Filters(category="c1"), lambda t: t.task.category == "c1"),
             (Filters(split="test", success="yes"), lambda t: t.task.split == "test" and t.signals["success"] >= 1),
             (Filters(masked="yes"), lambda t: t.masked),
             (Filters(error="any"), lambda t: t.error is not None),
             (Filters(error="invalid_action"), lambda t: t.error is not None and t.error.code == "invalid_action"),
             (Filters(reward_min=0.5, weights="1"), lambda t: (t.reward or 0) >= 0.5 and
              t.provenance.weights_version == "1"),
             (Filters(task="t3"), lambda t: t.task.id == "t3"),
             (Filters(group="t2@0", success="no"), lambda t: t.group == "t2@0" and t.signals["success"] < 1)]
    for filters, keep in cases:
        chosen = [t for t in items if keep(t)]
        page = index.page(filters, limit=100)
        assert sorted(r["id"] for r in page.rows) == sorted(t.id for t in chosen), filters
        assert page.counts.total == len(chosen)
        if ks := sorted(page.counts.pass_at):
            assert page.counts.pass_at == pytest.approx(summarize(chosen, ks).overall.pass_at), filters
    assert index.choices()["error"] == ["env_crashed", "invalid_action"]


def test_sort_and_pages(tmp_path: os.PathLike[str]) -> None:
    items = [record(i, 0, success=True, reward=i / 10) for i in range(30)]
    write(tmp_path, items)
    index = StoreIndex(tmp_path)
    index.refresh()
    first = index.page(Filters(), sort="reward", descending=True, limit=10)
    second = index.page(Filters(), sort="reward", descending=True, offset=10, limit=10)
    assert [r["reward"] for r in first.rows + second.rows] == [i / 10 for i in range(29, 9, -1)]
    assert first.counts.total == 30
    with pytest.raises(ValueError, match="cannot sort by"):
        index.page(Filters(), sort="reward; DROP TABLE t")
    with pytest.raises(ValueError, match="reward_min must be a number"):
        Filters.from_query({"reward_min": "high"})
    assert Filters.from_query({"reward_max": " 0.5 ", "env": "echo"}) == Filters(env="echo", reward_max=0.5)


def test_reads_only_what_was_appended_while_the_store_grows(tmp_path: os.PathLike[str]) -> None:
    items = records()
    write(tmp_path, items[:10], segment_bytes=3000)  # small segments: the store spans several
    index = StoreIndex(tmp_path)
    assert index.refresh() == 10
    assert index.refresh() == 0  # nothing new: nothing read
    write(tmp_path, items[10:20], segment_bytes=3000)
    assert len(TrajectoryStore(tmp_path).segments()) > 2
    assert index.refresh() == 10 and len(index) == 20
    # A record being written (no newline yet) is not indexed until it is complete.
    segment = TrajectoryStore(tmp_path).segments()[-1]
    data = items[20].model_dump_json().encode() + b"\n"
    with open(segment, "ab") as f:
        f.write(data[:50])
    assert index.refresh() == 0
    with open(segment, "ab") as f:
        f.write(data[50:])
    assert index.refresh() == 1
    assert index.load(items[20].id) == items[20]
    # A complete line that is not a record is skipped and reported with where it is.
    with open(segment, "ab") as f:
        f.write(b'{"id": "broken"}\n')
    write(tmp_path, items[21:], segment_bytes=3000)
    assert index.refresh() == len(items) - 21
    assert len(index.skipped) == 1 and str(segment) in index.skipped[0]
    # A later record with the same id supersedes the earlier one, as `TrajectoryStore.get` reads it.
    newer = items[0].model_copy(update={"reward": 0.25})
    write(tmp_path, [newer], segment_bytes=3000)
    assert index.refresh() == 1 and len(index) == len(items)
    assert index.load(items[0].id).reward == 0.25
    assert [r["id"] for r in index.page(Filters(), sort="pos", descending=True, limit=1).rows] == [items[0].id]
    # Every record reads back whole from where the index says it is.
    assert all(index.load(t.id) == t for t in items[1:])


def test_a_single_jsonl_file_and_a_missing_store(tmp_path: os.PathLike[str]) -> None:
    from gymbox.harness.store import StoreError

    items = records()[:5]
    path = os.path.join(tmp_path, "export.jsonl")
    with open(path, "w") as f:
        f.writelines(t.model_dump_json() + "\n" for t in items)
    index = StoreIndex(path)
    assert index.refresh() == 5
    assert index.load(items[3].id) == items[3]
    with pytest.raises(StoreError, match="no trajectory store"):
        StoreIndex(os.path.join(tmp_path, "nowhere"))


def test_a_run_folder_shows_advantages_by_its_own_estimator(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    from gymbox.harness.view.app import Viewer

    run = Path(tmp_path, "run")
    write(run / "trajectories", records()[:4])
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    assert Viewer(run).estimator == "grpo"  # no config.yaml (a run from before gymbox wrote one)
    (run / "config.yaml").write_text("advantage: rloo\nsteps: 1\n")
    assert Viewer(run).estimator == "rloo"
    assert Viewer(run / "trajectories").estimator == "grpo"  # a bare store has no run settings


@pytest.mark.slow  # two starts of the command line (imports): about 10 s, more on a busy machine
def test_the_command_serves_on_loopback_and_explains_a_bad_path(tmp_path: os.PathLike[str]) -> None:
    import socket
    import subprocess
    import sys
    import time

    import httpx
    import psutil

    bad = subprocess.run([sys.executable, "-m", "gymbox.harness.cli", "view", os.path.join(tmp_path, "nowhere")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in " ".join(bad.stdout.split())  # rich wraps at the width
    store = os.path.join(tmp_path, "store")
    write(store, records()[:3])
    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "gymbox.harness.cli", "view", store, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "the viewer did not start"
                time.sleep(0.2)
        assert page.status_code == 200 and 'id="count-total">3<' in page.text
        listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                     if c.laddr and c.laddr.port == port and c.status == "LISTEN"}
        assert listening == {"127.0.0.1"}
    finally:
        server.terminate()
        server.wait(timeout=30)
