"""`gymbox traj show|ls|export`, run as a user runs them, on a real store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gymbox.harness.store import TrajectoryStore
from tests.test_store import INFRA, trajectory

GYMBOX = [sys.executable, "-m", "gymbox.harness.cli", "traj"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*GYMBOX, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traj") / "store"
    with TrajectoryStore(path).writer() as w:
        for i in range(3):
            w.append(trajectory(i, tokens=12))
        w.append(trajectory(3, error=INFRA, tokens=12))
    return path


def test_ls_lists_every_trajectory(store: Path) -> None:
    out = run("ls", store)
    assert out.returncode == 0, out.stderr
    for i in range(4):
        assert f"g0-00000{i}" in out.stdout
    assert "container_died (infra, masked)" in out.stdout and "4 trajectories, 1 masked" in out.stdout
    assert "showing 2" in run("ls", store, "--limit", "2").stdout


def test_show_prints_header_turns_and_tokens(store: Path) -> None:
    out = run("show", store, "--index", "0", "--tokens")
    assert out.returncode == 0, out.stderr
    for expected in ("trajectory g0-000000", "weather-g0 (toolcall@v1", "Qwen/Qwen2.5-0.5B-Instruct, weights 3",
                     "outcome=1, format=0.1", "turn 2", "get_weather({\"city\": \"Paris\", \"day\": 2})",
                     "sunny, 22 C", "valid_call=1", "[bold]not markup[/bold]", "parse error",
                     "[mask 0] 100 101", "[mask 1] 3 4 5"):
        assert expected in out.stdout, expected
    failed = run("show", store, "--id", "g0-000003")
    assert failed.returncode == 0 and "container_died: the sandbox exited with 137" in failed.stdout
    assert "mask 1" not in failed.stdout  # token ids only with --tokens
    assert "trajectory g0-000003" in run("show", store, "--index", "-1").stdout


def test_unknown_ids_and_paths_exit_2_with_a_reason(store: Path, tmp_path: Path) -> None:
    missing = run("show", store, "--id", "nope")
    assert missing.returncode == 2 and "no trajectory 'nope'" in missing.stderr
    beyond = run("show", store, "--index", "9")
    assert beyond.returncode == 2 and "holds 4" in beyond.stderr
    nowhere = run("ls", tmp_path / "absent")
    assert nowhere.returncode == 2 and "no trajectory store" in nowhere.stderr


def test_skipped_lines_are_reported_on_stderr(store: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes((store / "seg-000000.jsonl").read_bytes() + b"{oops\n" + b'{"id": "half')
    out = run("ls", damaged)
    assert out.returncode == 0 and "4 trajectories" in out.stdout
    assert "damaged.jsonl:5: skipped a line that is not a trajectory record" in out.stderr
    assert "skipped an incomplete last line" in out.stderr


def test_export_writes_parquet_and_jsonl(store: Path, tmp_path: Path) -> None:
    out = run("export", store, "--out", tmp_path / "t.parquet")
    assert out.returncode == 0 and "wrote 4 trajectories" in out.stdout, out.stderr
    table = pq.read_table(tmp_path / "t.parquet", columns=["id", "masked", "token_ids"])
    assert table.column("id").to_pylist() == [f"g0-00000{i}" for i in range(4)]
    assert table.column("masked").to_pylist() == [False, False, False, True]
    assert table.column("token_ids").to_pylist()[0] == trajectory(0, tokens=12).token_ids
    out = run("export", store, "--format", "jsonl", "--out", tmp_path / "t.data")
    assert out.returncode == 0, out.stderr
    assert list(TrajectoryStore(tmp_path / "t.data").iter()) == list(TrajectoryStore(store).iter())
    unknown = run("export", store, "--out", tmp_path / "t.csv")
    assert unknown.returncode == 2 and "--format parquet" in unknown.stderr
