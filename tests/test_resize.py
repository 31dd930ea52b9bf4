"""Resize tasks, every resize row of the contract, over real HTTP with a real worker: sizes
for each fit, formats, orientation, colour profiles, alpha, dedupe, progress, and the
result's URL."""

from __future__ import annotations

import io
import math
import os
import threading
import time

import pytest
from PIL import Image, ImageChops, ImageCms, ImageOps
from rq.registry import FinishedJobRegistry

from harness import assert_error_shape, bearer, files_under, leftovers, make_photo

WHITE, RED, GREEN, BLUE = (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def stripes(size=(1200, 800)) -> Image.Image:
    """Red left sixth, blue right sixth, green between: shows what a crop keeps."""
    image = Image.new("RGB", size, GREEN)
    image.paste(RED, (0, 0, size[0] // 6, size[1]))
    image.paste(BLUE, (size[0] - size[0] // 6, 0, size[0], size[1]))
    return image


def resized(service, photo: bytes, headers: dict | None = None, **settings) -> tuple[dict, Image.Image]:
    """Post a resize task, wait for it, and fetch its image: (result, image)."""
    answer = service.post(photo, headers=headers, **settings)
    assert answer.status_code == 202, answer.text
    done = service.wait_done(answer.json()["task"], headers=headers)
    assert done.status_code == 200 and done.json()["status"] == "ready", done.text
    result = done.json()["result"]
    image = service.fetch(result["url"])
    assert image.status_code == 200
    return result, Image.open(io.BytesIO(image.content))


def near(colour, expected, tolerance=12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected))


# --- sizes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, size", [
    ({"width": 300, "height": 300}, (300, 200)),
    ({"width": 300, "height": 300, "fit": "contain"}, (300, 200)),
    ({"width": 300, "height": 300, "fit": "cover"}, (300, 300)),
    ({"width": 300, "height": 100, "fit": "fill"}, (300, 100)),
    ({"width": 300}, (300, 200)),
    ({"height": 100}, (150, 100)),
    ({"width": 300, "fit": "cover"}, (300, 200)),
], ids=["default", "contain", "cover", "fill", "width-only", "height-only", "one-side-cover"])
def test_output_size_of_each_fit(service, settings, size):
    result, image = resized(service, encode(stripes()), **settings)
    assert image.size == size
    assert (result["width"], result["height"]) == size
    assert result["format"] == "jpeg"


def test_cover_crops_the_centre_and_fill_stretches(service):
    _, cover = resized(service, encode(stripes()), width=300, height=300, fit="cover")
    assert near(cover.getpixel((2, 150)), GREEN) and near(cover.getpixel((297, 150)), GREEN)
    _, fill = resized(service, encode(stripes()), width=300, height=300, fit="fill")
    assert near(fill.getpixel((2, 150)), RED) and near(fill.getpixel((297, 150)), BLUE)


@pytest.mark.parametrize("settings, size", [
    ({"width": 2400}, (1200, 800)),
    ({"width": 2400, "height": 2400}, (1200, 800)),
    ({"width": 2000, "height": 2000, "fit": "cover"}, (800, 800)),
    ({"width": 2400, "height": 400, "fit": "fill"}, (1200, 200)),
    ({"width": 2400, "enlarge": 1}, (2400, 1600)),
    ({"width": 2000, "height": 2000, "fit": "cover", "enlarge": 1}, (2000, 2000)),
], ids=["contain-width", "contain-box", "cover", "fill", "enlarge-contain", "enlarge-cover"])
def test_never_enlarged_unless_asked(service, settings, size):
    _, image = resized(service, encode(stripes()), **settings)
    assert image.size == size


# --- formats --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, pillow, mime", [
    ("jpeg", "JPEG", "image/jpeg"), ("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp")])
