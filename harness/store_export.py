"""Export a trajectory store to JSONL (the record schema as is) or Parquet (one flat row per trajectory)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gymbox.environments.records import Trajectory
from gymbox.harness.store import TrajectoryStore

if TYPE_CHECKING:
    import pyarrow as pa

Format = Literal["parquet", "jsonl"]
FORMATS: tuple[Format, ...] = ("parquet", "jsonl")
_TOKEN_ARRAYS = {"token_ids", "loss_mask", "logprobs"}


def parquet_schema() -> pa.Schema:
    """One row per trajectory. The sequence columns cover the prompt then every turn, aligned index for index
    (`token_ids` as `Trajectory.token_ids`, `logprobs` null where the policy did not generate); turn i starts at
    `turn_starts[i]`. The nested parts are JSON text: `turns` holds each turn without its token arrays."""
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("task_id", pa.string()), ("env", pa.string()), ("group", pa.string()),
        ("sample", pa.int64()), ("base_seed", pa.int64()), ("seed", pa.int64()),
        ("policy", pa.string()), ("weights_version", pa.string()),
        ("reward", pa.float64()), ("masked", pa.bool_()),
        ("error_code", pa.string()), ("error_message", pa.string()),
        ("terminated", pa.bool_()), ("truncated", pa.bool_()), ("truncated_by", pa.string()),
        ("num_turns", pa.int32()), ("num_tokens", pa.int64()), ("num_generated", pa.int64()),
        ("prompt_len", pa.int64()), ("started_at", pa.float64()), ("seconds", pa.float64()),
        ("env_seconds", pa.float64()), ("policy_seconds", pa.float64()),
        # Vocabularies fit int32 and policies produce float32 logprobs: half the memory of 64-bit columns.
        ("token_ids", pa.list_(pa.int32())), ("loss_mask", pa.list_(pa.int8())), ("logprobs", pa.list_(pa.float32())),
        ("turn_starts", pa.list_(pa.int64())),
        ("task", pa.string()), ("prompt", pa.string()), ("tools", pa.string()), ("turns", pa.string()),
        ("rewards", pa.string()), ("signals", pa.string()), ("provenance", pa.string()),
    ])


def parquet_row(t: Trajectory) -> dict[str, Any]:
    """The Parquet row of one trajectory (see `parquet_schema`)."""
    starts, pos = [], len(t.prompt_ids)
    for turn in t.turns:
        starts.append(pos)
        pos += len(turn.token_ids)
    mask = t.loss_mask
    error = t.error
    return {
        "id": t.id, "task_id": t.task.id, "env": t.provenance.env, "group": t.group, "sample": t.sample,
        "base_seed": t.base_seed, "seed": t.seed, "policy": t.provenance.policy,
        "weights_version": t.provenance.weights_version, "reward": t.reward, "masked": t.masked,
        "error_code": error.code if error else None, "error_message": error.message if error else None,
        "terminated": t.terminated, "truncated": t.truncated, "truncated_by": t.truncated_by,
        "num_turns": len(t.turns), "num_tokens": len(mask), "num_generated": sum(mask),
        "prompt_len": len(t.prompt_ids), "started_at": t.started_at, "seconds": t.seconds,
        "env_seconds": t.env_seconds, "policy_seconds": t.policy_seconds,
        "token_ids": t.token_ids, "loss_mask": mask,
        "logprobs": t.logprobs,
        "turn_starts": starts,
        "task": t.task.model_dump_json(),
        "prompt": json.dumps([m.model_dump(mode="json", exclude_none=True) for m in t.prompt]),
        "tools": json.dumps([tool.model_dump(mode="json") for tool in t.tools]),
        "turns": json.dumps([turn.model_dump(mode="json", exclude=_TOKEN_ARRAYS) for turn in t.turns]),
        "rewards": json.dumps(t.rewards), "signals": json.dumps(t.signals),
        "provenance": t.provenance.model_dump_json(),
    }


def export(store: TrajectoryStore, out: str | os.PathLike[str], fmt: Format, *, progress: bool = False,
           batch_rows: int = 256) -> int:
    """Write every record of `store` to `out`; returns how many. The file appears whole or not at all."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        with _progress(store.size_bytes(), progress, f"{fmt} {out.name}") as advance:
            records = _advancing(store, advance)
            count = _write_jsonl(records, tmp) if fmt == "jsonl" else _write_parquet(records, tmp, batch_rows)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _advancing(store: TrajectoryStore, advance: Callable[[int], None]) -> Iterator[Trajectory]:
    for record, nbytes in store.scan():
        advance(nbytes)
        yield record


def _write_jsonl(records: Iterator[Trajectory], path: Path) -> int:
    count = 0
    with open(path, "wb") as f:
        for record in records:
            f.write(record.model_dump_json().encode() + b"\n")
            count += 1
    return count


def _write_parquet(records: Iterator[Trajectory], path: Path, batch_rows: int) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("Parquet export needs pyarrow: pip install 'gymbox[harness]' (scripts/setup.sh "
                          "installs it), or export --format jsonl") from exc

    schema = parquet_schema()
    count, rows, tokens = 0, [], 0

    def flush() -> None:
        # Column by column: pyarrow converts a list of values per column about 3x faster than a list of rows.
        writer.write_table(pa.Table.from_pydict({f.name: [r[f.name] for r in rows] for f in schema}, schema=schema))

    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for record in records:
            rows.append(parquet_row(record))
            tokens += rows[-1]["num_tokens"]
            # Bounded by tokens too: a batch of long trajectories must not hold gigabytes of Python ints.
            if len(rows) >= batch_rows or tokens >= 1 << 24:
                flush()
                count, rows, tokens = count + len(rows), [], 0
        if rows:
            flush()
            count += len(rows)
    return count


@contextmanager
def _progress(total: int, show: bool, label: str) -> Iterator[Callable[[int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    if not (show and console.is_terminal):  # nobody watches a bar in a log file
        yield lambda n: None
        return
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
