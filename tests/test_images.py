"""unimumer.images: loading every kind of input, refusing bad ones, and preparing the model's view."""
import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image, ImageDraw

from unimumer.images import (
    DEFAULT_MAX_PIXELS,
    MAX_ASPECT,
    ImageError,
    _ink_box,
    load_image,
    prepare_image,
    smart_resize,
    training_size,
    visual_tokens,
)

QWEN_DEFAULT_CAP = 16384 * 28 * 28  # qwen-vl-utils' default max_pixels (upstream preprocessing)
QWEN2_5 = {"factor": 28, "min_pixels": 56 * 56}  # Qwen2.5-VL's processor: 14-px patches merged 2 x 2


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and "Traceback" not in message and len(message) < 200


def drawing(size=(1200, 400), mode="RGB", box=(540, 160, 660, 250)) -> Image.Image:
    """A small hand-drawn-looking formula (a check mark and a bar) inside `box` of a blank canvas."""
    blank = (0, 0, 0, 0) if mode == "RGBA" else "white"
    ink = (0, 0, 0, 255) if mode == "RGBA" else "black"
    image = Image.new(mode, size, blank)
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(image)
    draw.line([(x0, y0 + 30), (x0 + 40, y1 - 30), (x1, y0)], fill=ink, width=5, joint="curve")
    draw.line([(x0 + 10, y1 - 5), (x1 - 10, y1 - 5)], fill=ink, width=5)
    return image


