"""`gymbox view` in a real headless chromium (Playwright): list, filter, trajectory and token view, compare, group,
run plots, eval tables and a replay divergence, on a store of real echo episodes served on a loopback port."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gymbox.harness.view.app import create_app
from tests.view_store import TAMPERED, make_store

pytestmark = pytest.mark.slow  # a browser, the tokenizer and torch (advantages) load once: about 30 s in all


class Server:
    """The viewer app served by uvicorn on a free loopback port, in a thread of the test process."""

    def __init__(self, path: Path, tokenizer: str | None = None) -> None:
        config = uvicorn.Config(create_app(path, tokenizer=tokenizer), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the viewer did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory, smollm2: Path) -> Path:
    """A `gymbox train`-shaped folder: the store, two steps of metrics and two held-out evaluations."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("run")
    make_store(root / "trajectories", AutoTokenizer.from_pretrained(smollm2))
    steps = [{"step": s, "rollouts": 8, "reward_mean": 0.2 * s, "reward_std": 0.1, "reward/outcome": 0.2 * s,
              "success": 0.1 * s, "zero_std_fraction": 0.5, "kl": 0.01 * s, "clip_fraction": 0.02,
              "tokens_per_s": 200.0, "rollout_s": 3.0, "sync_s": 1.0, "seconds": 5.0} for s in (1, 2)]
    (root / "metrics.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    evals = [{"when": w, "step": s, "suite": "echo-demo:test", "rollouts": 4, "masked": 0, "reward_mean": r,
              "success": r, "reward/outcome": r} for w, s, r in (("before", 0, 0.25), ("after", 2, 0.75))]
    (root / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    return root


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                     headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser: Any) -> Any:
    page = browser.new_page()
    # The first trajectory page waits for torch (advantages) and the tokenizer to load: slow on a busy machine.
    page.set_default_timeout(120_000)
    return page


@pytest.fixture(scope="module")
def site(run_folder: Path, smollm2: Path) -> Iterator[str]:
    # The scripted policy names no model: the token view decodes with the tokenizer given (`--tokenizer`).
    with Server(run_folder, tokenizer=str(smollm2)) as url:
        yield url


def test_list_filter_trajectory_tokens_compare(browser: Any, site: str) -> None:
    page = open_page(browser)
    page.goto(site + "/")
    assert page.locator("#count-total").inner_text() == "9"
    assert page.locator("#count-masked").inner_text() == "1"
    assert "pass@1" in page.locator("#counts").inner_text()
    # Filter: the failures of the echo-000 task (the quitter's rollout), then the masked one.
    page.select_option("select[name=success]", "no")
    page.fill("input[name=task]", "echo-000")
    page.click("#apply")
    assert page.locator("#count-total").inner_text() == "1"
    assert page.locator("#rows tbody tr").count() == 1
    assert "echo-000@0#2" in page.locator("#rows").inner_text()
    page.goto(site + "/?masked=yes")
    assert "env_crashed (masked)" in page.locator("#rows").inner_text()
    page.goto(site + "/?sort=reward&desc=1&reward_min=0.5")
    assert page.locator("#count-total").inner_text() == "7"
    # Open a trajectory from the list.
    page.goto(site + "/?task=echo-001")
    page.locator("a.open", has_text="echo-001@0#0").click()
    assert page.locator("#title").inner_text() == "echo-001@0#0"
    assert "outcome" in page.locator("#rewards").inner_text()
    assert page.locator("#advantage").inner_text() == "0.000"  # both samples succeeded: no learning signal
    assert page.locator("#conversation .turn").count() == 3
    assert "format instructions" in page.locator("#conversation").inner_text().lower()
    assert "echo(" in page.locator("#turn-0").inner_text()
    # The token view: hidden until toggled; generated tokens trained and coloured, the rest marked as masked.
    assert not page.locator("#tokens").is_visible()
    page.click("#toggle-tokens")
    assert page.locator("#tokens").is_visible()
    trained = page.locator("#tokens .tok[data-mask='1']")
    masked = page.locator("#tokens .tok[data-mask='0']")
    assert trained.count() == int(page.locator("#trained-count").inner_text()) > 0
    assert masked.count() == int(page.locator("#masked-count").inner_text()) > trained.count()
    assert "echo" in page.locator("#tokens-turn-0").inner_text()  # decoded with the policy's tokenizer
    assert "background" in (trained.nth(3).get_attribute("style") or "")
    assert masked.first.evaluate("e => getComputedStyle(e).textDecorationLine") == "line-through"
    assert "logprob -0.150" in (trained.nth(3).get_attribute("title") or "")
    # Compare with the other sample of its group.
    page.click("#compare")
    assert page.locator("#compare-table thead th").count() == 3
    assert "echo-001@0#1" in page.locator("#compare-table thead").inner_text()
    assert page.locator("#compare-table tr.same").count() == 3  # the same script: the same turns
    page.close()


