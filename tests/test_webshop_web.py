"""`gymbox webshop serve` in a real headless browser (Debian's chromium, Playwright): search, open, choose, buy."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from gymbox.harness.webshop_web import serve
from gymbox.tasks import load_suite
from gymbox.tasks.webshop.expert import WebShopExpert

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = serve("127.0.0.1", 0, "webshop:test")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def test_a_person_searches_opens_chooses_and_buys_in_a_browser(site: str) -> None:
    from playwright.sync_api import sync_playwright

    task = load_suite("webshop:test").tasks[1]
    expert = WebShopExpert(task)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{site}/new?task={task.id}")
        assert page.locator("#instruction").inner_text() == task.payload["goal"]["paraphrase" if task.payload[
            "form"] == "human" else "instruction"]
        page.fill("#query", "'; DROP TABLE products; -- \"AND\" *:")  # operators and quotes: just words
        page.click("#search")
        assert "Total results" in page.content()
        page.click("button[value='Back to Search']")
        page.fill("#query", expert.query)
        page.click("#search")
        while not page.locator(f"button[value='{expert.asin}']").count():
            page.click("button[value='Next &gt;'], button[value='Next >']")
        page.click(f"button[value='{expert.asin}']")
        for value in expert.options:
            page.click(f"button[value='{value}']")
            assert page.locator(f"button.clicked[value='{value}']").count() == 1
        page.click("button[value='Description']")
        page.click("button[value='&lt; Prev'], button[value='< Prev']")
        for value in expert.options:  # options kept across the description page
            assert page.locator(f"button.clicked[value='{value}']").count() == 1
        page.click("button[value='Buy Now']")
        assert "Thank you for shopping with us" in page.locator("#note").inner_text()
        assert page.locator("#reward").inner_text() == "Reward: 1.0000"
        page.click("text=another task")
        assert page.locator("#query").count() == 1  # a new episode on the search page
        browser.close()
