"""`gymbox webshop serve`: the web shop as HTML pages a person can use, driven by the environment through its client.

Every page is the environment's own page (its segments from the session's state): text, buttons that send
`click[...]`, a search box on the search page; what a person clicks is the action an agent would send.
"""

from __future__ import annotations

import asyncio
import html
import secrets
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.errors import EnvError
from gymbox.environments.api.models import Action, ToolCall
from gymbox.environments.runtime import LocalRuntime
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.suites import load_suite

STYLE = """body{font-family:sans-serif;max-width:60em;margin:1em auto}button{margin:.2em}
.clicked{background:#2a6;color:#fff}.instruction{background:#eef;padding:.5em}.note{background:#fee;padding:.5em}
.done{background:#efe;padding:.5em;font-size:1.2em}"""


@dataclass
class Visit:
    """One person's episode: the client of its session, and the last answer to show above the page."""

    client: EnvClient
    task: TaskSpec
    note: str = ""
    done: bool = False
    reward: float | None = None
    signals: dict[str, float] = field(default_factory=dict)


class ShopSite:
    """The environment hosted in-process on a loop thread, and one session per browser (a cookie)."""

    def __init__(self, suite: str = "webshop:test") -> None:
        self.tasks = {t.id: t for t in load_suite(suite).tasks}
        self.first = next(iter(self.tasks))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="webshop-site", daemon=True)
        self.thread.start()
        self.runtime = LocalRuntime("webshop")
        self.run(self.runtime.start())
        self.visits: dict[str, Visit] = {}

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def start(self, task_id: str) -> str:
        """A new episode of `task_id`; its visit's cookie."""
        task = self.tasks.get(task_id)
        if task is None:
            raise KeyError(task_id)
        client = self.run(self.runtime.client())
        self.run(client.reset(task, 0))
        key = secrets.token_hex(16)
        self.visits[key] = Visit(client, task)
        return key

    def act(self, visit: Visit, form: dict[str, str]) -> None:
        if visit.done:
            visit.note = "The episode is over. Start a new one."
            return
        call = (ToolCall.make("search", {"query": form.get("query", "")}) if "query" in form
                else ToolCall.make("click", {"button": form.get("click", "")}))
        try:
            result = self.run(visit.client.step(Action(tool_calls=[call])))
        except EnvError as err:
            visit.note = f"{type(err).__name__}: {err.message}"
            return
        text = result.observation.messages[0].content or ""
        visit.note = text if result.done or text.startswith("Error: ") else ""
        visit.done, visit.reward, visit.signals = result.done, result.reward, dict(result.signals)

    def page(self, visit: Visit) -> str:
        state = self.run(visit.client.state()).env_state
        body = [f"<p>Task <code>{html.escape(visit.task.id)}</code> · <a href='/new'>another task</a></p>"]
        if visit.note:
            body.append(f"<div class='{'done' if visit.done else 'note'}' id='note'>{html.escape(visit.note)}</div>")
        if visit.done:
            body.append(f"<p id='reward'>Reward: {visit.reward if visit.reward is not None else 0:.4f}</p>")
            body.append("<ul>" + "".join(f"<li>{html.escape(k)}: {v:.3f}</li>" for k, v in sorted(
                visit.signals.items())) + "</ul>")
        else:
            body.append(render_segments(state.get("segments", []), state.get("page", "search")))
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>gymbox web shop</title><style>{STYLE}"
                f"</style></head><body><h1>gymbox web shop</h1>{''.join(body)}</body></html>")


def render_segments(segments: list[list[str]], page: str) -> str:
    """The environment's page as HTML: the instruction, text, and a button per clickable segment."""
    out = []
    for i, (kind, text) in enumerate(segments):
        safe = html.escape(text)
        if i == 1:
            out.append(f"<div class='instruction' id='instruction'>{safe}</div>")
        elif kind == "text" and i > 1:
            out.append(f"<div>{safe}</div>")
        elif page == "search" and text == "Search":
            out.append("<form method='post' action='/act'><input name='query' id='query' size='60'>"
                       "<button type='submit' id='search'>Search</button></form>")
        elif kind in ("button", "clicked"):
            css = " class='clicked'" if kind == "clicked" else ""
            out.append(f"<form method='post' action='/act' style='display:inline'><button name='click'{css} "
                       f"value='{safe}'>{safe}</button></form>")
    return "\n".join(out)


def make_handler(site: ShopSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # the terminal is for the person, not access logs
            pass

        def _visit(self) -> Visit | None:
            cookie = self.headers.get("Cookie", "")
            key = next((c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("shop=")), "")
            return site.visits.get(key)

        def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            for name, value in {"Content-Type": "text/html; charset=utf-8", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            visit = self._visit()
            if url.path == "/new" or visit is None:
                task_id = parse_qs(url.query).get("task", [site.first])[0]
                try:
                    key = site.start(task_id)
                except KeyError:
                    return self._send(404, f"no task {html.escape(task_id)} in this suite")
                return self._send(303, headers={"Location": "/", "Set-Cookie": f"shop={key}; Path=/"})
            self._send(200, site.page(visit))

        def do_POST(self) -> None:
            visit = self._visit()
            if visit is None:
                return self._send(303, headers={"Location": "/new"})
            size = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(size).decode(), keep_blank_values=True).items()}
            site.act(visit, form)
            self._send(303, headers={"Location": "/"})

    return Handler


def serve(host: str = "127.0.0.1", port: int = 8200, suite: str = "webshop:test") -> ThreadingHTTPServer:
    """The site's HTTP server, bound and ready; call `serve_forever` on it (port 0 picks a free port)."""
    site = ShopSite(suite)
    return ThreadingHTTPServer((host, port), make_handler(site))
