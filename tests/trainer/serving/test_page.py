"""The analysts' page in a real browser: Debian's Chromium driven by Playwright for Python.

Playwright's own browser download (`playwright install`) is not used: the test
launches `/usr/bin/chromium` (Debian's `chromium` package; `.ci/run` installs it
when missing). It saves docs/images/serving-page.png, the screenshot
docs/serving.md shows.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.trainer.serving.server import REPO

CHROMIUM = os.environ.get("DFD_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.path.join(REPO, "docs", "images", "serving-page.png")


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; "
            ".ci/run does) or point DFD_CHROMIUM at a Chromium binary."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()


def test_the_page_shows_each_face_with_its_label_and_score(page, server, demo_files):
    page.goto(server.url + "/")
    page.wait_for_selector("#card-list dd")  # The model card, from detector.json.
    card = page.inner_text("[data-testid=model-card]")
    assert "0.5000" in card
    for shown in ("real_and_fake_faces", "2026-12-02T10:00:00+00:00", "0.9876", "0.0432"):
        assert shown in card
    page.set_input_files("[data-testid=file]", demo_files["photo"])
    page.wait_for_selector("[data-testid=face]", timeout=60_000)
    faces = page.query_selector_all("[data-testid=face]")
    assert len(faces) == 3
    for face in faces:
        label, score = face.get_attribute("data-label"), float(face.get_attribute("data-score"))
        assert label == ("fake" if score >= 0.5 else "real")
        assert f"{score:.4f}" in face.inner_text()
    assert len(page.query_selector_all("#picture .box")) == 3
    verdict = page.inner_text("[data-testid=verdict]")
    assert verdict.startswith("group_photo.jpg: ") and "p_fake" in verdict
    assert "most suspicious face" in page.inner_text("[data-testid=rule]")
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_a_broken_file_shows_the_reason(page, server, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    page.goto(server.url + "/")
    page.set_input_files("[data-testid=file]", str(broken))
    page.wait_for_selector("[data-testid=error]:not([hidden])", timeout=30_000)
    message = page.inner_text("[data-testid=error]")
    assert message.startswith("broken.jpg: ") and "not a readable image" in message
    assert page.query_selector_all("[data-testid=face]") == []
