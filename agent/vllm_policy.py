"""A token policy over an in-process vLLM engine: concurrent `generate` calls are batched by one `AsyncLLM`.

The engine lives on its own event loop in a background thread, so the policy can be built where no loop runs
(a Ray actor's `__init__`) and `generate` awaited from any event loop or thread: each call is handed to the
engine's loop and its result handed back. Cancelling the caller's task cancels the request there, and vLLM
aborts it in the engine. The engine's processes end with the process that started it, however it ends
(`engine_guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from gymbox.agent import engine_guard
from gymbox.agent.cpu import cpu_flags, engine_dtype, omp_binding
from gymbox.agent.models import hf_overrides, model_path
from gymbox.agent.policy import Completion, FinishReason, Policy, PolicyError, Prompt, Sampling

log = logging.getLogger(__name__)

GiB = 1 << 30
# On the CPU the KV cache is RAM and vLLM's default sizing (a fraction of memory) fails; 2 GiB holds about
# 90k tokens of SmolLM2-135M, dozens of full-length episodes, without taking a large share of a small machine.
DEFAULT_CPU_KV_CACHE_GIB = 2.0
BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"  # which CPUs the engine's OpenMP threads run on; a user's setting wins
KVCACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"  # vLLM's legacy knob (whole GiB); on the CPU it overrides the engine args
SHUTDOWN_TIMEOUT = 10.0
FINISH: dict[str | None, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort",
                                          "repetition": "stop"}  # repetition: the engine ended it, not the budget


class VLLMPolicy(Policy):
    """SmolLM2 (or any local / hub model) served by an in-process vLLM engine.

    Constructing it starts the engine and blocks until it is ready (about a minute on 2 CPU cores); in a running
    event loop use `policy = await VLLMPolicy.start(...)`, which builds it in a worker thread. `kv_cache_gib` is
    the KV cache size (RAM on the CPU; default 2 GiB there, vLLM's own sizing on a GPU); other keyword
    arguments go to `vllm.AsyncEngineArgs` unchanged.
    """

    def __init__(self, model: str | None = None, *, max_model_len: int = 4096, kv_cache_gib: float | None = None,
                 dtype: str = "auto", seed: int = 0, enforce_eager: bool = True, weights_version: str = "0",
                 **engine_kwargs: Any) -> None:
        import vllm
        from transformers import AutoTokenizer
        from vllm.platforms import current_platform

        self.model_path = model_path(model or "default")
        self.name = Path(self.model_path).name if Path(self.model_path).is_dir() else self.model_path
        self.max_model_len = max_model_len
        self.weights_version = weights_version
        self.vllm_version = vllm.__version__
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._closed = False
        if kv_cache_gib is not None:
            if kv_cache_gib <= 0:
                raise ValueError(f"kv_cache_gib must be positive, not {kv_cache_gib}")
            if current_platform.is_cpu() and os.environ.get(KVCACHE_ENV):
                raise ValueError(f"kv_cache_gib={kv_cache_gib} and {KVCACHE_ENV}={os.environ[KVCACHE_ENV]} are "
                                 f"both set and vLLM lets the variable win on the CPU; unset one of them")
            engine_kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * GiB)
        elif current_platform.is_cpu() and not os.environ.get(KVCACHE_ENV) and \
                not {"kv_cache_memory_bytes", "gpu_memory_utilization"} & engine_kwargs.keys():
            engine_kwargs["kv_cache_memory_bytes"] = int(DEFAULT_CPU_KV_CACHE_GIB * GiB)
        if current_platform.is_cpu():
            # vLLM 0.32 on the CPU: a seeded request whose prompt is split over steps (chunked prefill) rewinds
            # its torch.Generator with set_offset, which CPU generators lack, and the engine dies. Unsplit
            # prompts avoid it; the step budget then grows to max_model_len.
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            if BIND_ENV not in os.environ and (cpus := omp_binding(os.sched_getaffinity(0))):
                os.environ[BIND_ENV] = cpus  # read by the engine's worker process, which inherits it
        # vLLM's default reports log-probs of the raw logits; training weighs each token by the probability it was
        # sampled with (after temperature, top-k and top-p), which "processed" reports.
        engine_kwargs.setdefault("logprobs_mode", "processed_logprobs")
        self.dtype_reason: str | None = None  # why the engine computes in its dtype, when gymbox chose it
        if dtype == "auto" and current_platform.is_cpu():
            # "auto" is the checkpoint's dtype (bf16 for the default model): see engine_dtype for why not on a CPU.
            dtype, self.dtype_reason = engine_dtype(cpu_flags())
        if overrides := hf_overrides(self.model_path):
            engine_kwargs.setdefault("hf_overrides", overrides)
        args = vllm.AsyncEngineArgs(model=self.model_path, tokenizer=self.model_path, max_model_len=max_model_len,
                                    dtype=dtype, seed=seed, enforce_eager=enforce_eager, **engine_kwargs)

        started = time.perf_counter()
        children = _children()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine-loop", daemon=True)
        self._thread.start()
        try:
            # Built on its own loop, so vLLM's output tasks start there at once and see an early engine failure.
            self._engine = asyncio.run_coroutine_threadsafe(_create_engine(args), self._loop).result()
        except BaseException as exc:
            _stop_loop(self._loop, self._thread)
            raise PolicyError(f"vLLM could not start {self.model_path} ({type(exc).__name__}: {exc}); see the "
                              "engine log above (on the CPU: lower kv_cache_gib or max_model_len)") from exc
        self.start_seconds = time.perf_counter() - started
        config = self._engine.vllm_config
        self.dtype = str(config.model_config.dtype).removeprefix("torch.")
        self.kv_cache_bytes = config.cache_config.kv_cache_memory_bytes
        # multiprocessing's resource tracker, started with a first engine, is the process's, not the engine's.
        engine = [p for pid, p in _children().items() if pid not in children and not _is_resource_tracker(p)]
        guard = engine_guard.watch(engine)  # for an end that runs no finalizer: SIGTERM, SIGKILL
        # Shuts the engine down at interpreter exit if close() was never called; holds no reference to self.
        self._finalizer = weakref.finalize(self, _shutdown, self._engine, self._loop, self._thread, guard)
        log.info("vLLM engine for %s ready in %.1f s", self.name, self.start_seconds)

    @classmethod
    async def start(cls, model: str | None = None, **kwargs: Any) -> VLLMPolicy:
        """Build the policy without blocking the running event loop (same arguments as the constructor)."""
        future = asyncio.get_running_loop().run_in_executor(None, lambda: cls(model, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The engine still comes up in the worker thread: shut it down then rather than leak its processes.
            future.add_done_callback(lambda f: f.exception() is None and f.result()._shutdown())
            raise

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        ids = self.token_prompt(prompt)
        if self._closed:
            raise PolicyError(f"the vLLM policy for {self.name} is closed; create a new one")
        params = self._params(sampling, self.max_model_len - len(ids))
        started = time.perf_counter()
        future = asyncio.run_coroutine_threadsafe(self._run(self._engine, ids, params), self._loop)
        try:
            # Cancelling this await cancels the future, which cancels the task on the engine loop: vLLM aborts.
            completion = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed and task is not None and not task.cancelling():  # cancelled by close(), not the caller
                raise PolicyError(f"the vLLM policy for {self.name} was closed during this generation") from None
            raise
        completion.seconds = time.perf_counter() - started
        return completion

    def _params(self, sampling: Sampling, room: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(max_tokens=min(sampling.max_tokens, room), temperature=sampling.temperature,
                              top_p=sampling.top_p, top_k=max(sampling.top_k, 0), seed=sampling.seed,
                              stop=list(sampling.stop) or None, ignore_eos=sampling.ignore_eos,
                              logprobs=0,  # 0: only the sampled token's
                              output_kind=RequestOutputKind.FINAL_ONLY)

    async def _run(self, engine: Any, ids: list[int], params: Any) -> Completion:
        """One request on the engine loop."""
        from vllm.inputs import tokens_input
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        try:
            async for output in engine.generate(tokens_input(ids), params, uuid.uuid4().hex):
                final = output  # FINAL_ONLY: a single output, when the request ends
        except EngineDeadError as exc:
            raise PolicyError(f"the vLLM engine for {self.name} died ({exc}); see its log for the cause, "
                              "then close this policy and start a new one") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a request-level failure (validation, EngineGenerateError): the engine lives on
            cause = exc.__cause__ or exc
            raise PolicyError(f"vLLM failed this request ({type(cause).__name__}: {cause})") from exc
        if final is None or not final.outputs:
            raise PolicyError("vLLM finished the request without an output")
        out = final.outputs[0]
        if out.finish_reason == "error":
            raise PolicyError("vLLM reported an internal error for this request; retrying it may succeed")
        token_ids = list(out.token_ids)
        logprobs = [position[token].logprob for token, position in zip(token_ids, out.logprobs or [], strict=True)]
        return Completion(text=out.text, token_ids=token_ids, logprobs=logprobs,
                          finish_reason=FINISH.get(out.finish_reason, "abort"), prompt_tokens=len(ids))

    async def load_weights(self, path: str, version: str) -> None:
        """Reload every weight in place from `path` (no engine restart), then drop the prefix cache, whose KV
        entries the old weights computed."""
        if self._closed:
            raise PolicyError(f"the vLLM policy for {self.name} is closed; create a new one")

        async def reload(engine: Any) -> None:
            await engine.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
            await engine.reset_prefix_cache()

        future = asyncio.run_coroutine_threadsafe(reload(self._engine), self._loop)
        try:
            await asyncio.wrap_future(future)
        except Exception as exc:
            raise PolicyError(f"vLLM could not load the weights in {path} ({type(exc).__name__}: {exc}); the "
                              f"engine keeps version {self.weights_version}") from exc
        self.weights_version = version

    def healthy(self) -> bool:
        return not self._closed and not self._engine.errored  # errored: its EngineCore process died or stopped

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "engine": "vllm", "vllm": self.vllm_version, "model": self.model_path,
                "dtype": self.dtype, "dtype_reason": self.dtype_reason, "max_model_len": self.max_model_len,
                "kv_cache_gib": None if self.kv_cache_bytes is None else round(self.kv_cache_bytes / GiB, 3)}

    async def close(self) -> None:
        # Shutting the engine down joins its processes: do it off the caller's loop.
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        """Stop the engine, its processes and its loop (idempotent, bounded in time)."""
        self._closed = True
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        # Let the engine object go now: collected at interpreter exit, vLLM's __del__ fails on a torn-down module.
        self._engine = None


async def _create_engine(args: Any) -> Any:
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_engine_args(args)


def _children() -> dict[int, Any]:
    """This process's descendants, by pid."""
    import psutil

    return {p.pid: p for p in psutil.Process().children(recursive=True)}


def _is_resource_tracker(process: Any) -> bool:
    try:
        return "resource_tracker" in " ".join(process.cmdline())
    except Exception:  # gone already, or not ours to read
        return False


def _shutdown(engine: Any, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
              guard: subprocess.Popen[bytes] | None = None) -> None:
    async def stop() -> None:
        engine.shutdown(timeout=SHUTDOWN_TIMEOUT)
        # Requests still in flight end now (their callers get PolicyError) instead of waiting on a stopped loop.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    if thread.is_alive():
        # On the engine's own loop, so its tasks are cancelled where they run.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=SHUTDOWN_TIMEOUT + 5)
    else:
        with contextlib.suppress(Exception):
            engine.shutdown(timeout=SHUTDOWN_TIMEOUT)
    _stop_loop(loop, thread)
    if guard is not None:
        engine_guard.stop(guard)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if thread.is_alive():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
    if not thread.is_alive() and not loop.is_closed():
        loop.close()
