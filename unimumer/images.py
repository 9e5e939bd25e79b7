"""Any image source -> clean RGB page -> the picture the model reads.

`load_image` turns paths, bytes, PIL images, numpy arrays and Gradio sketch dicts into RGB on white,
refusing huge, empty and corrupt inputs with one sentence. `prepare_image` inverts a clearly dark board
and caps the area at the training resolution, the way the released checkpoints were trained
(LLaMA-Factory: scale the area down to the cap, nothing else): uploads and photos are not cropped or
padded. A sketchpad canvas, a mostly empty page, is cropped to the ink first (`crop=True`).
The processor then rounds the sides to whole visual tokens of `patch_size * merge_size` pixels (28 for
Qwen2.5-VL, 32 for Qwen3-VL / Qwen3.5): their number is the main cost of recognition.
"""
from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps, UnidentifiedImageError

INK_SUFFIXES = {".inkml"}  # online handwriting files, drawn by `ink_image`
DEFAULT_MAX_PIXELS = 512 * 512  # the training resolution: area cap of the model input (image_max_pixels)
MAX_INPUT_PIXELS = 40_000_000  # larger inputs are refused before their pixels are decoded
MAX_ASPECT = 100  # Qwen refuses aspect ratios over 200; padding keeps a cropped sketch well below
# What LLaMA-Factory does to a training image besides the area cap: images under 32 x 32 pixels of area are
# scaled up to it (its image_min_pixels default), short sides below 28 px are stretched to 28, and an
# aspect ratio over 200 is squeezed to 180 (its Qwen-VL plugin).
TRAINING_MIN_PIXELS, MIN_TRAINING_SIDE, TRAINING_ASPECT_LIMIT, TRAINING_ASPECT = 32 * 32, 28, 200, 180
WORK_SIDE = 1600  # ink is located on a copy at most this many pixels across


class ImageError(ValueError):
    """An unusable image; str(e) is one user-facing sentence."""


# ---------------------------------------------------------------- visual tokens


