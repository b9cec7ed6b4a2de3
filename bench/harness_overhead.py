"""Harness overhead: generated tokens/s through raw vLLM against the full episode loop, and memory per episode.

Both sides generate the same token sequences with the same budget. The harness side runs multi-turn episodes
(`play_all`: chat formatting with token ids, parsing, the step API to in-process `echo` environments,
trajectory records) with a real vLLM engine on SmolLM2-135M; every turn generates exactly `--tokens` tokens
(`ignore_eos`), so replies do not parse and each turn's answer is a format reminder, which keeps episodes
going for `--turns` turns. The raw side then submits the very same requests straight to the engine
(`AsyncLLM.generate`): for each episode, turn after turn, the token ids the harness had built before that turn,
with the same seed and budget; episodes run concurrently on both sides. Sides alternate (harness, raw,
harness, raw, ...) after a warm-up round; the harness's share is the median of each pair's ratio.

Memory, per concurrent episode, beyond the policy (the engine and its KV cache live in vLLM's own process):
the peak of Python allocations made during one more harness round, traced with `tracemalloc` (a round of its
own, since tracing slows Python down), divided by the number of episodes; it includes everything the round
allocates in this process (episode state, token lists, trajectories, the step API's messages, and vLLM's
per-request bookkeeping on the client side). The growth of this process's resident size during the first,
cold round (sampled every 5 ms) is reported beside it: it also counts one-time costs such as imports.

The last line of output is a JSON object with every figure and `goals_met`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import tracemalloc
from typing import Any

from _memory import PeakRss, rss_mb

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the engine's INFO lines would bury the figures

GOALS = {"throughput_share": 0.90, "mb_per_episode": 50.0}


async def harness_round(policy: Any, tasks: list[Any], args: argparse.Namespace, base_seed: int) -> dict[str, Any]:
    from gymbox.agent.policy import Sampling
    from gymbox.environments.runtime import LocalRuntime
    from gymbox.harness.episode import EpisodeConfig
    from gymbox.harness.rollout import play_all

    config = EpisodeConfig(sampling=Sampling(max_tokens=args.tokens, temperature=1.0, ignore_eos=True),
                           max_turns=args.turns, retries=0)
    async with LocalRuntime("echo") as runtime:
        before = rss_mb()
        with PeakRss() as peak:
            started = time.perf_counter()
            trajectories = await play_all(runtime, tasks, policy, group_size=1, config=config, base_seed=base_seed,
                                          concurrency=len(tasks))
            seconds = time.perf_counter() - started
    errors = [t.error.message for t in trajectories if t.error]
    if errors:
        raise SystemExit(f"harness episodes failed: {errors[:3]}")
    generated = sum(sum(turn.loss_mask) for t in trajectories for turn in t.turns)
    return {"seconds": seconds, "tokens": generated, "tokens_per_s": generated / seconds,
            "mb_per_episode": max(0.0, peak.peak - before) / len(tasks), "trajectories": trajectories}


def requests_of(trajectories: list[Any], args: argparse.Namespace) -> list[list[tuple[list[int], int]]]:
    """Per episode, per turn: the token ids before that turn's generation, and its sampling seed."""
    from gymbox.harness.episode import turn_seed

    streams = []
    for t in trajectories:
        ids, turns = list(t.prompt_ids), []
        for turn in t.turns:
            turns.append((list(ids), turn_seed(t.seed, t.sample, turn.index)))
            ids += turn.token_ids
        streams.append(turns)
    return streams


