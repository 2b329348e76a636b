"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

Signs in, searches by label, opens a version, moves an alias, revokes a token and finds both in
the event log; no request leaves 127.0.0.1. A screenshot of each page is kept in
``$DOSIRAK_TEST_ARTIFACTS/hub-dashboard`` (default: ``test-artifacts/`` in the repository).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import playwright.sync_api as playwright_api

from conftest import REPO, build_iris_bento, save_iris, use_home

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
assert CHROMIUM is not None, "needs Debian's chromium: apt-get install -y chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("DOSIRAK_TEST_ARTIFACTS") or REPO / "test-artifacts") \
    / "hub-dashboard"


def test_dashboard_in_chromium(hub, tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "alice")
    model = save_iris(labels={"stage": "prod", "team": "a"})
    other = save_iris("other_clf", labels={"stage": "dev"})
    bento = build_iris_bento(tmp_path)
    with hub.client() as client:
        client.push_bento(bento.tag)
        client.push_model(other.tag)
        made = client.create_token("ci-reader", ["read"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = []

    def shot(page, name: str) -> None:
        path = ARTIFACTS / f"{len(shots):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("dialog", lambda dialog: dialog.accept())  # the confirmation prompts
            page.goto(f"{hub.url}/")
            assert page.url.startswith(f"{hub.url}/login")
            page.fill("#token", "dsk_wrong")
            page.click("button[type=submit]")
            assert "valid hub token" in page.inner_text("main")
            page.fill("#token", hub.admin_token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{hub.url}/models")
            shot(page, "models")
            assert {"iris_clf", "other_clf"} <= {r.split(":")[0] for r in
                                                 page.locator("table.versions a").all_inner_texts()}

            page.fill("input[name=selector]", "stage=prod,team in (a,b),!deprecated")
            page.click("form.search button")
            listed = page.locator("table.versions tbody a").all_inner_texts()
            assert listed == [str(model.tag)]
            shot(page, "search-by-label")

            page.click(f"text={model.tag}")
            body = page.inner_text("main")
            assert "stage=prod" in body and "saved_model.joblib" in body
            assert f"iris_classifier:{bento.tag.version}" in body  # used by the bento
            shot(page, "model-version")
            page.fill("input[name=alias]", "champion")
            page.click("#alias-form button")
            page.wait_for_selector("#aliases >> text=@champion")
            shot(page, "alias-moved")

            page.goto(f"{hub.url}/bentos/iris_classifier/{bento.tag.version}")
            bento_page = page.inner_text("main")
            assert "/classify" in bento_page and str(model.tag) in bento_page
            shot(page, "bento-version")

            page.click("text=Tokens")
            page.click("#token-ci-reader button")
            page.wait_for_selector("#token-ci-reader >> text=revoked")
            shot(page, "token-revoked")
            with httpx.Client(base_url=hub.url) as http:
                refused = http.get("/api/v1/whoami",
                                   headers={"Authorization": f"Bearer {made['token']}"})
            assert refused.status_code == 401

            page.click("text=Events")
            events = page.inner_text("table.events")
            assert "alias.move" in events and "iris_clf@champion" in events
            assert "token.revoke" in events and "token ci-reader" in events
            shot(page, "events")

            page.goto(f"{hub.url}/models/other_clf/{other.tag.version}")
            page.fill("input[name=confirm]", other.tag.version)
            page.click("form.danger button")
            page.wait_for_url(f"{hub.url}/models")
            assert "other_clf" not in page.inner_text("table.versions")
            shot(page, "after-delete")

            # Readable without JavaScript: the same pages, rendered by the server alone.
            plain = browser.new_context(java_script_enabled=False)
            plain.add_cookies([{"name": "dosirak_hub", "value": hub.admin_token,
                                "url": hub.url}])
            reader = plain.new_page()
            reader.goto(f"{hub.url}/models/iris_clf/{model.tag.version}")
            assert "@champion" in reader.inner_text("#aliases")
            shot(reader, "no-javascript")
            plain.close()
        finally:
            browser.close()
    outside = [u for u in requested if not u.startswith(hub.url)]
    assert outside == [], f"the dashboard reached outside the hub: {outside}"
    assert any(u.endswith("/static/hub.css") for u in requested)
    assert all(path.stat().st_size > 1000 for path in shots)
