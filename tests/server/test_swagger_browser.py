"""A real browser opens the Swagger UI: headless Chromium (Debian's ``chromium`` package) driven
by Playwright lists the APIs, makes no request outside this server, and "Try it out" gets a 200.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import playwright.sync_api as playwright_api
import pytest

from live_server import serve

from .example_services import json_service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# scripts/test installs Chromium; a missing one is a broken set-up, not a reason to skip.
assert CHROMIUM is not None, "needs Debian's chromium: apt-get install -y chromium"


@pytest.fixture
def page_and_url() -> Iterator[tuple[object, str, list[str]]]:
    with serve(json_service()) as url, playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            yield page, url, requested
        finally:
            browser.close()


def test_swagger_ui_lists_the_apis_and_try_it_out_works(
        page_and_url: tuple[object, str, list[str]]) -> None:
    page, url, requested = page_and_url
    page.goto(f"{url}/")  # type: ignore[attr-defined]
    operation = page.locator("#operations-Service_APIs-sepal_area")  # type: ignore[attr-defined]
    operation.wait_for(timeout=20_000)
    listed = page.locator(".opblock-summary-path").all_inner_texts()  # type: ignore[attr-defined]
    assert {"/sepal_area", "/shout"} <= {text.strip() for text in listed}

    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    body = operation.locator("textarea.body-param__text")
    body.fill('{"sepal_length": 2, "sepal_width": 3, "name": "setosa"}')
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for(timeout=20_000)
    assert status.inner_text().strip() == "200"
    assert '"area": 6' in operation.locator(".live-responses-table").inner_text()

    outside = [u for u in requested if not u.startswith((url, "data:"))]
    assert outside == [], f"the page reached outside this server: {outside}"
    assert any(u.endswith("/docs.json") for u in requested)


def test_swagger_ui_authorize_button_sends_the_token() -> None:
    """With api_server.auth and the docs public, a call fails with 401 until the token is given
    through the Authorize button; then "Try it out" gets a 200."""
    from dosirak.config import load_config

    config = load_config(environ={}, overrides={
        "api_server.auth.public_routes": ["/", "/docs.json", "/static/*"]})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOSIRAK_API_TOKENS", "browser-token")
        server = serve(json_service(), config=config)
        with server as url, playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(f"{url}/")
                operation = page.locator("#operations-Service_APIs-shout")
                operation.wait_for(timeout=20_000)
                operation.locator(".opblock-summary").click()
                operation.locator("button.try-out__btn").click()
                operation.locator("textarea.body-param__text").fill("hi")

                def status_after_execute() -> str:
                    operation.locator("button.execute").click()
                    cell = operation.locator(
                        ".live-responses-table tr.response .response-col_status").first
                    cell.wait_for(timeout=20_000)
                    return cell.inner_text().strip()

                assert status_after_execute().startswith("401")
                page.locator("button.authorize").first.click()
                dialog = page.locator(".modal-ux")
                dialog.locator("input").first.fill("browser-token")
                dialog.locator("button.modal-btn.auth.authorize").click()
                dialog.locator("button.btn-done").click()
                operation.locator("button.btn-clear").click()
                assert status_after_execute() == "200"
                assert "HI" in operation.locator(".live-responses-table").inner_text()
            finally:
                browser.close()