async def raw_round(policy: Any, streams: list[list[tuple[list[int], int]]],
                    args: argparse.Namespace) -> dict[str, Any]:
    """The same requests straight to vLLM's AsyncLLM on the engine's loop, episodes concurrently."""
    import uuid

    from vllm import SamplingParams
    from vllm.inputs import tokens_input
    from vllm.sampling_params import RequestOutputKind

    engine = policy._engine  # the AsyncLLM itself: nothing of gymbox between the request and the engine

    async def stream(turns: list[tuple[list[int], int]]) -> int:
        count = 0
        for ids, seed in turns:
            params = SamplingParams(max_tokens=args.tokens, temperature=1.0, seed=seed, ignore_eos=True, logprobs=0,
                                    output_kind=RequestOutputKind.FINAL_ONLY)
            async for output in engine.generate(tokens_input(ids), params, uuid.uuid4().hex):
                final = output
            count += len(final.outputs[0].token_ids)
        return count

    async def all_streams() -> tuple[int, float]:
        started = time.perf_counter()
        counts = await asyncio.gather(*(stream(turns) for turns in streams))
        return sum(counts), time.perf_counter() - started

    tokens, seconds = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(all_streams(), policy._loop))
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from gymbox.agent.vllm_policy import VLLMPolicy
    from gymbox.tasks import load_suite

    tasks = list(load_suite("echo-demo").tasks)[: args.episodes]
    while len(tasks) < args.episodes:  # more episodes than tasks: the same tasks again, under other ids
        tasks += [t.model_copy(update={"id": f"{t.id}-{len(tasks)}"}) for t in tasks[: args.episodes - len(tasks)]]
    print("starting vLLM (SmolLM2-135M-Instruct, CPU) ...", flush=True)
    policy = await VLLMPolicy.start(max_model_len=args.max_model_len)
    try:
        print(f"warm-up: {args.episodes} episodes x {args.turns} turns x {args.tokens} tokens", flush=True)
        warm = await harness_round(policy, tasks, args, base_seed=0)
        cold_rss_mb = warm["mb_per_episode"]
        streams = requests_of(warm["trajectories"], args)
        await raw_round(policy, streams, args)
        harness, raw = [], []
        for repeat in range(args.repeats):
            h = await harness_round(policy, tasks, args, base_seed=0)
            h.pop("trajectories")
            harness.append(h)
            raw.append(await raw_round(policy, streams, args))
            print(f"round {repeat + 1}: harness {h['tokens_per_s']:.1f} tok/s ({h['tokens']} tokens), raw "
                  f"{raw[-1]['tokens_per_s']:.1f} tok/s ({raw[-1]['tokens']} tokens)", flush=True)
        tracemalloc.start()
        await harness_round(policy, tasks, args, base_seed=0)
        traced_mb = tracemalloc.get_traced_memory()[1] / 2**20 / len(tasks)
        tracemalloc.stop()
        print(f"memory round: {traced_mb:.2f} MB allocated per concurrent episode at the peak", flush=True)
    finally:
        await policy.close()
    h_rate = statistics.median(r["tokens_per_s"] for r in harness)
    r_rate = statistics.median(r["tokens_per_s"] for r in raw)
    mb = traced_mb
    # Each harness round is paired with the raw round run right after it: the median of the pairs' ratios is
    # steadier than a ratio of medians when the machine's speed drifts between rounds.
    share = statistics.median(h["tokens_per_s"] / r["tokens_per_s"] for h, r in zip(harness, raw, strict=True))
    return {"episodes": args.episodes, "turns": args.turns, "tokens_per_turn": args.tokens,
            "raw_tokens_per_s": round(r_rate, 1), "harness_tokens_per_s": round(h_rate, 1),
            "harness_share": round(share, 3), "harness_mb_per_episode": round(mb, 3),
            "cold_round_rss_mb_per_episode": round(cold_rss_mb, 3),
            "runs": {"harness": harness, "raw": raw}, "cpus": os.cpu_count(),
            "goals": GOALS, "goals_met": {"throughput": share >= GOALS["throughput_share"],
                                          "memory": mb < GOALS["mb_per_episode"]}}


def table(result: dict[str, Any]) -> str:
    rows = [("generated tokens/s, raw vLLM", f"{result['raw_tokens_per_s']:.1f}"),
            ("generated tokens/s, harness", f"{result['harness_tokens_per_s']:.1f}"),
            ("harness share of raw", f"{100 * result['harness_share']:.1f}% (goal >= 90%)"),
            ("harness memory per concurrent episode", f"{result['harness_mb_per_episode']:.2f} MB (goal < 50 MB)"),
            ("resident growth per episode, cold round", f"{result['cold_round_rss_mb_per_episode']:.2f} MB")]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


if __name__ == "__main__":  # vLLM spawns its engine process: the guard is required
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32, help="concurrent episodes")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per turn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-model-len", type=int, default=4096)
    result = asyncio.run(main(parser.parse_args()))
    print(table(result))
    print(json.dumps(result))