def png_header(width: int, height: int) -> bytes:
    """A PNG that only claims its size: signature, IHDR, a tiny IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- visual tokens


@pytest.mark.parametrize(
    "size, cap, tokens",
    [
        ((256, 64), DEFAULT_MAX_PIXELS, 18),
        ((600, 200), DEFAULT_MAX_PIXELS, 147),
        ((1000, 200), DEFAULT_MAX_PIXELS, 252),
        ((800, 800), DEFAULT_MAX_PIXELS, 324),
        ((1200, 400), QWEN_DEFAULT_CAP, 602),
        ((1920, 1080), QWEN_DEFAULT_CAP, 2691),
    ],
)
def test_visual_tokens_match_measured_facts(size, cap, tokens):
    assert visual_tokens(*size, max_pixels=cap, **QWEN2_5) == tokens


def test_smart_resize_edges():
    assert smart_resize(10, 10, 28, 56 * 56, DEFAULT_MAX_PIXELS) == (56, 56)  # below min_pixels: scaled up
    h, w = smart_resize(5000, 5000, 28, 56 * 56, DEFAULT_MAX_PIXELS)
    assert h % 28 == w % 28 == 0 and h * w <= DEFAULT_MAX_PIXELS
    assert visual_tokens(512, 512, max_pixels=DEFAULT_MAX_PIXELS, **QWEN2_5) <= DEFAULT_MAX_PIXELS // (28 * 28)
    # Qwen3-VL / Qwen3.5: 16-px patches merged 2 x 2, and a 256 x 256 floor on the area
    assert visual_tokens(300, 100, factor=32, min_pixels=256 * 256, max_pixels=DEFAULT_MAX_PIXELS) == 5 * 14


def test_training_size_is_llama_factorys():
    """LLaMA-Factory's sizing of the released checkpoints' training images (mm_plugin.py): area scaled down to
    the cap with truncated sides, up to 32 x 32 when smaller, short sides stretched to 28, aspect > 200 squeezed."""
    assert training_size(1364, 314) == (1067, 245)
    assert training_size(512, 512) == (512, 512) and training_size(300, 100) == (300, 100)
    assert training_size(20, 20) == (32, 32)
    assert training_size(400, 10) == (400, 28)
    assert training_size(30000, 100, max_pixels=10**9) == (18000, 100)


# ---------------------------------------------------------------- loading: modes and sources


def test_transparent_rgba_becomes_white_not_black():
    image = load_image(drawing(mode="RGBA"))
    assert image.mode == "RGB" and image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((600, 245)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "LA", "1", "I", "F", "I;16", "RGBA"])
def test_modes_load_as_rgb_on_white(mode, tmp_path):
    base = drawing(size=(200, 100), box=(50, 20, 150, 80))
    if mode == "I;16":  # a real 16-bit PNG round trip: PIL's own convert would clip it to white
        a = (np.asarray(base.convert("L")).astype(np.uint16) * 257)
        Image.fromarray(a).save(tmp_path / "deep.png")
        image = load_image(tmp_path / "deep.png")
    elif mode in ("I", "F"):
        scale = 257 if mode == "I" else 1 / 255
        a = np.asarray(base.convert("L")).astype(np.int32 if mode == "I" else np.float32) * scale
        image = load_image(Image.fromarray(a.astype(np.int32) if mode == "I" else a))
    elif mode == "RGBA":
        image = load_image(drawing(size=(200, 100), mode="RGBA", box=(50, 20, 150, 80)))
    else:
        image = load_image(base.convert(mode))
    assert image.mode == "RGB"
    a = np.asarray(image.convert("L"))
    assert a[0, 0] > 240, "the page must stay white"
    assert a.min() < 40, "the strokes must stay dark"


def test_palette_with_transparency_composites_on_white(tmp_path):
    image = Image.new("P", (60, 40), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    ImageDraw.Draw(image).line([(5, 20), (55, 20)], fill=1, width=3)
    image.info["transparency"] = 0  # index 0 (black) is the transparent page
    image.save(tmp_path / "p.png")
    loaded = load_image(tmp_path / "p.png")
    assert loaded.getpixel((2, 2)) == (255, 255, 255)
    assert loaded.getpixel((30, 20)) == (255, 0, 0)


def test_cmyk_jpeg_and_exif_orientation(tmp_path):
    drawing(size=(200, 100), box=(50, 20, 150, 80)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").size == (200, 100)

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees on display
    drawing(size=(200, 100), box=(50, 20, 150, 80)).save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (100, 200)


@pytest.mark.parametrize(
    "array",
    [
        np.full((40, 60), 255, np.uint8),
        np.full((40, 60, 1), 255, np.uint8),
        np.full((40, 60, 3), 255, np.uint8),
        np.full((40, 60, 4), 255, np.uint8),
        np.full((3, 40, 60), 255, np.uint8),  # channels first
        np.full((40, 60), 65535, np.uint16),
        np.ones((40, 60, 3), np.float32),  # floats in [0, 1]
        np.full((40, 60), 255.0),  # floats in [0, 255]
        np.ones((40, 60), bool),
    ],
)
def test_numpy_arrays_load(array):
    image = load_image(array)
    assert image.mode == "RGB" and image.size == (60, 40)
    assert np.asarray(image).min() >= 254


def test_transparent_numpy_rgba_is_white():
    a = np.zeros((40, 60, 4), np.uint8)  # black, fully transparent
    assert np.asarray(load_image(a)).min() == 255


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((4, 5, 6, 7), np.uint8), "(H, W)"),
        (np.zeros((40, 60, 5), np.uint8), "(H, W)"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.zeros((4, 4), dtype=object), "numbers"),
    ],
)
def test_bad_arrays_are_refused(array, words):
    with pytest.raises(ImageError) as e:
        load_image(array)
    assert words in str(e.value) and one_sentence(str(e.value))


def test_gradio_sketch_dicts(tmp_path):
    sketch = drawing(mode="RGBA")
    layer_path = tmp_path / "layer.png"
    sketch.save(layer_path)
    variants = [
        {"background": None, "layers": [sketch], "composite": sketch},
        {"background": None, "layers": [sketch], "composite": None},
        {"background": Image.new("RGBA", sketch.size, (0, 0, 0, 0)), "layers": [np.asarray(sketch)], "composite": None},
        {"background": None, "layers": [str(layer_path)], "composite": None},
        {"background": Image.new("RGB", sketch.size, "white"), "layers": [], "composite": np.asarray(sketch)},
    ]
    for value in variants:
        image = load_image(value)
        assert image.mode == "RGB" and image.size == sketch.size
        assert image.getpixel((5, 5)) == (255, 255, 255)
        assert image.getpixel((600, 245)) == (0, 0, 0)


def test_empty_sketches_have_no_handwriting():
    empty = Image.new("RGBA", (1200, 400), (0, 0, 0, 0))
    for value in (
        {"background": None, "layers": [], "composite": None},
        {"background": None, "layers": [empty], "composite": empty},
    ):
        with pytest.raises(ImageError, match="No handwriting found in the image."):
            prepare_image(value)


# ---------------------------------------------------------------- loading: bad files


def test_bad_files_get_one_sentence(tmp_path):
    good = io.BytesIO()
    drawing().save(good, "PNG")
    cases = {
        "text.png": b"this is not an image, just text\n",
        "truncated.png": good.getvalue()[: len(good.getvalue()) // 2],
        "empty.png": b"",
        "garbage.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 50,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        for source in (tmp_path / name, str(tmp_path / name), data):
            with pytest.raises(ImageError) as e:
                load_image(source)
            assert one_sentence(str(e.value)), (name, str(e.value))
    with pytest.raises(ImageError, match="truncated"):
        load_image(Image.open(tmp_path / "truncated.png"))  # opened lazily by the caller
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is not a file"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="Cannot read an image from a int"):
        load_image(42)


@pytest.mark.parametrize("size, shown", [((30000, 30000), "900 megapixels"), ((10000, 5000), "10000×5000")])
def test_huge_images_refused_before_decoding(size, shown, tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(*size))
    tracemalloc.start()
    start = time.perf_counter()
    for source in (path, path.read_bytes()):
        with pytest.raises(ImageError) as e:
            load_image(source)
        assert shown in str(e.value) and "limit is 40 megapixels" in str(e.value)
        assert one_sentence(str(e.value))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - start < 2.0
    assert peak < 20_000_000, "nothing the size of the image may be allocated"


def test_big_jpeg_is_decoded_at_reduced_scale():
    image = Image.new("L", (8000, 6000), 255)  # 48 MP: over the limit, but JPEG can decode it at 1/2
    ImageDraw.Draw(image).line([(1000, 3000), (7000, 3000)], fill=0, width=40)
    data = io.BytesIO()
    image.save(data, "JPEG", quality=50)
    loaded = load_image(data.getvalue())
    assert loaded.size == (4000, 3000)
    with pytest.raises(ImageError, match="limit"):
        load_image(data.getvalue(), pixel_limit=100_000)  # even 1/8 scale is too big


# ---------------------------------------------------------------- preparing


@pytest.mark.parametrize("mode", ["RGBA", "RGB"])
def test_small_drawing_costs_at_most_a_third_of_upstream_tokens(mode):
    canvas = drawing(mode=mode)
    upstream = visual_tokens(*canvas.size, max_pixels=QWEN_DEFAULT_CAP, **QWEN2_5)
    assert upstream == 602
    source = {"background": None, "layers": [canvas], "composite": canvas} if mode == "RGBA" else canvas
    prepared = prepare_image(source, crop=True)
    assert visual_tokens(*prepared.size, max_pixels=DEFAULT_MAX_PIXELS, **QWEN2_5) <= upstream / 3
    # The crop holds the whole drawing: as many dark pixels as the drawing has, and a white page.
    a = np.asarray(prepared.convert("L"))
    assert a[0, 0] == 255 and (a < 128).sum() == (np.asarray(load_image(canvas).convert("L")) < 128).sum()


def test_crop_keeps_all_the_ink_with_a_margin():
    canvas = drawing(size=(1000, 700), box=(100, 300, 700, 500))
    prepared = prepare_image(canvas, max_pixels=10_000_000, crop=True)
    w, h = prepared.size
    assert 600 < w < 700 and 200 < h < 260  # ink box ~605 x 205 plus margins
    a = np.asarray(prepared.convert("L"))
    assert (a[:4] == 255).all() and (a[-4:] == 255).all() and (a[:, :4] == 255).all() and (a[:, -4:] == 255).all()


@pytest.mark.parametrize(
    "page",
    [
        Image.new("RGB", (800, 600), "white"),
        Image.new("RGB", (800, 600), (120, 130, 110)),
        Image.new("L", (50, 50), 0),
        Image.new("RGBA", (1200, 400), (0, 0, 0, 0)),
    ],
)
def test_blank_pages_are_refused(page):
    with pytest.raises(ImageError) as e:
        prepare_image(page)
    assert str(e.value) == "No handwriting found in the image."


def noisy_page(seed=0, size=(900, 600), sigma=8.0) -> np.ndarray:
    """Paper under uneven light with sensor noise (float RGB)."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = (0.6 + 0.35 * xx / w - 0.15 * yy / h)[..., None]
    return np.array([240, 232, 215], np.float32) * light + rng.normal(0, sigma, (h, w, 3))