def test_each_output_format_is_served_with_its_content_type(make_service, backend, fmt, pillow, mime):
    service = make_service(**backend.env)
    answer = service.post(make_photo(1, (400, 300)), width=100, format=fmt)
    result = service.wait_done(answer.json()["task"]).json()["result"]
    served = service.fetch(result["url"])
    assert served.headers["Content-Type"] == mime
    assert result["url"].endswith("." + {"jpeg": "jpg"}.get(fmt, fmt))
    image = Image.open(io.BytesIO(served.content))
    assert image.format == pillow and image.size == (100, 75)
    assert result == {**result, "format": fmt, "width": 100, "height": 75, "bytes": len(served.content)}


@pytest.mark.parametrize("source, expected", [
    ("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "jpeg"), ("BMP", "jpeg"), ("TIFF", "jpeg")])
def test_default_format_is_the_source_one_when_we_write_it(service, source, expected):
    result, image = resized(service, make_photo(2, (400, 300), source), width=100)
    assert result["format"] == expected
    assert image.format == expected.upper()


def test_jpeg_output_quality_matters(service):
    photo = encode(Image.effect_noise((400, 300), 60).convert("RGB"))
    low, image = resized(service, photo, width=300, quality=10)
    high, _ = resized(service, photo, width=300, quality=95)
    assert image.format == "JPEG" and image.size == (300, 225)
    assert low["bytes"] < high["bytes"]


# --- orientation, colour profile, metadata ----------------------------------------------------

def test_exif_orientation_6_comes_out_upright_with_no_exif_left(service):
    stored = stripes((600, 300))  # stored sideways: red on the left, blue on the right
    exif = Image.Exif()
    exif[ImageOps.ExifTags.Base.Orientation] = 6  # "rotate 90° clockwise to view"
    exif[ImageOps.ExifTags.Base.Make] = "Camera Maker"
    photo = encode(stored, exif=exif.tobytes(), comment=b"a comment")

    result, image = resized(service, photo, width=150)
    assert image.size == (150, 300)  # upright: portrait
    assert near(image.getpixel((75, 5)), RED) and near(image.getpixel((75, 294)), BLUE)
    assert not image.getexif()
    assert "exif" not in image.info and "comment" not in image.info


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_srgb_icc_profile_survives(service, fmt):
    photo = encode(stripes((400, 300)), icc_profile=SRGB)
    _, image = resized(service, photo, width=200, format=fmt)
    assert image.info.get("icc_profile") == SRGB


def test_cmyk_jpeg_becomes_rgb(service):
    photo = encode(Image.new("CMYK", (400, 300), (0, 255, 255, 0)))  # red ink
    _, image = resized(service, photo, width=100)
    assert image.mode == "RGB"
    assert near(image.getpixel((50, 37)), RED, 40)


# --- alpha and other modes --------------------------------------------------------------------

def half_transparent() -> bytes:
    """Opaque blue on the left half, fully transparent on the right."""
    image = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 200, 300))
    return encode(image, "PNG")


def test_rgba_png_keeps_its_alpha(service):
    _, image = resized(service, half_transparent(), width=200)
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.getpixel((20, 50)) == (0, 0, 255, 255)
    assert image.getpixel((180, 50))[3] == 0


def test_rgba_png_asked_as_jpeg_is_flattened_on_white(service):
    _, image = resized(service, half_transparent(), width=200, format="jpeg")
    assert image.format == "JPEG" and image.mode == "RGB"
    assert near(image.getpixel((20, 50)), BLUE) and near(image.getpixel((180, 50)), WHITE)


def test_palette_png_with_transparency_keeps_it_as_webp(service):
    image = Image.new("P", (400, 300), 0)
    image.putpalette([255, 0, 0, 0, 255, 0])
    image.paste(1, (0, 0, 200, 300))
    photo = encode(image, "PNG", transparency=0)  # palette entry 0 (red, right half) is clear
    _, out = resized(service, photo, width=200, format="webp")
    assert out.mode == "RGBA"
    assert near(out.getpixel((20, 50)), (*GREEN, 255))
    assert out.getpixel((180, 50))[3] == 0


def test_sixteen_bit_grey_png_keeps_its_brightness(service):
    photo = encode(Image.new("I;16", (400, 300), 40000), "PNG")
    _, image = resized(service, photo, width=100)
    assert abs(image.convert("L").getpixel((50, 37)) - 40000 // 256) <= 2


def test_animated_gif_gives_its_first_frame(service):
    frames = [Image.new("RGB", (400, 300), colour) for colour in (RED, BLUE)]
    photo = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    _, image = resized(service, photo, width=100)
    assert near(image.getpixel((50, 37)), RED)


def detailed(mode: str, size=(2400, 1800)) -> Image.Image:
    """Fine detail everywhere (a band shifted, doubled or left out would show) and, in RGBA,
    an alpha that runs from clear to opaque."""
    fractal = Image.effect_mandelbrot(size, (-2.0, -1.2, 0.8, 1.2), 100)
    ramp = Image.linear_gradient("L").resize(size)
    bands = (fractal, ramp, ImageOps.invert(fractal))
    alpha = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(size)
    return Image.merge(mode, (*bands, alpha) if mode == "RGBA" else bands)


def psnr(image: Image.Image, expected: Image.Image) -> float:
    histogram = ImageChops.difference(image, expected).histogram()
    squares = sum((level % 256) ** 2 * count for level, count in enumerate(histogram))
    mse = squares / (image.width * image.height * len(image.getbands()))
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


@pytest.mark.parametrize("mode, settings, box", [
    ("RGB", {"width": 1400}, None), ("RGB", {"width": 2000, "height": 900, "fit": "cover"}, (0, 360, 2400, 1440)),
    ("RGBA", {"width": 1400}, None), ("RGB", {"width": 500}, None),
], ids=["in-bands", "in-bands-cover-crop", "in-bands-alpha", "reduced-first-in-one"])
def test_the_resize_in_bands_is_one_whole_resize(service, mode, settings, box):
    """A large resize goes in bands of rows, to hold less at once (the first three here: the
    output's width × the source rows it reads passes resizer.BANDED_ABOVE); together the
    bands are the image Pillow's one-piece resize gives, but for rounding."""
    source = detailed(mode)
    _, image = resized(service, encode(source, "PNG"), format="png", **settings)
    expected = source.resize(image.size, Image.Resampling.LANCZOS, box=box, reducing_gap=2.0)
    if mode == "RGBA":  # colour under (nearly) clear pixels is anyone's guess: compare it weighted by alpha
        image, expected = image.convert("RGBa"), expected.convert("RGBa")
    assert psnr(image, expected) > 60  # measured 69 to 95 dB; bands off by one source row: 37 to 46


# --- invalid settings -------------------------------------------------------------------------

@pytest.mark.parametrize("settings, field", [
    ({"width": 0}, "width"), ({"width": -5}, "width"), ({"width": 4097}, "width"),
    ({"width": "abc"}, "width"), ({"width": "1.5"}, "width"), ({"width": ""}, "width"),
    ({"width": "１２"}, "width"), ({"height": 0}, "height"), ({"height": 9999}, "height"),
    ({"width": 100, "height": "x"}, "height"),
    ({"width": 100, "fit": "stretch"}, "fit"), ({"width": 100, "enlarge": "2"}, "enlarge"),
    ({"width": 100, "enlarge": "yes"}, "enlarge"), ({"width": 100, "format": "gif"}, "format"),
    ({"width": 100, "format": "bmp"}, "format"), ({"width": 100, "quality": 0}, "quality"),
    ({"width": 100, "quality": 101}, "quality"), ({"width": 100, "quality": "high"}, "quality"),
    ({"width": 100, "name": "Ann Lee"}, ("name", "width")),
    ({"fit": "cover"}, ("width", "height")),
], ids=lambda value: str(value))
def test_every_invalid_setting_gets_400(service, rejected, settings, field):
    rejected(service, lambda: service.post(make_photo(3), **settings), 400, field)


def test_resize_max_side_is_the_limit(make_service, rejected):
    service = make_service(resize_max_side=500)
    rejected(service, lambda: service.post(make_photo(3), width=501), 400, "width")
    assert service.post(make_photo(3), width=500).status_code == 202


def test_a_resize_of_a_non_image_is_415_and_leaves_nothing(service, rejected):
    rejected(service, lambda: service.post(b"not an image", width=100), 415, "photo")


# --- dedupe -----------------------------------------------------------------------------------

def test_same_photo_and_settings_answers_ready_with_the_same_task(service):
    photo = make_photo(4, (400, 300))
    first = service.post(photo, width=100, height=100, fit="cover", format="webp")
    done = service.wait_done(first.json()["task"]).json()
    again = service.post(photo, width=100, height=100, fit="cover", format="webp")
    assert again.status_code == 200
    assert again.json() == {"status": "ready", "task": first.json()["task"], "result": done["result"]}


def test_settings_spelled_out_or_left_to_their_defaults_are_the_same(service):
    photo = make_photo(5, (400, 300))
    first = service.post(photo, width=100)
    service.wait_done(first.json()["task"])
    again = service.post(photo, width=" 100", fit="contain", enlarge=0, format="JPG", quality=85)
    assert again.status_code == 200 and again.json()["task"] == first.json()["task"]


@pytest.mark.parametrize("other", [
    {"width": 101}, {"width": 100, "height": 50}, {"width": 100, "format": "png"},
    {"width": 100, "quality": 60}, {"width": 100, "enlarge": 1}, {"height": 100},
    {"width": 100, "fit": "cover"}])
def test_other_settings_make_a_new_task(service, other):
    photo = make_photo(6, (400, 300))
    first = service.post(photo, width=100).json()["task"]
    service.wait_done(first)
    second = service.post(photo, **other)
    assert second.status_code == 202 and second.json()["status"] == "received"
    assert second.json()["task"] != first


def test_same_request_while_queued_answers_wait(make_service):
    service = make_service(workers=0)
    photo = make_photo(7, (400, 300))
    first = service.post(photo, width=100).json()["task"]
    again = service.post(photo, width=100)
    assert again.status_code == 202
    assert again.json() == {"status": "wait", "task": first, "result": None}
    assert again.headers["Location"] == f"/?task_id={first}"


# --- progress ---------------------------------------------------------------------------------

def big_png() -> bytes:
    """36 MP that compress well, so the upload is small but decoding takes a while."""
    ramp = Image.linear_gradient("L").resize((6000, 6000))
    return encode(Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.ROTATE_90), ramp)),
                  "PNG", compress_level=1)


