"""Screenshots of `gymbox view`'s pages for the README, taken in headless chromium (Playwright) on a loopback port.

    .venv/bin/python docs/view_screenshots.py RUN_FOLDER [--tokenizer NAME] [--replay STORE ID]

Writes docs/view-list.png, view-trajectory.png (token view open), view-group.png, view-compare.png, view-run.png
and, with --replay, view-replay.png (the replay of ID from STORE).
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import quote

import uvicorn
from playwright.sync_api import Page, sync_playwright

from gymbox.harness.view.app import create_app

DOCS = Path(__file__).resolve().parent


def serve(path: Path, tokenizer: str | None) -> tuple[uvicorn.Server, str]:
    server = uvicorn.Server(uvicorn.Config(create_app(path, tokenizer=tokenizer), host="127.0.0.1", port=0,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def shoot(page: Page, url: str, name: str, *, click: str | None = None, height: int = 900) -> None:
    page.goto(url)
    if click:
        page.click(click)
    page.set_viewport_size({"width": 1400, "height": height})
    page.screenshot(path=str(DOCS / f"view-{name}.png"))
    print(f"docs/view-{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--tokenizer")
    parser.add_argument("--replay", nargs=2, metavar=("STORE", "ID"))
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(180_000)  # the first trajectory page waits for torch and the tokenizer to load
        server, url = serve(args.run, args.tokenizer)
        shoot(page, url + "/?sort=reward&desc=1", "list", height=700)
        first = page.locator("a.open").first.inner_text()
        shoot(page, f"{url}/trajectory?id={quote(first)}", "trajectory", click="#toggle-tokens", height=1100)
        group = page.locator("a[href^='/group']").first.get_attribute("href")
        shoot(page, url + str(group), "group", height=600)
        page.click("#group-table tbody tr:last-child input[name=b]")
        page.click("#compare-selected")
        shoot(page, page.url, "compare", height=1000)
        shoot(page, url + "/run", "run", height=900)
        server.should_exit = True
        if args.replay:
            server, url = serve(Path(args.replay[0]), args.tokenizer)
            shoot(page, f"{url}/trajectory?id={quote(args.replay[1])}", "replay", click="#replay", height=800)
            server.should_exit = True
        browser.close()


if __name__ == "__main__":
    main()