def test_noise_and_jpeg_artefacts_are_not_handwriting():
    page = Image.fromarray(np.clip(noisy_page(), 0, 255).astype(np.uint8))
    data = io.BytesIO()
    page.save(data, "JPEG", quality=30)
    for source in (page, data.getvalue()):
        with pytest.raises(ImageError, match="No handwriting"):
            prepare_image(source)


def test_ink_is_found_on_a_photo_like_page():
    page = noisy_page(size=(1800, 1500))
    ink = np.ones(page.shape[:2], np.float32)
    ink[1200:1260, 700:1500] = 0.2  # a stroke band where the formula is, blue-ish on the paper
    ink[1100:1300, 1400:1420] = 0.2
    page = page * (ink[..., None] + (1 - ink[..., None]) * np.array([0.3, 0.35, 0.8]))
    image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    box, dark = _ink_box(image)
    assert not dark
    x0, y0, x1, y1 = box
    assert abs(x0 - 700) <= 4 and abs(x1 - 1500) <= 4 and abs(y0 - 1100) <= 4 and abs(y1 - 1300) <= 4


def test_dark_board_is_inverted():
    board = Image.new("RGB", (900, 300), (30, 60, 40))
    draw = ImageDraw.Draw(board)
    draw.line([(100, 200), (200, 100), (300, 200)], fill=(230, 230, 220), width=6)
    draw.line([(400, 150), (600, 150)], fill=(240, 240, 240), width=6)
    noisy = np.asarray(board).astype(np.float32) + np.random.default_rng(0).normal(0, 6, (300, 900, 3))
    board = np.clip(noisy, 0, 255).astype(np.uint8)
    prepared = prepare_image(board, crop=True)
    a = np.asarray(prepared.convert("L"))
    assert np.median(a) > 150, "the board became light paper"
    assert a.min() < 60, "the chalk became dark ink"
    assert 500 < prepared.width < 560
    whole = prepare_image(board)  # an upload: inverted too, but not cropped
    assert whole.size == training_size(900, 300) and np.median(np.asarray(whole.convert("L"))) > 150