def test_progress_seen_mid_way_is_between_0_and_99_and_rises(make_service):
    service = make_service(workers=0, max_upload_bytes=100_000_000)
    task = service.post(big_png(), width=800).json()["task"]
    queued = service.get(task)
    assert queued.status_code == 202 and queued.json()["progress"] == 0
    assert queued.headers["Retry-After"] == "1"

    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            answer = service.get(task).json()
            seen.append((answer["status"], answer["progress"]))
            if answer["status"] != "wait":
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    service.start_workers(1)
    watcher.join(timeout=60)
    stop.set()
    waiting = [progress for status, progress in seen if status == "wait"]
    assert seen[-1] == ("ready", 100), seen[-5:]
    assert all(0 <= progress <= 99 for progress in waiting)
    assert waiting == sorted(waiting), "progress went down"
    assert any(0 < progress < 100 for progress in waiting), sorted(set(waiting))


# --- the result's URL ---------------------------------------------------------------------------

def test_result_url_is_unguessable_and_cacheable_and_needs_no_key(make_service, backend):
    service = make_service(api_keys="alice:k1", **backend.env)
    result, _ = resized(service, make_photo(8, (400, 300)), headers=bearer("k1"), width=100)
    token = os.path.splitext(result["url"].rsplit("/", 1)[1])[0]
    assert len(token) * 6 >= 128  # URL-safe base64: 6 random bits a character

    served = service.fetch(result["url"])  # no Authorization header
    assert served.status_code == 200
    assert "max-age=31536000" in served.headers["Cache-Control"]
    etag = served.headers["ETag"]
    assert service.fetch(result["url"], headers={"If-None-Match": etag}).status_code == 304
    head = service.fetch(result["url"], method="HEAD")
    assert head.status_code == 200 and head.content == b""
    post = service.fetch(result["url"], method="POST")
    assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"


