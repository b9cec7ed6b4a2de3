"""The viewer's web app (Starlette + Jinja2 templates): list, trajectory, compare, group, run and replay pages."""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gymbox.environments.records import Trajectory
from gymbox.harness.view import folders, present
from gymbox.harness.view.index import SORTS, Filters, StoreIndex

HERE = Path(__file__).parent
PAGE = 50


class Viewer:
    """What the pages read: the opened folder, the store's index, and tokenizers for the token view."""

    def __init__(self, path: str | Path, *, tokenizer: str | None = None) -> None:
        self.opened = folders.open_path(path)
        self.index = StoreIndex(self.opened.store)
        self.tokenizers = present.Tokenizers(tokenizer)
        # The group advantages a run's learner used: its estimator, when the folder says (else GRPO's).
        estimator = folders.run_config(self.opened.root).get("advantage") if self.opened.kind == "run" else None
        self.estimator = estimator if estimator in present.ESTIMATORS else "grpo"

    def load(self, trajectory_id: str) -> Trajectory:
        return self.index.load(trajectory_id)

    def group(self, trajectory: Trajectory) -> list[Trajectory]:
        return [self.load(i) for i in self.index.ids_of_group(trajectory.group)]


def create_app(path: str | Path | Viewer, *, tokenizer: str | None = None) -> Starlette:
    """The app over PATH (a store, a run folder or an eval folder), or over a `Viewer` already indexed."""
    viewer = path if isinstance(path, Viewer) else Viewer(path, tokenizer=tokenizer)
    viewer.index.refresh()
    # The advantages need torch (seconds to import): started now, so the first trajectory page does not wait long.
    threading.Thread(target=importlib.import_module, args=("gymbox.harness.train_signal",), daemon=True).start()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["num"] = _num
    templates.env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=1, default=str)

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        base = {"kind": viewer.opened.kind, "root": str(viewer.opened.root)}
        return templates.TemplateResponse(request, template, {**base, **context}, status_code=status)

    def missing(request: Request, what: str) -> Response:
        return render(request, "error.html", 404, message=f"{what} is not in {viewer.opened.store} (the list shows "
                      "what it holds)")

    async def listing(request: Request) -> Response:
        viewer.index.refresh()  # what writers appended since the last page
        query = dict(request.query_params)
        try:
            filters = Filters.from_query(query)
            sort = query.get("sort") or "pos"
            page = viewer.index.page(filters, sort=sort, descending=query.get("desc") == "1",
                                     offset=max(0, int(query.get("offset") or 0)), limit=PAGE)
        except ValueError as err:
            return render(request, "error.html", 400, message=f"bad filter: {err}")
        return render(request, "list.html", page=page, filters=filters, choices=viewer.index.choices(),
                      sorts=SORTS, sort=sort, desc=query.get("desc") == "1", query=query,
                      skipped=viewer.index.skipped[-5:], skipped_count=len(viewer.index.skipped))

    async def trajectory(request: Request) -> Response:
        trajectory_id = request.query_params.get("id", "")
        estimator = request.query_params.get("estimator", viewer.estimator)
        turn_level = request.query_params.get("turn_level") == "1"
        try:
            t = viewer.load(trajectory_id)
        except KeyError:
            return missing(request, f"trajectory {trajectory_id!r}")
        group = viewer.group(t)
        values, note = present.group_advantages(group, estimator=estimator, turn_level=turn_level)
        position = next(i for i, g in enumerate(group) if g.id == t.id)
        tokenizer = viewer.tokenizers.for_trajectory(t)
        token_turns = [present.tokens(turn.token_ids, turn.loss_mask, turn.logprobs, tokenizer) for turn in t.turns]
        prompt_tokens = present.tokens(t.prompt_ids, [0] * len(t.prompt_ids), [None] * len(t.prompt_ids), tokenizer)
        return render(request, "trajectory.html", t=t, group=group, advantage=values[position],
                      turn_adv=present.per_turn(values[position], len(t.turns)), estimator=estimator, note=note,
                      estimators=present.ESTIMATORS, turn_level=turn_level, prompt_tokens=prompt_tokens,
                      token_turns=token_turns, token_summary=present.token_summary(t), decoded=tokenizer is not None)

    async def compare(request: Request) -> Response:
        ids = [request.query_params.get("a", ""), request.query_params.get("b", "")]
        pair = []
        for trajectory_id in ids:
            try:
                pair.append(viewer.load(trajectory_id))
            except KeyError:
                return missing(request, f"trajectory {trajectory_id!r}")
        a, b = pair
        n = max(len(a.turns), len(b.turns))
        rows = [(i, a.turns[i] if i < len(a.turns) else None, b.turns[i] if i < len(b.turns) else None)
                for i in range(n)]
        differs = [present.turn_differs(x, y) for _, x, y in rows]
        return render(request, "compare.html", a=a, b=b, rows=rows, differs=differs,
                      same_task=a.task.id == b.task.id)

    async def group_page(request: Request) -> Response:
        name = request.query_params.get("g", "")
        ids = viewer.index.ids_of_group(name)
        if not ids:
            return missing(request, f"group {name!r}")
        group = [viewer.load(i) for i in ids]
        estimator = request.query_params.get("estimator", viewer.estimator)
        values, note = present.group_advantages(group, estimator=estimator)
        components = sorted({k for t in group for k in t.rewards})
        return render(request, "group.html", name=name, group=group, values=values, note=note, components=components,
                      estimator=estimator, estimators=present.ESTIMATORS)

    async def run_page(request: Request) -> Response:
        root = viewer.opened.root
        rows = folders.metrics(root)
        evals = folders.evaluations(root)
        keys = sorted({k for e in evals for k in e if k.startswith("reward/")})
        return render(request, "run.html", plots=folders.plot_names(rows), evals=evals, eval_keys=keys,
                      summary=folders.eval_summary(root), steps=len(rows))

    async def plot(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            svg = folders.plot_svg(viewer.opened.root, name)
        except KeyError:
            return missing(request, f"plot {name!r}")
        return Response(svg, media_type="image/svg+xml")

    async def replay(request: Request) -> Response:
        from gymbox.harness.replay import replay as replay_all

        form = await request.form()
        trajectory_id = str(form.get("id", ""))
        try:
            t = viewer.load(trajectory_id)
        except KeyError:
            return missing(request, f"trajectory {trajectory_id!r}")
        (result,) = await replay_all([t], tokenizer=viewer.tokenizers.for_trajectory(t))
        by_turn: dict[int, list[Any]] = {}
        for d in result.divergences:
            if d.where.startswith("turn "):
                by_turn.setdefault(int(d.where.split()[1]), []).append(d)
        return render(request, "replay.html", t=t, result=result, by_turn=by_turn)

    routes = [Route("/", listing), Route("/trajectory", trajectory), Route("/compare", compare),
              Route("/group", group_page), Route("/run", run_page), Route("/plots/{name}.svg", plot),
              Route("/replay", replay, methods=["POST"]),
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    app = Starlette(routes=routes)
    app.state.viewer = viewer
    return app


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)