def vision_factor(image_processor) -> int:
    """Pixels per visual token along a side: the processor's patch_size x merge_size (28 for Qwen2.5-VL,
    32 for Qwen3-VL / Qwen3.5, 16 for 16-px patches without merging)."""
    return int(image_processor.patch_size) * int(image_processor.merge_size)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's resize target (height, width): sides rounded to multiples of `factor`, area within
    [min_pixels, max_pixels]; the same arithmetic as transformers' `smart_resize`, minus its refusal of
    aspect ratios over 200 (prepare_image never produces those)."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def visual_tokens(width: int, height: int, *, factor: int, min_pixels: int, max_pixels: int) -> int:
    """Visual tokens a Qwen-VL processor spends on a width x height image (no torch needed)."""
    h_bar, w_bar = smart_resize(height, width, factor, min_pixels, max_pixels)
    return (h_bar // factor) * (w_bar // factor)


def training_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of an upload after the area cap, as LLaMA-Factory sized the released checkpoints'
    training images: scaled down to at most `max_pixels` (sides truncated), tiny images up to 32 x 32 of
    area, short sides stretched to 28 px, aspect ratios over 200 squeezed to 180."""
    area = width * height
    if area > max_pixels or area < TRAINING_MIN_PIXELS:
        scale = math.sqrt((max_pixels if area > max_pixels else TRAINING_MIN_PIXELS) / area)
        width, height = max(1, int(width * scale)), max(1, int(height * scale))
    width, height = max(width, MIN_TRAINING_SIDE), max(height, MIN_TRAINING_SIDE)
    if width / height > TRAINING_ASPECT_LIMIT:
        width = height * TRAINING_ASPECT
    elif height / width > TRAINING_ASPECT_LIMIT:
        height = width * TRAINING_ASPECT
    return width, height


# ---------------------------------------------------------------- loading


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} megapixels" if pixels >= 1e6 else f"{pixels:,} pixels"


def _check_size(image: Image.Image, limit: int) -> None:
    w, h = image.size
    if w * h > limit:
        raise ImageError(f"This image is {w}×{h} pixels; the limit is {_megapixels(limit)}.")
    if w == 0 or h == 0:
        raise ImageError(f"This image is {w}×{h} pixels, so it has nothing to read.")


def _open(data: bytes | str | Path, what: str, limit: int) -> Image.Image:
    """Open and decode an encoded image, checking its header size before the pixels are decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    except Image.DecompressionBombError as e:  # PIL's own guard fires first for the very largest
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = _megapixels(int(found.group(1))) if found else "too many pixels"
        raise ImageError(f"This image has {size}; the limit is {_megapixels(limit)}.") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not an image file (or not in a format Pillow can read).") from None
    except OSError as e:
        raise ImageError(f"{what} cannot be read ({e.strerror or e}).") from None
    except Exception:  # plugins raise all sorts (SyntaxError, struct.error, ...) on malformed headers
        raise ImageError(f"{what} cannot be read: its header is corrupt.") from None
    w, h = image.size
    if w * h > limit and image.format == "JPEG":  # JPEG decodes at 1/2, 1/4 or 1/8 scale for free
        scale = next((s for s in (2, 4, 8) if (w / s) * (h / s) <= limit), 8)
        image.draft(image.mode, (math.ceil(w / scale), math.ceil(h / scale)))
    _check_size(image, limit)
    return _decode(image, what)


def _decode(image: Image.Image, what: str) -> Image.Image:
    """Decode the pixels of a lazily opened image."""
    try:
        image.load()
    except Exception as e:  # OSError, SyntaxError, EOFError, zlib errors ... depending on the format
        detail = "it is truncated" if "truncated" in str(e) else "its data is corrupt"
        raise ImageError(f"{what} cannot be decoded: {detail}.") from None
    return image


def _from_array(array: np.ndarray) -> Image.Image:
    """uint8 / uint16 / bool / float arrays, shaped (H, W), (H, W, 1|2|3|4) or channels-first."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (1, 2, 3, 4) and a.shape[-1] not in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (2, 3, 4)):
        raise ImageError(f"An image array must be (H, W) or (H, W, 3 or 4), not {tuple(a.shape)}.")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageError("The image array contains NaN or infinite values.")
        a = a * 255.0 if a.size and a.max() <= 1.0 else a
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    elif a.dtype.kind in "iu":
        high = int(a.max()) if a.size else 0
        a = np.clip(a // 257 if a.dtype.itemsize > 1 and high > 255 else a, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"An image array must hold numbers, not {a.dtype}.")
    return Image.fromarray(np.ascontiguousarray(a))  # L, LA, RGB or RGBA from the shape


def _flatten(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB, with transparency composited onto white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):  # PIL's convert clips these to 255
        a = np.asarray(image)
        if image.mode == "F":
            a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
        high = float(a.max()) if a.size else 0.0
        if high > 255:
            a = a / (257.0 if high <= 65535 else high / 255.0)
        elif image.mode == "F" and high <= 1.0:
            a = a * 255.0
        image = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    if _has_alpha(image):
        image = image.convert("RGBA")
        page = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, image).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError):
        raise ImageError(f"Images in {image.mode} mode are not supported.") from None


def _sketch(sketch: dict, limit: int) -> Image.Image:
    """A Gradio ImageEditor/Sketchpad value: the composite, else the background with the layers on top."""
    if sketch.get("composite") is not None:
        return _rgba(sketch["composite"], limit)
    parts = [sketch.get("background")] + list(sketch.get("layers") or [])
    parts = [_rgba(p, limit) for p in parts if p is not None]
    if not parts:
        raise ImageError("No handwriting found in the image.")
    page = Image.new("RGBA", parts[0].size, (255, 255, 255, 0))
    for part in parts:
        if part.size != page.size:
            part = part.resize(page.size)
        page = Image.alpha_composite(page, part)
    return page


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)


def _rgba(source, limit: int) -> Image.Image:
    image = _load_any(source, limit)
    return image.convert("RGBA") if _has_alpha(image) else _flatten(image).convert("RGBA")


def _load_any(source, limit: int) -> Image.Image:
    """Decoded image in its own mode, upright per EXIF."""
    if isinstance(source, dict):
        image = _sketch(source, limit)
    elif isinstance(source, Image.Image):  # possibly opened lazily by the caller: check, then decode
        _check_size(source, limit)
        image = _decode(source, "The image")
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError("The image data is empty.")
        image = _open(bytes(source), "The image data", limit)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        what = f"The file '{path.name}'"
        if not path.is_file():
            raise ImageError(f"{what} does not exist." if not path.exists() else f"{what} is not a file.")
        if path.stat().st_size == 0:
            raise ImageError(f"{what} is empty.")
        image = ink_image(path) if path.suffix.lower() in INK_SUFFIXES else _open(path, what, limit)
    else:
        raise ImageError(f"Cannot read an image from a {type(source).__name__}.")
    _check_size(image, limit)
    try:
        if image.getexif().get(0x0112, 1) != 1:  # EXIF orientation: phone photos are often stored sideways
            image = ImageOps.exif_transpose(image)
    except Exception:  # a corrupt EXIF block is no reason to refuse the picture
        pass
    return image


def ink_image(path) -> Image.Image:
    """An InkML file drawn as a model input: the one place where online ink becomes pixels for recognition
    (`Recognizer.recognize`, `predict`, the app), so which renderer a model gets is decided here. ImageError
    with one sentence for unreadable or malformed InkML."""
    from unimumer.ink import InkError, parse_inkml, render_ink

    try:
        return render_ink(parse_inkml(path))
    except InkError as error:
        raise ImageError(str(error)) from None


def load_image(source, pixel_limit: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Path, bytes, PIL image, numpy array or Gradio sketch dict -> RGB image on white.

    Raises ImageError with one sentence for missing, empty, corrupt, truncated or non-image files and
    for images over `pixel_limit` pixels (checked from the header, before decoding).
    """
    return _flatten(_load_any(source, pixel_limit))


# ---------------------------------------------------------------- preparing


def _pool(a: np.ndarray, k: int, op) -> np.ndarray:
    """Combine k x k blocks of a 2-D array (edge-padded) with np.minimum or np.maximum.

    k*k strided element-wise passes: much faster than a numpy reduction over reshaped blocks.
    """
    if k == 1:
        return a
    h, w = a.shape
    if h % k or w % k:
        a = np.pad(a, ((0, -h % k), (0, -w % k)), mode="edge")
    out = a[::k, ::k].copy()
    for i in range(k):
        for j in range(k):
            op(out, a[i::k, j::k], out=out)
    return out


def _ink_box(image: Image.Image) -> tuple[tuple[int, int, int, int] | None, bool]:
    """(bounding box of the ink or None, whether the page is dark) for an RGB image.

    "Ink" is what is clearly darker than the local paper. The paper level comes from a coarse max
    filter, so shading and uneven light in photos do not count; the threshold rises with the ink
    contrast, so JPEG noise and paper texture stay out; isolated specks are dropped.
    """
    k = max(1, math.ceil(max(image.size) / WORK_SIDE))  # locate ink on a copy at most WORK_SIDE across
    r, g, b = image.split()
    # The darkest channel: coloured ink (even yellow) stands out from white paper.
    gray = _pool(np.asarray(ImageChops.darker(ImageChops.darker(r, g), b)), k, np.minimum)
    # A dark board: the page is dark, and its brightest pixels stand out far more than its darkest.
    low, median, high = np.percentile(gray, (0.1, 50, 99.9))
    dark = median < 100 and high - median > 2 * (median - low)
    if dark:  # then the ink is the lightest channel, inverted
        gray = 255 - _pool(np.asarray(ImageChops.lighter(ImageChops.lighter(r, g), b)), k, np.maximum)

    gray = np.asarray(Image.fromarray(gray).filter(ImageFilter.BoxBlur(1)))  # tames sensor and JPEG noise
    h, w = gray.shape
    block = max(4, round(max(h, w) / 40))
    paper = Image.fromarray(_pool(gray, block, np.maximum))
    paper = paper.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.BoxBlur(1))
    paper = np.asarray(paper.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    # The max filter sits on the top of the paper's noise: take the typical offset off again.
    darker = paper - gray
    darker -= np.median(darker)
    # Contrast relative to the paper, so ink on a dimly lit page counts as much as on white paper
    # (the floor keeps noise in near-black corners from being amplified).
    contrast = np.clip(darker * (255.0 / np.maximum(paper, 48.0)), 0, 255).astype(np.uint8)

    # A fixed floor above (smoothed) noise, raised to a share of the strongest ink on high-contrast pages.
    flat = contrast.ravel()
    strongest = float(np.partition(flat, -20)[-20]) if flat.size > 20 else float(flat.max())
    mask = contrast >= max(40.0, 0.35 * strongest)
    # An ink pixel needs at least two ink neighbours: isolated specks go, 1-px lines stay.
    neighbours = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.BoxBlur(1))
    mask &= np.asarray(neighbours) >= 85
    if not mask.any():
        return None, dark
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    x0, y0, x1, y1 = (int(v) * k for v in (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1))
    return (x0, y0, min(x1, image.width), min(y1, image.height)), bool(dark)