def test_light_ink_on_black_is_inverted():
    page = np.zeros((200, 400), np.uint8)
    page[90:110, 50:350] = 255
    a = np.asarray(prepare_image(page).convert("L"))
    assert a[0, 0] == 255 and a.min() == 0


@pytest.mark.parametrize("crop", [True, False])
def test_downscale_caps_the_area(crop):
    big = drawing(size=(3000, 2000), box=(100, 100, 2900, 1900))
    full = prepare_image(big, max_pixels=10_000_000, crop=crop)
    for cap in (DEFAULT_MAX_PIXELS, 128 * 128):
        prepared = prepare_image(big, max_pixels=cap, crop=crop)
        assert cap * 0.98 <= prepared.width * prepared.height <= cap
        assert abs(prepared.width / prepared.height - full.width / full.height) < 0.01


def test_tiny_drawings_reach_the_minimum_size():
    dot = Image.new("RGB", (500, 500), "white")
    ImageDraw.Draw(dot).ellipse((250, 250, 254, 254), fill="black")
    prepared = prepare_image(dot, crop=True)
    assert min(prepared.size) >= 56
    assert np.asarray(prepared.convert("L")).min() < 100
    assert min(prepare_image(dot, min_side=112, crop=True).size) >= 112


def test_extreme_aspect_is_padded_within_qwen_limits():
    line = Image.new("RGB", (20000, 300), "white")
    ImageDraw.Draw(line).line([(10, 150), (19990, 150)], fill="black", width=3)
    prepared = prepare_image(line, crop=True)
    w, h = prepared.size
    assert w / h <= MAX_ASPECT and w * h <= DEFAULT_MAX_PIXELS
    h_bar, w_bar = smart_resize(h, w, 28, 56 * 56, DEFAULT_MAX_PIXELS)
    assert max(h_bar, w_bar) / min(h_bar, w_bar) < 200
    ribbon = Image.new("RGB", (30000, 100), "white")
    ImageDraw.Draw(ribbon).line([(10, 50), (29990, 50)], fill="black", width=3)
    upload = prepare_image(ribbon)  # whole, squeezed like a training image: aspect 180, within Qwen's limit
    assert upload.size == (29 * 180, 29)


def test_real_photos_are_sent_whole_and_would_crop_sensibly():
    for path in sorted(shared_path("hme100k_photos").glob("*.jpg")):
        original = load_image(path)
        prepared = prepare_image(path)
        assert prepared.size == training_size(*original.size) and prepared.width * prepared.height <= DEFAULT_MAX_PIXELS
        # These photos are already cut around the formula: the crop keeps nearly all of it.
        box, dark = _ink_box(original)
        assert not dark, path.name
        x0, y0, x1, y1 = box
        assert (x1 - x0) >= 0.85 * original.width and (y1 - y0) >= 0.6 * original.height, path.name
        # Not inverted: the page stays about as bright as it was.
        assert abs(np.median(np.asarray(prepared.convert("L"))) - np.median(np.asarray(original.convert("L")))) < 40