def test_result_url_is_gone_after_delete_and_so_is_its_file(make_service, backend):
    service = make_service(**backend.env)
    task = service.post(make_photo(9, (400, 300)), width=100).json()["task"]
    result = service.wait_done(task).json()["result"]
    assert service.fetch(result["url"]).status_code == 200
    assert backend.results(service)
    assert service.delete(task).status_code == 200
    gone = service.fetch(result["url"])
    assert_error_shape(gone, 404)
    assert not backend.stored(service)


@pytest.mark.parametrize("path", ["/files/", "/files/x.jpg", "/files/../results", "/files/%2e%2e%2fsecret.jpg"])
def test_unknown_file_paths_are_404(service, path):
    assert_error_shape(service.fetch(path), 404)


def test_another_users_resize_task_is_404(make_service):
    service = make_service(api_keys="alice:k1,bob:k2")
    task = service.post(make_photo(10, (400, 300)), headers=bearer("k1"), width=100).json()["task"]
    assert service.get(task, headers=bearer("k2")).status_code == 404
    assert service.delete(task, headers=bearer("k2")).status_code == 404
    assert service.wait_done(task, headers=bearer("k1")).json()["status"] == "ready"


def test_result_file_expires_with_its_task(make_service, backend):
    service = make_service(task_ttl=1, **backend.env)
    result, _ = resized(service, make_photo(11, (400, 300)), width=100)
    deadline = time.monotonic() + 8
    while service.fetch(result["url"]).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.fetch(result["url"]).status_code == 404
    assert not backend.results(service)


