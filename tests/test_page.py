"""The page, used as a person would in a real headless Chromium (Debian's, driven by
Playwright), against the real service with a real worker and the scorer simulator.

Without a Chromium these tests are skipped with one loud line, unless REQUIRE_BROWSER=1 (as in
CI), where a missing browser fails the run.
"""

from __future__ import annotations

import os

import pytest
import requests

from browser import find_chromium, launch
from harness import bearer, make_photo
from src.local.simulator import expected_score

CHROMIUM = find_chromium()
if CHROMIUM is None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise RuntimeError("REQUIRE_BROWSER=1 but no Chromium was found: apt-get install chromium")
    pytest.skip("BROWSER TESTS SKIPPED: no Chromium found (apt-get install chromium; "
                "REQUIRE_BROWSER=1 makes this a failure)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

WAIT = 20_000  # ms for a task to finish, with room for a busy machine
NAME = "Ann Lee"
PHONE = {"width": 390, "height": 844}
# How Chromium reports an HTTP error answer to fetch() in the console; expected where a test
# provokes one, an error anywhere else.
HTTP_ERROR_NOTE = "Failed to load resource: the server responded with a status of {}"


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as playwright:
        browser = launch(playwright, CHROMIUM)
        yield browser
        browser.close()


class Console:
    """What the page reported: uncaught errors and console errors."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))

    def assert_clean(self, *statuses: int) -> None:
        """No error, except Chromium's note about each expected HTTP error status."""
        allowed = tuple(HTTP_ERROR_NOTE.format(status) for status in statuses)
        assert [error for error in self.errors if not error.startswith(allowed)] == []


@pytest.fixture
def open_page(chromium):
    """`open_page(service, viewport=None)`: a fresh browser context (empty storage) on the page."""
    contexts = []

    def open_(service, viewport=None):
        context = chromium.new_context(viewport=viewport or {"width": 1200, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.console = Console(page)
        page.goto(service.url)
        return page

    yield open_
    for context in contexts:
        context.close()


def photo_file(data: bytes, name: str = "face.jpg", mime: str = "image/jpeg") -> dict:
    return {"name": name, "mimeType": mime, "buffer": data}


def send_score(page, photo: bytes, name: str = NAME) -> None:
    page.set_input_files("input[name=photo]", photo_file(photo))
    page.fill("input[name=name]", name)
    page.press("input[name=name]", "Enter")


def send_resize(page, photo: bytes, width: int, fmt: str = "png") -> None:
    page.get_by_role("radio", name="Resize").check()
    page.set_input_files("input[name=photo]", photo_file(photo))
    page.fill("input[name=width]", str(width))
    page.select_option("select[name=format]", fmt)
    page.click("button#send")


def task_number(page) -> int:
    return int(page.locator("li.task").first.get_attribute("data-task"))


def test_upload_shows_a_live_progress_bar_then_the_score(make_service, scorer, open_page):
    service = make_service(workers=1, scorer_retry_delay=1)  # the page polls every second
    scorer.configure(wait_rounds=3)
    page = open_page(service)
    photo = make_photo(11)
    send_score(page, photo)
    task = page.locator("li.task").first
    expect(task.locator("progress")).to_be_visible()
    expect(task.locator(".task-status")).to_contain_text("Working", timeout=WAIT)  # progress came in
    assert 0 < int(task.locator("progress").get_attribute("value")) < 100
    score = task.locator(".score strong")
    expect(score).to_be_visible(timeout=WAIT)
    assert float(score.inner_text()) == pytest.approx(expected_score(NAME, photo), abs=1e-9)
    expect(task.locator("progress")).to_be_hidden()
    # The task survives a reload: its number was kept in local storage.
    page.reload()
    expect(page.locator("li.task .score strong")).to_have_text(score.inner_text())
    page.console.assert_clean()


def test_a_resize_shows_the_image_at_the_size_asked(make_service, open_page):
    service = make_service(workers=1)
    page = open_page(service)
    send_resize(page, make_photo(12, size=(160, 120)), width=40)
    image = page.locator("li.task figure img")
    expect(image).to_be_visible(timeout=WAIT)
    page.wait_for_function("document.querySelector('li.task figure img').complete")
    assert image.evaluate("img => img.naturalWidth") == 40
    assert image.evaluate("img => img.naturalHeight") == 30
    caption = page.locator("li.task figcaption")
    expect(caption).to_contain_text("40 × 30 px · PNG")
    link = caption.get_by_role("link", name="Download")
    result = service.get(task_number(page)).json()["result"]
    assert link.get_attribute("href") == result["url"]
    assert link.get_attribute("download").endswith(".png")
    page.console.assert_clean()


def test_delete_removes_the_task_from_the_list_and_the_api(make_service, open_page):
    service = make_service(workers=1)
    page = open_page(service)
    send_resize(page, make_photo(13), width=20)
    expect(page.locator("li.task .task-status")).to_have_text("Ready", timeout=WAIT)
    task = task_number(page)
    page.get_by_role("button", name=f"Delete task {task}").click()
    expect(page.locator("li.task")).to_have_count(0)
    expect(page.locator("#no-tasks")).to_be_visible()
    assert service.get(task).status_code == 404
    page.reload()
    expect(page.locator("#no-tasks")).to_be_visible()
    expect(page.locator("li.task")).to_have_count(0)
    page.console.assert_clean()


def test_a_text_file_gets_the_apis_message(make_service, open_page):
    service = make_service(workers=0)
    page = open_page(service)
    page.set_input_files("input[name=photo]", photo_file(b"not a photo at all\n", "notes.txt", "text/plain"))
    page.fill("input[name=name]", NAME)
    page.click("button#send")
    error = page.locator("#form-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not a photo this service can read")
    expect(error).to_contain_text("photo is not a JPEG, PNG, WebP, GIF, BMP or TIFF image")
    expect(page.locator("li.task")).to_have_count(0)
    page.console.assert_clean(415)


def test_the_page_asks_for_the_api_key_and_explains_a_wrong_one(make_service, open_page):
    service = make_service(workers=1, api_keys="alice:s3cret")
    page = open_page(service)
    photo = make_photo(14)
    send_score(page, photo)
    key = page.locator("input[name=api_key]")
    expect(key).to_be_visible()
    expect(key).to_be_focused()
    key.fill("wrong")
    key.press("Enter")
    expect(page.locator("#key-error")).to_contain_text("not accepted")
    key.fill("s3cret")
    key.press("Enter")
    expect(key).to_be_hidden()
    score = page.locator("li.task .score strong")
    expect(score).to_be_visible(timeout=WAIT)
    assert float(score.inner_text()) == pytest.approx(expected_score(NAME, photo), abs=1e-9)
    # The task is alice's; the key stays for this tab, so a reload asks nothing.
    assert service.get(task_number(page), headers=bearer("s3cret")).status_code == 200
    page.reload()
    expect(page.locator("li.task .score strong")).to_be_visible()
    expect(key).to_be_hidden()
    page.console.assert_clean(401)


def test_on_a_phone_with_the_keyboard_only(make_service, open_page):
    service = make_service(workers=1)
    page = open_page(service, viewport=PHONE)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.get_by_role("radio", name="Score").focus()
    page.keyboard.press("ArrowRight")  # the switch is a radio group
    expect(page.get_by_role("radio", name="Resize")).to_be_checked()
    expect(page.locator("input[name=width]")).to_be_visible()
    expect(page.locator("input[name=name]")).to_be_hidden()
    page.set_input_files("input[name=photo]", photo_file(make_photo(15, size=(90, 60))))
    page.focus("input[name=photo]")
    page.keyboard.press("Tab")  # the next field is the width
    assert page.evaluate("document.activeElement.name") == "width"
    page.keyboard.type("30")
    page.keyboard.press("Enter")
    expect(page.locator("li.task figure img")).to_be_visible(timeout=WAIT)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.console.assert_clean()


def test_a_missing_photo_is_explained_before_sending(service, open_page):
    page = open_page(service)
    page.fill("input[name=name]", NAME)
    page.click("button#send")
    expect(page.locator("#form-error")).to_have_text("Choose a photo first.")
    assert requests.get(service.url + "?task_id=1", timeout=5).status_code == 404  # nothing was sent
    page.console.assert_clean()