def _paper_colour(image: Image.Image) -> tuple[int, int, int]:
    """Median colour of the image border: what padding should look like."""
    a = np.asarray(image)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return tuple(int(v) for v in np.median(border, axis=0))


def is_sketch(source) -> bool:
    """Whether an input is a drawing canvas (a Gradio Sketchpad / ImageEditor value), which is cropped."""
    return isinstance(source, dict)


def prepare_image(
    image, max_pixels: int = DEFAULT_MAX_PIXELS, *, crop: bool = False, min_side: int = 56
) -> Image.Image:
    """The model's view of an image: upright RGB, a clearly dark board inverted, at most `max_pixels` in area.

    An upload or photo (`crop=False`) is only scaled down to the cap (`training_size`), as the released
    checkpoints were trained. A sketch canvas (`crop=True`) is first cropped to the ink with a margin,
    each side at least `min_side` (small crops are enlarged, then padded). Accepts anything `load_image`
    does. Raises ImageError("No handwriting found in the image.") for a blank page or an empty sketch.
    """
    image = load_image(image)
    box, dark = _ink_box(image)
    if box is None:
        raise ImageError("No handwriting found in the image.")
    if dark:
        image = ImageOps.invert(image)
    if not crop:
        size = training_size(*image.size, max_pixels)
        return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
    return _crop_to_ink(image, box, max_pixels, min_side)


