"""Bytes -> model-ready pixels, safely (pure CPU; the pipeline runs it in a thread pool).

Downloaded bytes are hostile input. Decoding:

* opens only the formats hotel photos come in (``ALLOWED_FORMATS``), so Pillow's
  rarer parsers (EPS via Ghostscript, TIFF via libtiff, PSD, ...) never see
  untrusted bytes; anything else is ``not_image``;
* checks the *declared* width x height against ``max_pixels`` before a single
  pixel is decoded (a 100-byte PNG can declare 50,000 x 50,000 = 7.5 GB of RGB);
  WebP pixels count 4x (its decoder needs ~16 bytes per pixel, the others ~4);
  Pillow's own ``DecompressionBombError`` is the second line;
* asks the JPEG decoder for a DCT-domain downscale (``Image.draft``) to at least
  2x the model size: ~2x faster decode and less memory (docs/references.md: ~80 -> ~170
  img/s per core on 1600x1200); other formats get the same via ``Image.reduce``;
* loads fully with ``ImageFile.LOAD_TRUNCATED_IMAGES`` off, so truncated or
  corrupt data becomes a ``DecodeError`` instead of a half-grey photo in the
  ranking;
* applies the EXIF orientation (ImageOps.exif_transpose's table; a malformed
  EXIF block leaves the photo unrotated rather than rejected), takes the first frame of animations, and turns
  every mode into plain RGB (alpha composited on white, 16-bit scaled, CMYK
  converted) before :func:`models.preprocess.preprocess_image`; modes that
  must be converted before they can be downscaled (palette, alpha, 16-bit, ...)
  are converted strip by strip, so no full-size converted copy ever exists;
* refuses, from the header alone, what would cost too much: a JPEG with more
  than ``MAX_JPEG_SCANS`` scans (each progressive scan is a pass over the whole
  image: tens of thousands of tiny scans in 1.6 MB took minutes of CPU), and
  any image whose estimated decode memory (:func:`decode_cost_bytes`, in bytes,
  by format and mode) is above the budget.

The pipeline runs all this in killable worker processes with a CPU-time
budget (:mod:`galleryrank.consumer.images.decode_pool`), so whatever gets past
these checks still cannot hold a decoder for long.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import zlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

log = logging.getLogger(__name__)

# Pillow format ids we accept. MPO is the JPEG variant phones write (JPEG +
# extra frames); AVIF counts where this Pillow build has it. Adding TIFF is a
# one-line change, but libtiff is a large parser for a format web galleries
# hardly use, so it stays out by default.
Image.init()  # register every plugin now: Image.open(formats=...) only knows registered ones
ALLOWED_FORMATS: tuple[str, ...] = tuple(
    f for f in ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "AVIF") if f in Image.OPEN
)
# Pillow's messages for data that ends early (JPEG "image file is truncated",
# PNG/GIF "truncated ..."/"unexpected end of file"/"buffer is not large enough").
_TRUNCATION_MARKERS = ("truncated", "end of file", "not large enough", "premature end")
# Modes Image.reduce averages correctly: no palette indices, no straight alpha
# (averaging transparent pixels' hidden colours would bleed into edges). The
# others are converted to RGB first.
_REDUCIBLE_MODES = frozenset({"L", "RGB", "RGBX", "CMYK", "YCbCr", "I", "F"})
# Pillow's WebP decoder goes through WebPAnimDecoder: ~16 bytes per pixel
# (measured: 192 MB for 4000x3000) against ~4 for the other formats, so a WebP
# pixel counts 4 times against max_pixels, which is a memory budget in RGBX pixels.
_WEBP_PIXEL_COST = 4
# A progressive JPEG from libjpeg has 10 scans, mozjpeg's optimised scripts a few dozen;
# the format allows any number, and libjpeg makes a full pass per scan.
MAX_JPEG_SCANS = 100
# Bytes per pixel of Pillow's storage of a decoded image, by mode ("1" and "P" are one
# byte, LA/PA/RGB(A)/CMYK/I/F four, 16-bit two).
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Progressive JPEG: libjpeg keeps every DCT coefficient (2 bytes) of every component at
# full size until the last scan, whatever draft() asked: up to 6 bytes per pixel (4:4:4).
_PROGRESSIVE_COEFF_BYTES = 6
# Strips of this many bytes of converted RGB are the most a conversion holds at once.
_STRIP_BYTES = 4 << 20
# EXIF orientations 5..8 swap width and height when applied.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112
WHITE = (255, 255, 255)
# Same mapping as PIL.ImageOps.exif_transpose.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class DecodeError(Exception):
    """Bytes that cannot become a scored image; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class DecodedImage:
    pixels: np.ndarray  # uint8 (3, size, size), from models.preprocess.preprocess_image
    phash: int  # 64-bit perceptual hash (imagehash.phash) of the oriented image at model size, as an int
    width: int  # of the oriented original (before any draft/reduce)
    height: int


