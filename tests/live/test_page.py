"""The web page in a real browser (Debian's chromium driven by Playwright) against a live `exportd run`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.helpers import jpeg_bytes
from tests.live.conftest import Live

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright's own browser download cannot be reached here: it drives the system's chromium.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="needs Debian's chromium (apt-get install chromium; .ci/run does)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True)  # a phone
    # The key as if typed earlier in this tab's session (the page keeps it in sessionStorage).
    context.add_init_script(f"sessionStorage.setItem('exportd.apiKey', {json.dumps(live.api_key)})")
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.goto(live.url + "/")
    page.wait_for_selector("#format option[value=webp]", state="attached")
    yield page
    context.close()


def test_a_photo_becomes_a_webp_of_the_width_asked(page: Any, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(800, 600))
    page.set_input_files("#files", str(photo))
    page.select_option("#format", "webp")
    page.fill("#opt-width", "320")  # the form is made from the webp conversion's declared options
    assert page.get_attribute("#opt-width", "max") == "8192"
    page.click("#submit")
    link = page.wait_for_selector("#outputs a", timeout=60_000)
    assert link.inner_text() == "photo.webp"
    assert "Done" in page.inner_text("#status")
    assert page.get_attribute("#upload-progress", "value") == "100"
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "downloaded.webp"
    download.value.save_as(saved)
    with Image.open(saved) as image:
        assert image.format == "WEBP" and image.size == (320, 240)
    assert page.console_errors == []  # nothing refused by the Content-Security-Policy, no failed request


def test_a_file_of_no_known_type_shows_the_api_sentence(page: Any, tmp_path: Path) -> None:
    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"\x00\x01 not a picture " * 20)
    page.set_input_files("#files", str(junk))
    page.select_option("#format", "png")
    page.click("#submit")
    error = page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert error.inner_text().startswith("this file's type is not recognised; accepted: photos")
    assert error.get_attribute("role") == "alert"
    assert page.query_selector("#outputs a") is None


def test_a_failed_job_shows_its_sentence(page: Any, tmp_path: Path) -> None:
    broken = tmp_path / "cut.jpg"
    broken.write_bytes(jpeg_bytes()[:3000])
    page.set_input_files("#files", str(broken))
    page.select_option("#format", "png")
    page.click("#submit")
    error = page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert error.inner_text() == (
        '"cut.jpg" cannot be read as a JPEG image: it is damaged or incomplete, '
        "or a variant of the format this service does not decode"
    )


def test_the_api_key_goes_as_bearer_and_lasts_the_browser_session(page: Any, browser: Any, live: Live,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    sent: list[str | None] = []
    page.on(
        "request", lambda r: sent.append(r.headers.get("authorization")) if "/v1/exports" in r.url else None
    )
    page.fill("#api-key", live.api_key)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg_bytes(200, 100))
    page.set_input_files("#files", str(photo))
    page.select_option("#format", "png")
    page.click("#submit")
    page.wait_for_selector("#outputs a", timeout=60_000)
    assert sent and set(sent) == {f"Bearer {live.api_key}"}
    page.reload()
    page.wait_for_selector("#format option[value=png]", state="attached")
    assert page.input_value("#api-key") == live.api_key  # same tab: sessionStorage
    other = browser.new_context().new_page()
    other.goto(live.url + "/")
    assert other.input_value("#api-key") == ""  # another session: gone
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    other.context.close()


def test_labelled_keyboard_usable_and_phone_width(page: Any) -> None:
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select')].filter(e => !e.labels || !e.labels.length)"
        ".map(e => e.id)"
    )
    assert unlabelled == []
    page.select_option("#format", "webp")
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('#option-fields input, #option-fields select')]"
        ".filter(e => !e.labels.length).map(e => e.id)"
    )
    assert unlabelled == []
    # Nothing wider than a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Keyboard: Tab moves through the controls and the focused one shows an outline.
    page.focus("#files")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "format"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")


def test_dropped_files_choose_the_formats_offered(page: Any) -> None:
    # A text file dropped on the zone: only what text converts to is offered.
    page.evaluate(
        """() => {
          const data = new DataTransfer();
          data.items.add(new File(["Hello"], "notes.txt", {type: "text/plain"}));
          document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }"""
    )
    assert page.evaluate("document.getElementById('files').files[0].name") == "notes.txt"
    offered = page.eval_on_selector_all(
        "#format option", "options => options.map(o => o.value).filter(v => v)"
    )
    assert offered == ["pdf"]
    page.select_option("#format", "pdf")
    assert page.is_visible("#opt-page_size")  # the text → PDF conversion's own options
    assert not page.query_selector("#opt-width")
