"""A policy over an OpenAI-compatible HTTP server: token-accurate against vLLM, or chat-level against any endpoint.

Mode "tokens" posts the prompt's token ids to `/v1/completions` of a vLLM server and reads back the generated ids
and their logprobs. Those are what the server's `--logprobs-mode` says: vLLM's default is the raw model's, before
temperature and top-p; a server whose rollouts are trained on with their own log-probs (`old_logprobs: rollout`)
must run with `--logprobs-mode processed_logprobs`, the sampling distribution, as gymbox's own engine does.
Mode "chat" posts the messages to `/v1/chat/completions` and gets text only; the tools are not passed to the
server's native tool API: the harness describes them in the messages and parses calls itself.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx

from gymbox.agent.models import resolve_model
from gymbox.agent.policy import (
    Completion,
    ContextExceeded,
    FinishReason,
    Policy,
    PolicyError,
    Prompt,
    Sampling,
)

TOKEN_ID = re.compile(r"^token_id:(\d+)$")  # vLLM's form of a token with return_tokens_as_token_ids
CONTEXT = re.compile(r"context length|context_length_exceeded|prompt is too long", re.IGNORECASE)
# vLLM: "maximum context length is 2048 tokens. However, your prompt contains 3000 input tokens";
# OpenAI: "... your messages resulted in 9000 tokens"; vLLM's older "Input length (3000) exceeds ... (2048)".
MAX_LEN = re.compile(r"context length (?:is |\()(\d+)")
PROMPT_LEN = re.compile(r"(?:contains (?:at least )?|resulted in |Input length \()(\d+)")
BACKOFF = 0.5  # seconds before the first retry, doubled for each next one
MAX_BACKOFF = 30.0


class OpenAIPolicy(Policy):
    """Generates through an OpenAI-compatible server at `base_url` (`http://host:port` or `.../v1`).

    `model` None asks the server (`GET /v1/models`) and uses its first model. Mode "tokens" needs a vLLM
    server and a tokenizer (`tokenizer`, default the model's name, resolved with `resolve_model`); it also asks
    the server for its `max_model_len`. Those questions are asked when the policy is built; generation is
    asynchronous, may be awaited from any event loop (one connection pool per loop) and is retried with backoff
    on connection errors, 429 and 5xx.
    """

    def __init__(self, base_url: str, model: str | None = None, *, mode: Literal["tokens", "chat"] = "chat",
                 api_key: str | None = None, tokenizer: str | None = None, timeout: float = 600,
                 max_retries: int = 2) -> None:
        if mode not in ("tokens", "chat"):
            raise ValueError(f"mode must be 'tokens' or 'chat', not {mode!r}")
        if max_retries < 0 or timeout <= 0:
            raise ValueError("max_retries must be >= 0 and timeout > 0")
        url = base_url.rstrip("/")
        # The OpenAI SDK convention is a base URL ending in /v1; a bare server address gets it added.
        self.base_url = url + "/v1" if httpx.URL(url).path in ("", "/") else url
        self.mode = mode
        self.timeout = timeout
        self.max_retries = max_retries
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self.max_model_len = None
        if model is None or mode == "tokens":
            card = self._model_card(model)
            model = card["id"]
            self.max_model_len = card.get("max_model_len")
        self.model = self.name = model
        if mode == "tokens":
            from transformers import AutoTokenizer

            self.tokenizer_path = resolve_model(tokenizer or model)
            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)

    def _model_card(self, model: str | None) -> dict[str, Any]:
        """The server's card for `model` (its first model when None), asked synchronously at construction."""
        async def ask() -> dict[str, Any]:
            async with httpx.AsyncClient(headers=self._headers, timeout=min(self.timeout, 30)) as client:
                return await self._request(client, "GET", "models")

        # In a thread of its own: the constructor may be called where an event loop is already running.
        with ThreadPoolExecutor(1) as pool:
            cards = pool.submit(asyncio.run, ask()).result().get("data") or []
        if model is None and cards:
            return cards[0]
        for card in cards:
            if card.get("id") == model:
                return card
        served = ", ".join(str(c.get("id")) for c in cards) or "none"
        raise PolicyError(f"{self.base_url}/models serves no model {model!r} (it serves: {served})")

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        started = time.perf_counter()
        if self.mode == "tokens":
            completion = await self._tokens(prompt, sampling)
        else:
            completion = await self._chat(prompt, sampling)
        completion.seconds = time.perf_counter() - started
        return completion

    async def _tokens(self, prompt: Prompt, sampling: Sampling) -> Completion:
        ids = self.token_prompt(prompt)
        room = sampling.max_tokens if self.max_model_len is None else self.max_model_len - len(ids)
        body = {**self._sampling(sampling), "prompt": ids, "max_tokens": min(sampling.max_tokens, room),
                # logprobs 0: the sampled token's logprob only; each token as "token_id:N" (vLLM's extension)
                "logprobs": 0, "return_tokens_as_token_ids": True}
        choice, _ = await self._post("completions", body, len(ids))
        logprobs = choice.get("logprobs") or {}
        token_ids = [_token_id(token) for token in logprobs.get("tokens") or []]
        values = logprobs.get("token_logprobs")
        if values is None or len(values) != len(token_ids) or any(v is None for v in values):
            raise PolicyError(f"{self.base_url}/completions returned {len(token_ids)} tokens but no logprob for "
                              "each; is it a vLLM server?")
        return Completion(text=choice.get("text") or "", token_ids=list(token_ids), logprobs=list(values),
                          finish_reason=_finish(choice.get("finish_reason")), prompt_tokens=len(ids))

    async def _chat(self, prompt: Prompt, sampling: Sampling) -> Completion:
        if not prompt.messages:
            raise PolicyError("OpenAIPolicy in chat mode needs the prompt's messages")
        body = {**self._sampling(sampling), "max_tokens": sampling.max_tokens,
                "messages": [m.model_dump(exclude_none=True) for m in prompt.messages]}
        choice, usage = await self._post("chat/completions", body, None)
        message = choice.get("message") or {}
        return Completion(text=message.get("content") or "", finish_reason=_finish(choice.get("finish_reason")),
                          prompt_tokens=int(usage.get("prompt_tokens") or 0))

    def _sampling(self, sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "temperature": sampling.temperature, "top_p": sampling.top_p}
        # Optional fields only when set: strict endpoints reject unknown or null ones (top_k is not OpenAI's).
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.ignore_eos:  # vLLM's extension
            body["ignore_eos"] = True
        return body

    def _client(self) -> httpx.AsyncClient:
        # A pooled connection belongs to the loop that opened it: one client per event loop.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            self._clients = {lp: c for lp, c in self._clients.items() if not lp.is_closed()}
            client = self._clients[loop] = httpx.AsyncClient(headers=self._headers, timeout=self.timeout)
        return client

    async def _post(self, path: str, body: dict[str, Any], prompt_tokens: int | None) -> tuple[dict, dict]:
        """POST `body`; the first choice and the usage of the answer."""
        data = await self._request(self._client(), "POST", path, body, prompt_tokens)
        if not data.get("choices"):
            raise PolicyError(f"{self.base_url}/{path} answered with no choices: {str(data)[:300]}")
        return data["choices"][0], data.get("usage") or {}

    async def _request(self, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None = None,
                       prompt_tokens: int | None = None) -> dict[str, Any]:
        """One call with retries on connection errors, 429 and 5xx; its JSON answer, or a typed error."""
        url = f"{self.base_url}/{path}"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await client.request(method, url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if last:
                    raise PolicyError(f"cannot reach {url} after {_tries(attempt + 1)} ({type(exc).__name__}: "
                                      f"{exc}); is the server running?") from exc
                await asyncio.sleep(_backoff(attempt, None))
                continue
            except httpx.TimeoutException as exc:  # a slow generation: retrying would only wait as long again
                raise PolicyError(f"{url} did not answer within {client.timeout.read} s "
                                  f"({type(exc).__name__})") from exc
            status = response.status_code
            if (status == 429 or status >= 500) and not last:
                await asyncio.sleep(_backoff(attempt, response))
                continue
            if status == 200:
                try:
                    return response.json()
                except ValueError as exc:
                    raise PolicyError(f"{url} answered 200 with no JSON: {response.text[:300]!r}") from exc
            message = _server_message(response)
            if status == 400 and CONTEXT.search(message):
                raise _context_exceeded(message, prompt_tokens, self.max_model_len)
            raise PolicyError(f"{method} {url} answered {status}: {message}")
        raise AssertionError("unreachable")

    async def load_weights(self, path: str, version: str) -> None:
        """A vLLM server reloads its weights in place from `path`, a folder it can read (same machine or shared
        disk). It needs the server's development endpoints: start it with VLLM_SERVER_DEV_MODE=1."""
        root = self.base_url.removesuffix("/v1")
        calls = (("collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(path)}}),
                 ("reset_prefix_cache", None))
        for endpoint, body in calls:
            url = f"{root}/{endpoint}"
            try:
                response = await self._client().post(url, json=body, timeout=max(self.timeout, 600))
            except httpx.HTTPError as exc:
                raise PolicyError(f"cannot reach {url} ({type(exc).__name__}: {exc}); the server keeps weights "
                                  f"version {self.weights_version}") from exc
            if response.status_code == 404:
                raise PolicyError(f"{url} does not exist: start the vLLM server with VLLM_SERVER_DEV_MODE=1 to "
                                  "let a trainer reload its weights")
            if response.status_code != 200:
                raise PolicyError(f"{url} answered {response.status_code}: {_server_message(response)}; the "
                                  f"server keeps weights version {self.weights_version}")
        self.weights_version = version

    def describe(self) -> dict[str, Any]:
        info = {**super().describe(), "engine": "openai", "base_url": self.base_url, "model": self.model,
                "mode": self.mode, "max_model_len": self.max_model_len}
        if self.mode == "tokens":
            info["tokenizer"] = self.tokenizer_path
        return info

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for loop, client in clients.items():
            # Only the current loop's client can be closed here; the others' loops own their connections.
            if loop is asyncio.get_running_loop():
                await client.aclose()


def _backoff(attempt: int, response: httpx.Response | None) -> float:
    """Seconds to wait before retry `attempt + 1`: the server's Retry-After when it gives one in seconds."""
    retry_after = response.headers.get("retry-after", "") if response is not None else ""
    if retry_after.replace(".", "", 1).isdigit():
        return min(float(retry_after), MAX_BACKOFF)
    return min(BACKOFF * 2 ** attempt, MAX_BACKOFF)


def _server_message(response: httpx.Response) -> str:
    """The error message of an OpenAI-style error body, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return str(data)[:500]


def _context_exceeded(message: str, prompt_tokens: int | None, max_model_len: int | None) -> ContextExceeded:
    max_len, prompt_len = MAX_LEN.search(message), PROMPT_LEN.search(message)
    error = ContextExceeded(int(prompt_len.group(1)) if prompt_len else prompt_tokens or 0,
                            int(max_len.group(1)) if max_len else max_model_len or 0)
    error.args = (f"{error.args[0]} (the server said: {message})",)
    return error


def _token_id(token: str) -> int:
    match = TOKEN_ID.match(token)
    if match is None:
        raise PolicyError(f"the server returned the token {token!r}, not 'token_id:N': is it a vLLM server?")
    return int(match.group(1))


def _finish(reason: str | None) -> FinishReason:
    # "tool_calls" and "content_filter" also end the turn; only the budget and an abort are told apart.
    return "length" if reason == "length" else "abort" if reason == "abort" else "stop"


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"