def decode_image(
    data: bytes, size: int = 224, max_pixels: int = 50_000_000, max_bytes: int | None = None
) -> DecodedImage:
    """Decode, orient and preprocess one image; raises :class:`DecodeError` with a reason code."""
    from galleryrank.models.preprocess import preprocess_image  # lazy: keeps this module importable without torch deps

    rgb, width, height = load_oriented_rgb(data, size, max_pixels, max_bytes)
    pixels = preprocess_image(rgb, size)
    # The hash is taken from the model-size image: phash shrinks to 32x32 anyway,
    # and shrinking the 224x224 copy is cheaper than the (up to 1/2-scale) draft.
    small = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), "RGB")
    return DecodedImage(pixels=pixels, phash=phash_int(small), width=width, height=height)


def load_oriented_rgb(
    data: bytes, size: int = 224, max_pixels: int = 50_000_000, max_bytes: int | None = None
) -> tuple[Image.Image, int, int]:
    """The oriented RGB image (possibly downscaled to >= 2*size per side) and the oriented original size."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone flipped the process-wide switch; it would let half-decoded
        # images through as grey blocks. Put it back rather than trust it.
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was on; turning it off")
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    if not data:
        raise DecodeError("not_image", "empty body")
    try:
        # Image.open only parses the header. (Above Image.MAX_IMAGE_PIXELS it
        # warns, above twice that it raises DecompressionBombError: our own,
        # lower cap right after it decides first.)
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        width, height = img.size
        _check_cost(img, data, size, max_pixels, max_bytes)
        if img.format in ("JPEG", "MPO"):
            # DCT-domain downscale by 1/2, 1/4 or 1/8 while keeping each side >= 2*size.
            img.draft("RGB", (size * 2, size * 2))
        img.load()  # first frame only; raises on truncated/corrupt data
        # Only after load(): PNG's getexif() loads the image itself, and a
        # decode error swallowed there would leave a half-decoded image behind.
        orientation = _exif_orientation(img)
        if orientation in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
        if img.mode in _REDUCIBLE_MODES:
            rgb = to_rgb(_reduce(img, size))  # reduced before conversion: less to convert
        else:
            rgb = _convert_and_reduce(img, size)  # strip by strip: no full-size converted copy
        del img
        rgb = _orient(rgb, orientation)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not_image", f"not a {'/'.join(ALLOWED_FORMATS)} image") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_many_pixels", str(exc)[:200]) from None
    except MemoryError:
        raise DecodeError("too_many_pixels", "decoding needs more memory than available") from None
    except _PARSE_ERRORS as exc:
        raise _parse_error(exc) from None
    return rgb, width, height


_PARSE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError)


def _parse_error(exc: BaseException) -> DecodeError:
    message = str(exc)
    reason = "truncated_image" if any(m in message.lower() for m in _TRUNCATION_MARKERS) else "corrupt_image"
    return DecodeError(reason, f"{type(exc).__name__}: {message[:200]}")


def probe(
    data: bytes,
    size: int = 224,
    max_pixels: int = 50_000_000,
    max_bytes: int | None = None,
    max_scans: int | None = None,
) -> int:
    """Header-only checks of :func:`load_oriented_rgb` (format, size, scans, memory); returns the
    estimated decode bytes. Raises :class:`DecodeError`. Cheap: no pixel is decoded."""
    if not data:
        raise DecodeError("not_image", "empty body")
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            return _check_cost(img, data, size, max_pixels, max_bytes, max_scans)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not_image", f"not a {'/'.join(ALLOWED_FORMATS)} image") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_many_pixels", str(exc)[:200]) from None
    except _PARSE_ERRORS as exc:
        raise _parse_error(exc) from None


def _check_cost(
    img: Image.Image, data: bytes, size: int, max_pixels: int, max_bytes: int | None, max_scans: int | None = None
) -> int:
    width, height = img.size
    _check_dimensions(width, height, max_pixels, _WEBP_PIXEL_COST if img.format == "WEBP" else 1)
    if img.format in ("JPEG", "MPO"):
        check_jpeg_scans(data, MAX_JPEG_SCANS if max_scans is None else max_scans)
    cost = decode_cost_bytes(img, size)
    if max_bytes is not None and cost > max_bytes:
        raise DecodeError(
            "too_many_pixels",
            f"{img.format} {img.mode} {width}x{height} needs ~{cost >> 20} MB to decode (budget {max_bytes >> 20} MB)",
        )
    return cost


def decode_cost_bytes(img: Image.Image, size: int = 224) -> int:
    """Estimated peak bytes to decode an opened (header-only) image, by format and mode.

    Pillow's storage of the decoded image (1-4 bytes per pixel by mode; JPEG at its
    draft scale), plus libjpeg's full-size coefficient buffers for a progressive JPEG,
    WebP's ~16 bytes per pixel, and the strip conversion's working set.
    """
    width, height = img.size
    pixels = width * height
    if img.format == "WEBP":
        return pixels * 4 * _WEBP_PIXEL_COST + _STRIP_BYTES
    if img.format in ("JPEG", "MPO"):
        # draft() decodes at 1/2, 1/4 or 1/8 scale keeping each side >= 2*size.
        scale = 1
        while scale < 8 and width // (scale * 2) >= 2 * size and height // (scale * 2) >= 2 * size:
            scale *= 2
        decoded = -(-width // scale) * -(-height // scale) * 4
        progressive = img.info.get("progressive") or img.info.get("progression")
        return decoded + (pixels * _PROGRESSIVE_COEFF_BYTES if progressive else 0) + _STRIP_BYTES
    return pixels * _STORAGE_BYTES.get(img.mode, 4) + 2 * _STRIP_BYTES


def check_jpeg_scans(data: bytes, limit: int | None = None) -> int:
    """Count the scans (SOS markers) of the first JPEG in ``data``; DecodeError above ``limit``.

    Walks the marker segments and skips entropy-coded data (where 0xFF is followed by
    0x00 stuffing, a restart marker or fill bytes): linear in the bytes, no decoding.
    """
    limit = MAX_JPEG_SCANS if limit is None else limit
    n = len(data)
    pos, scans = 2, 0
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return scans  # not where a marker should be: the decoder will name the damage
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI: the first image ends (MPO frames after it are not decoded)
            return scans
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        pos += 2 + length
        if marker != 0xDA:
            continue
        scans += 1
        if scans > limit:
            raise DecodeError("too_many_scans", f"JPEG has more than {limit} scans (each is a pass over the image)")
        # Entropy-coded data: up to the next 0xFF that starts a real marker (one C-level search:
        # a Python step per 0xFF byte cost ~0.15-0.3 CPU-ms per photo, a tenth of a GPU host's budget).
        found = _NEXT_MARKER.search(data, pos)
        if found is None:
            return scans
        pos = found.start()
    return scans


# 0xFF that starts a marker inside entropy-coded data: not stuffing (0x00), a restart marker
# (0xD0-0xD7) or a fill byte (0xFF, the marker starts at the last one).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _check_dimensions(width: int, height: int, max_pixels: int, cost: int = 1) -> None:
    if width <= 0 or height <= 0:
        raise DecodeError("corrupt_image", f"declared size {width}x{height}")
    if width * height * cost > max_pixels:
        per_pixel = f" x {cost} (WebP decoder memory per pixel)" if cost != 1 else ""
        raise DecodeError(
            "too_many_pixels",
            f"declared size {width}x{height} = {width * height} pixels{per_pixel} (limit {max_pixels})",
        )


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - malformed EXIF must not reject a good photo; show it unrotated
        return 1


def _orient(img: Image.Image, orientation: int) -> Image.Image:
    """Apply the EXIF orientation with ImageOps.exif_transpose's table.

    Done from the tag read right after ``load`` because the reduced, converted
    copy need not carry the EXIF block any more.
    """
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


def _reduce_factor(img: Image.Image, size: int) -> int:
    return min(img.width // (2 * size), img.height // (2 * size))


def _reduce(img: Image.Image, size: int) -> Image.Image:
    """Integer box-downscale so each side stays >= 2*size: the non-JPEG twin of ``draft``."""
    factor = _reduce_factor(img, size)
    if factor >= 2:
        return img.reduce(factor)
    return img


def _convert_and_reduce(img: Image.Image, size: int) -> Image.Image:
    """``_reduce(to_rgb(img))`` holding only one strip of converted pixels at a time.

    Converting a 7000x7000 RGBA image whole cost ~16 bytes per pixel on top of the
    decoded image (the RGBA copy, the white background, the composite, the RGB);
    strips of whole reduce boxes give the same pixels for ~4 MB.
    """
    factor = _reduce_factor(img, size)
    if factor < 2:
        return to_rgb(img)
    width, height = img.size
    rows = max(factor, (_STRIP_BYTES // (16 * width)) // factor * factor)  # a multiple of the box height
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = img.crop((0, top, width, min(top + rows, height)))
        if "transparency" in img.info:
            strip.info["transparency"] = img.info["transparency"]
        out.paste(to_rgb(strip).reduce(factor), (0, top // factor))
    return out


def to_rgb(img: Image.Image) -> Image.Image:
    """Plain 8-bit RGB from any mode Pillow hands us; transparency composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # convert("L") clips 16-bit values at 255 (a mid-grey 16-bit PNG turns
        # white): scale by >> 8 instead (= /257 within 1), in integer arithmetic
        # to keep a 50 MP image at 2-4 bytes per pixel.
        arr = np.asarray(img)
        if mode == "I" and arr.max(initial=0) <= 255:
            grey = np.clip(arr, 0, 255).astype(np.uint8)  # 8-bit data stored in a 32-bit mode
        else:
            grey = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info or mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return _on_white(img.convert("RGBA"))
    if mode in ("L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    raise DecodeError("unsupported_mode", f"image mode {mode!r} is not supported")


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def phash_int(img: Image.Image) -> int:
    """64-bit DCT perceptual hash (imagehash.phash, 8x8) as a Python int, for near-duplicate checks."""
    bits = imagehash.phash(img).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")