def _crop_to_ink(image: Image.Image, box: tuple[int, int, int, int], max_pixels: int, min_side: int) -> Image.Image:
    """The ink box plus a margin, padded to Qwen's aspect limit and `min_side`, at most `max_pixels`."""
    x0, y0, x1, y1 = box
    margin = max(4, round(0.1 * (y1 - y0)))
    crop = image.crop(
        (max(0, x0 - margin), max(0, y0 - margin), min(image.width, x1 + margin), min(image.height, y1 + margin))
    )
    paper = _paper_colour(crop)
    # The margin the image itself could not give, and the padding that keeps Qwen's aspect limit.
    w, h = crop.size
    need_w = max(x1 - x0 + 2 * margin, math.ceil(h / MAX_ASPECT))
    need_h = max(y1 - y0 + 2 * margin, math.ceil(w / MAX_ASPECT))
    crop = _pad(crop, max(w, need_w), max(h, need_h), paper)

    w, h = crop.size
    scale = min(1.0, math.sqrt(max_pixels / (w * h)))
    if min(w, h) * scale < min_side:  # the short side gets padded up to min_side: budget for it
        scale = min(scale, max_pixels / (min_side * max(w, h)))
    if scale < 1.0:
        size = (max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
        crop = crop.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    elif max(w, h) < min_side:  # a tiny drawing: enlarge it to the minimum instead of drowning it in padding
        scale = min_side / max(w, h)
        crop = crop.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    w, h = crop.size
    return _pad(crop, max(w, min_side), max(h, min_side), paper)


def _pad(image: Image.Image, width: int, height: int, colour: tuple[int, int, int]) -> Image.Image:
    """Centre `image` on a `colour` canvas of the given size (no-op when already that size)."""
    if image.size == (width, height):
        return image
    canvas = Image.new("RGB", (width, height), colour)
    canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return canvas