def test_group_view_and_compare_of_a_success_and_a_failure(browser: Any, site: str) -> None:
    page = open_page(browser)
    page.goto(site + "/group?g=echo-000%400")
    rows = page.locator("#group-table tbody tr")
    assert rows.count() == 3
    rewards = [float(x) for x in rows.locator("td.reward").all_inner_texts()]
    advantages = [float(x) for x in rows.locator("td.advantage").all_inner_texts()]
    assert rewards == [1.0, 1.0, 0.0]
    assert advantages[0] == advantages[1] > 0 > advantages[2]  # GRPO: above the group mean, and below it
    page.locator("#group-table tbody tr").nth(2).locator("input[name=b]").check()
    page.click("#compare-selected")
    assert page.locator("#compare-table tr.differs").count() >= 1
    assert re.search(r"no success", page.locator("#compare-table thead").inner_text())
    page.close()


def test_replay_shows_the_divergence_against_the_recording(browser: Any, site: str) -> None:
    page = open_page(browser)
    page.goto(site + "/trajectory?id=" + TAMPERED.replace("#", "%23"))
    page.click("#replay")
    assert page.locator("#replay-status").inner_text() == "diverged"
    table = page.locator("#divergences").inner_text()
    assert "turn 0" in table and "observation" in table and "not what the environment said" in table
    assert page.locator(".turn.diverged").count() == 1
    assert "diverged: observation" in page.locator("#turn-0").inner_text()
    page.close()


def test_run_page_plots_and_evaluations(browser: Any, site: str) -> None:
    page = open_page(browser)
    page.goto(site + "/run")
    plots = page.locator("img.plot")
    names = [plots.nth(i).get_attribute("data-plot") for i in range(plots.count())]
    assert {"reward", "success", "KL", "zero-variance groups", "tokens per second", "seconds per phase"} <= set(names)
    # Each plot is an SVG the browser decoded (served by the viewer itself: no network).
    assert all(plots.nth(i).evaluate("e => e.complete && e.naturalWidth > 0") for i in range(plots.count()))
    evals = page.locator("#evals").inner_text()
    assert "before" in evals and "after" in evals and "0.750" in evals
    page.close()


def test_eval_folder_shows_pass_at_k_by_category(browser: Any, tmp_path: Path, run_folder: Path) -> None:
    from gymbox.harness.metrics import summarize
    from gymbox.harness.store import TrajectoryStore

    shutil.copytree(run_folder / "trajectories", tmp_path / "trajectories")
    summary = summarize(TrajectoryStore(tmp_path / "trajectories").iter(), [1, 2])
    (tmp_path / "summary.json").write_text(json.dumps({"suite": "echo-demo", "policy_name": "solver", "k": 2,
                                                       "seconds": 1.0, "runtime": "local", "base_seed": 0,
                                                       "summary": summary.to_dict()}))
    with Server(tmp_path) as url:
        page = open_page(browser)
        page.goto(url + "/run")
        table = page.locator("#passk").inner_text()
        assert "pass@1" in table and "pass@2" in table
        overall = page.locator("#passk tr.overall").inner_text()
        assert f"{100 * summary.overall.pass_at[1]:.1f}%" in overall
        page.close()