def test_delete_while_resizing_throws_the_outcome_away_with_its_files(make_service, backend):
    service = make_service(workers=0, max_upload_bytes=100_000_000, **backend.env)
    task = service.post(big_png(), width=800).json()["task"]
    service.start_workers(1)
    deadline = time.monotonic() + 20
    while service.get(task).json()["progress"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.delete(task).status_code == 200  # while the worker decodes or resizes

    time.sleep(3)  # long enough for the job to reach its next stage and stop
    assert service.get(task).status_code == 404
    assert leftovers(service.settings.upload_dir) == set()
    assert not backend.stored(service)


def test_a_resize_job_that_raises_fails_its_task_and_leaves_no_file(make_service):
    service = make_service(workers=0, task_ttl=2)
    task = service.post(make_photo(13, (400, 300)), width=100).json()["task"]
    for path in files_under(service.settings.upload_dir):  # the worker will not find the photo
        os.unlink(os.path.join(service.settings.upload_dir, path))
    service.start_workers(1)

    failed = service.wait_done(task).json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "internal_error"
    deadline = time.monotonic() + 6
    while service.get(task).status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert service.get(task).status_code == 404
    assert leftovers(service.settings.upload_dir) == set()


# --- monitoring ---------------------------------------------------------------------------------

def test_resize_job_is_on_the_resize_queue_names_its_task_and_shows_progress(service, redis_client):
    task = service.post(make_photo(12, (400, 300)), width=100).json()["task"]
    service.wait_done(task)
    registry = FinishedJobRegistry("resize", connection=redis_client)
    deadline = time.monotonic() + 3
    while not registry.get_job_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    jobs = [registry.job_class.fetch(job_id, connection=redis_client) for job_id in registry.get_job_ids()]
    assert [job.description for job in jobs] == [f"resize task {task}"]
    assert 0 < jobs[0].meta["progress"] < 100  # the last stage it saw, for rq-dashboard
