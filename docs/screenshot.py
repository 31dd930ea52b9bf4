"""`make screenshot`: the page with a finished scoring task and a finished resize, as a PNG
(docs/page.png, shown in the README). Starts its own valkey-server, scorer simulator, web app
and worker, drives Debian's chromium through the page like a person, and saves the picture.

    .venv/bin/python docs/screenshot.py docs/page.png
"""

from __future__ import annotations

import io
import os
import sys
import tempfile

from PIL import Image, ImageDraw
from playwright.sync_api import expect, sync_playwright

from browser import find_chromium, launch
from harness import Service
from src.local.embedded_redis import EmbeddedRedis
from src.local.simulator import serve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def landscape(size=(1600, 1067)) -> bytes:
    """A made-up photo: sky, sun, hills and a lake."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=(int(80 + 150 * t), int(140 + 80 * t), int(230 - 40 * t)))
    draw.ellipse([width * 0.68, height * 0.12, width * 0.80, height * 0.30], fill=(255, 214, 90))
    draw.polygon([(0, height * 0.62), (width * 0.25, height * 0.32), (width * 0.5, height * 0.6)], fill=(70, 95, 120))
    draw.polygon([(width * 0.3, height * 0.62), (width * 0.62, height * 0.26), (width, height * 0.62)],
                 fill=(52, 78, 104))
    draw.rectangle([0, height * 0.62, width, height], fill=(58, 130, 90))
    draw.ellipse([width * 0.15, height * 0.72, width * 0.7, height * 0.95], fill=(90, 160, 210))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main(out: str) -> int:
    chromium = find_chromium()
    if chromium is None:
        print("no chromium found: apt-get install chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        redis_server = EmbeddedRedis(os.path.join(scratch, "valkey"), appendonly=False).start()
        scorer, scorer_url = serve()
        scorer.app.configure(wait_rounds=1)
        os.makedirs(os.path.join(scratch, "uploads"))
        service = Service({"REDIS_URL": redis_server.url, "SCORER_URL": scorer_url,
                           "UPLOAD_DIR": os.path.join(scratch, "uploads"), "SCORER_RETRY_DELAY": "0.2"})
        service.start_workers(1)
        photo = os.path.join(scratch, "lake.jpg")
        with open(photo, "wb") as file:
            file.write(landscape())
        try:
            shoot(chromium, service.url, photo, out)
        finally:
            service.stop()
            scorer.shutdown()
            redis_server.stop()
    print(f"saved {out}")
    return 0


def shoot(chromium: str, url: str, photo: str, out: str) -> None:
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        page = browser.new_page(viewport={"width": 1200, "height": 820})
        page.goto(url)
        page.set_input_files("input[name=photo]", photo)
        page.fill("input[name=name]", "Ann Lee")
        page.click("#send")
        expect(page.locator(".task.ready")).to_have_count(1, timeout=20_000)
        page.get_by_role("radio", name="Resize").check()
        page.fill("input[name=width]", "480")
        page.select_option("select[name=format]", "webp")
        page.click("#send")
        expect(page.locator(".task.ready")).to_have_count(2, timeout=20_000)
        page.wait_for_function("[...document.querySelectorAll('figure img')].every(i => i.complete)")
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "page.png")))
