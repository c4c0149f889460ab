"""A corpus of hostile and odd image bodies, generated in memory (nothing on disk, nothing downloaded).

Each :class:`ImageCase` carries the bytes, the ``Content-Type`` a server
would send with them, and the expected outcome of ``galleryrank.consumer.images.decode.decode_image``:
``"ok"`` or the ``DecodeError.reason``. Successful cases also carry the
oriented size and, where the picture is the four-colour test card, the colour
each quadrant must have after decoding (proves EXIF rotation, first-frame
selection, alpha-on-white, CMYK and 16-bit handling).

Reused by the decode unit tests, the download tests and the pipeline's
hostile-input tests (serve ``case.data`` with ``case.content_type``).

    from tests.hostile_images import corpus
    for case in corpus(): ...
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

OK = "ok"

# The test card: four saturated quadrants, so any rotation or flip is visible.
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
CARD_QUADRANTS = (RED, GREEN, BLUE, YELLOW)  # top-left, top-right, bottom-left, bottom-right

# EXIF orientation -> the transpose that *undoes* the display transform, i.e.
# what a camera "stores" so that applying the orientation shows the card upright.
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # displayed with ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # displayed with ROTATE_90
}


@dataclass(frozen=True)
class ImageCase:
    name: str
    data: bytes
    content_type: str
    expect: str  # "ok" or a DecodeError.reason
    note: str
    size: tuple[int, int] | None = None  # oriented (width, height) when expect == "ok"
    quadrants: tuple[tuple[int, int, int], ...] | None = None  # TL, TR, BL, BR colours after decode
    tolerance: int = 40  # per-channel tolerance for quadrant colours (JPEG/CMYK/WebP are lossy)
    tags: frozenset[str] = field(default_factory=frozenset)


def color_card(width: int = 320, height: int = 240, mode: str = "RGB") -> Image.Image:
    """The four-colour card in ``mode`` (converted from RGB)."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    h2, w2 = height // 2, width // 2
    arr[:h2, :w2], arr[:h2, w2:], arr[h2:, :w2], arr[h2:, w2:] = CARD_QUADRANTS
    img = Image.fromarray(arr, "RGB")
    return img if mode == "RGB" else img.convert(mode)


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_bytes(
    width: int,
    height: int,
    bit_depth: int,
    color_type: int,
    rows: bytes | None = None,
    extra_chunks: list[tuple[bytes, bytes]] = (),
) -> bytes:
    """A PNG written by hand, so headers can say anything (bombs, 16-bit RGB, zero sizes).

    ``rows``: raw scanlines *with* their filter byte; None = a few zero bytes
    (an IDAT far smaller than the header promises).
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"\x00" * 64, 9)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", ihdr)]
    parts += [chunk(kind, payload) for kind, payload in extra_chunks]
    parts += [chunk(b"IDAT", idat), chunk(b"IEND", b"")]
    return b"".join(parts)


def _png_16bit(arr: np.ndarray) -> bytes:
    """16-bit grey (H, W) or RGB (H, W, 3) array -> PNG (Pillow cannot write 16-bit RGB itself)."""
    height, width = arr.shape[:2]
    color_type = 0 if arr.ndim == 2 else 2
    big_endian = arr.astype(">u2").reshape(height, -1).tobytes()
    row_len = len(big_endian) // height
    rows = b"".join(b"\x00" + big_endian[y * row_len : (y + 1) * row_len] for y in range(height))
    return png_bytes(width, height, 16, color_type, rows)


def _jpeg_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid JPEG whose SOF marker is patched to declare ``width`` x ``height``."""
    data = bytearray(encode(color_card(16, 16), "JPEG", quality=80))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)  # marker, length(2), precision(1), then H, W
    return bytes(data)


def _gif_with_declared_size(width: int, height: int) -> bytes:
    data = bytearray(encode(color_card(16, 16).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # logical screen descriptor
    return bytes(data)


def _exif_orientation_jpeg(orientation: int) -> bytes:
    upright = color_card(320, 240)
    stored = (
        upright.transpose(_STORE_FOR_ORIENTATION[orientation]) if orientation in _STORE_FOR_ORIENTATION else upright
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=90, exif=exif.tobytes())


def _animated(fmt: str) -> bytes:
    first = Image.new("RGB", (64, 48), RED)
    second = Image.new("RGB", (64, 48), BLUE)
    params: dict[str, object] = {"save_all": True, "append_images": [second], "duration": 100, "loop": 0}
    if fmt == "WEBP":
        params["lossless"] = True
    return encode(first, fmt, **params)


def _palette_with_transparency() -> bytes:
    """A P-mode PNG whose palette index 0 is fully transparent (tRNS): the top half must come out white."""
    img = Image.new("P", (64, 48), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))  # index 0 black (transparent), 1 red
    img.paste(0, (0, 0, 64, 24))
    return encode(img, "PNG", transparency=0)


def _half_transparent(mode: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """Top half fully transparent (hidden colour black), bottom half opaque red (RGBA) or black (LA)."""
    width, height = size
    if mode == "RGBA":
        img = Image.new("RGBA", size, RED + (255,))
        img.paste((0, 0, 0, 0), (0, 0, width, height // 2))
    else:
        img = Image.new("LA", size, (0, 255))
        img.paste((0, 0), (0, 0, width, height // 2))
    return encode(img, "PNG")


def _png_metadata_bomb(kind: bytes) -> bytes:
    """A 16x16 PNG with a ~16 KB zTXt/iCCP chunk that inflates to 16 MB (a zip bomb in the metadata)."""
    rows = b"".join(b"\x00" + b"\x80" * 48 for _ in range(16))
    keyword = b"Comment" if kind == b"zTXt" else b"icc"
    payload = keyword + b"\x00\x00" + zlib.compress(b"\x00" * (16 * 1024 * 1024), 9)
    return png_bytes(16, 16, 8, 2, rows, [(kind, payload)])


# PNG colour type and bit depth of each Pillow mode an at-cap image is made in.
_PNG_MODES = {"RGB": (2, 8, 3), "RGBA": (6, 8, 4), "L": (0, 8, 1), "LA": (4, 8, 2), "I;16": (0, 16, 2), "P": (3, 8, 1)}
AT_CAP_SIDE = 7_000  # 49 M pixels: just under the default 50 M pixel cap


def uniform_png(width: int, height: int, mode: str) -> bytes:
    """A ``width`` x ``height`` PNG of one colour (top half transparent where the mode has
    alpha), written row by row: a 7000x7000 RGBA image is ~200 KB and never exists
    decoded in the test process. ``P`` has a two-entry palette with index 0 transparent."""
    color_type, depth, channels = _PNG_MODES[mode]
    pixel = {
        "RGB": b"\x80\x60\x40",
        "RGBA": b"\xc0\x20\x20\xff",
        "L": b"\x80",
        "LA": b"\x80\xff",
        "I;16": b"\x80\x00",
        "P": b"\x01",
    }[mode]
    hidden = {"RGBA": b"\x00\x00\x00\x00", "LA": b"\x00\x00", "P": b"\x00"}.get(mode, pixel)
    z = zlib.compressobj(9)
    top, bottom = b"\x00" + hidden * width, b"\x00" + pixel * width
    idat = b"".join(z.compress(top if y < height // 2 else bottom) for y in range(height)) + z.flush()
    extra: list[tuple[bytes, bytes]] = []
    if mode == "P":
        extra = [(b"PLTE", b"\x00\x00\x00\xc0\x20\x20"), (b"tRNS", b"\x00")]

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    head = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", ihdr)] + [chunk(k, v) for k, v in extra]
    return b"".join([*head, chunk(b"IDAT", idat), chunk(b"IEND", b"")])


def uniform_progressive_jpeg(side: int, mode: str = "RGB") -> bytes:
    """A progressive JPEG of one colour, ``side`` x ``side`` (libjpeg holds its full-size coefficients)."""
    return encode(Image.new(mode, (side, side), 128 if mode == "L" else (128, 100, 90)), "JPEG", progressive=True)


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, bytes) of each segment after SOI; an SOS segment includes its entropy-coded data."""
    out, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, data[pos : pos + 2]))
            break
        end = pos + 2 + ((data[pos + 2] << 8) | data[pos + 3])
        if marker == 0xDA:
            while True:
                end = data.find(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        out.append((marker, data[pos:end]))
        pos = end
    return out


def progressive_scan_bomb(side: int = 2048, extra_scans: int = 5_000) -> bytes:
    """A valid progressive JPEG with ``extra_scans`` more copies of its AC refinement scan.

    Every scan is a full pass over the image's coefficients, so the CPU cost grows with
    scans x pixels while the file stays tiny: 4096 x 4096 with 2,000 extra scans is
    178 KB and ~11 s of CPU; 20,000 on 7000 x 7000 is minutes (libjpeg only warns).
    """
    segs = _jpeg_segments(uniform_progressive_jpeg(side, "L"))
    scans = [i for i, (marker, _) in enumerate(segs) if marker == 0xDA]
    i = scans[3]  # an AC scan with a Huffman table of its own just before it
    unit = (segs[i - 1][1] if segs[i - 1][0] == 0xC4 else b"") + segs[i][1]
    return b"\xff\xd8" + b"".join(s for m, s in segs if m != 0xD9) + unit * extra_scans + b"\xff\xd9"


def at_cap_images() -> dict[str, bytes]:
    """One image per decode mode at the pixel cap (7000 x 7000), ~0.2 MB each."""
    side = AT_CAP_SIDE
    out = {f"png_{m.replace(';', '').lower()}": uniform_png(side, side, m) for m in _PNG_MODES}
    out["jpeg_progressive_rgb"] = uniform_progressive_jpeg(side)
    return out


def _truncated(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def _with_damaged_idat(png: bytes) -> bytes:
    """Flip 8 bytes in the middle of the compressed pixel stream (the CRC then no longer matches either)."""
    data = bytearray(png)
    idat = data.find(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    middle = idat + 4 + length // 2
    for k in range(8):
        data[middle + k] ^= 0x5A
    return bytes(data)


@lru_cache(maxsize=1)
def corpus() -> tuple[ImageCase, ...]:
    """All cases, built once per process (about 40, ~1 MB in total)."""
    card = color_card(320, 240)
    jpeg = encode(card, "JPEG", quality=90)
    big_jpeg = encode(color_card(1600, 1200), "JPEG", quality=85)
    png = encode(card, "PNG")
    gif = encode(card.convert("P"), "GIF")
    quads = CARD_QUADRANTS
    half_white_red = (WHITE, WHITE, RED, RED)
    grey16 = np.full((48, 64), 32768, dtype=np.uint16)
    grey16[24:] = 65535
    rgb16 = np.zeros((48, 64, 3), dtype=np.uint16)
    rgb16[:, :] = (65535, 0, 0)
    rgb16[24:] = (0, 0, 65535)
    mid_grey = (128, 128, 128)
    rng = np.random.default_rng(7)

    cases = [
        # --- well-formed photos in every accepted format -------------------------------
        ImageCase("jpeg_rgb", jpeg, "image/jpeg", OK, "baseline JPEG", (320, 240), quads),
        ImageCase(
            "jpeg_large_1600x1200",
            big_jpeg,
            "image/jpeg",
            OK,
            "large JPEG, decoded through Image.draft (DCT downscale)",
            (1600, 1200),
            quads,
        ),
        ImageCase(
            "jpeg_progressive",
            encode(card, "JPEG", quality=90, progressive=True),
            "image/jpeg",
            OK,
            "progressive JPEG",
            (320, 240),
            quads,
        ),
        ImageCase(
            "jpeg_grayscale",
            encode(card.convert("L"), "JPEG", quality=90),
            "image/jpeg",
            OK,
            "8-bit grayscale JPEG becomes grey RGB",
            (320, 240),
            tuple((v, v, v) for v in (76, 150, 29, 226)),
        ),  # ITU-R 601 luma of the four colours
        ImageCase(
            "jpeg_cmyk",
            encode(card.convert("CMYK"), "JPEG", quality=95),
            "image/jpeg",
            OK,
            "CMYK JPEG (print workflows) converted to RGB",
            (320, 240),
            quads,
        ),
        ImageCase(
            "jpeg_trailing_garbage",
            jpeg + b"GARBAGE" * 100,
            "image/jpeg",
            OK,
            "bytes after the JPEG end marker are ignored",
            (320, 240),
            quads,
        ),
        ImageCase("png_rgb", png, "image/png", OK, "baseline PNG", (320, 240), quads, tolerance=2),
        ImageCase(
            "png_16bit_gray",
            _png_16bit(grey16),
            "image/png",
            OK,
            "16-bit grey PNG (mode I;16) scaled, not clipped to white",
            (64, 48),
            (mid_grey, mid_grey, WHITE, WHITE),
            tolerance=2,
        ),
        ImageCase(
            "png_16bit_rgb",
            _png_16bit(rgb16),
            "image/png",
            OK,
            "16-bit RGB PNG",
            (64, 48),
            (RED, RED, BLUE, BLUE),
            tolerance=2,
        ),
        ImageCase(
            "png_palette_transparency",
            _palette_with_transparency(),
            "image/png",
            OK,
            "palette PNG with a transparent index: composited on white",
            (64, 48),
            half_white_red,
            tolerance=2,
        ),
        ImageCase(
            "png_rgba_transparent",
            _half_transparent("RGBA"),
            "image/png",
            OK,
            "RGBA with fully transparent half: composited on white, not black",
            (64, 48),
            half_white_red,
            tolerance=2,
        ),
        ImageCase(
            "png_la",
            _half_transparent("LA"),
            "image/png",
            OK,
            "grey + alpha (LA) on white",
            (64, 48),
            (WHITE, WHITE, BLACK, BLACK),
            tolerance=2,
        ),
        ImageCase("png_1bit", encode(card.convert("1"), "PNG"), "image/png", OK, "1-bit bilevel PNG", (320, 240)),
        ImageCase(
            "png_tiny_1x1",
            encode(Image.new("RGB", (1, 1), RED), "PNG"),
            "image/png",
            OK,
            "a single pixel is still an image",
            (1, 1),
            (RED, RED, RED, RED),
            tolerance=2,
        ),
        ImageCase(
            "png_extreme_aspect",
            encode(Image.new("RGB", (4000, 2), GREEN), "PNG"),
            "image/png",
            OK,
            "4000x2 strip: squashed, not rejected",
            (4000, 2),
            (GREEN,) * 4,
            tolerance=2,
        ),
        ImageCase("gif_static", gif, "image/gif", OK, "palette GIF", (320, 240), quads),
        ImageCase(
            "gif_large_1800x1200",
            encode(color_card(1800, 1200).convert("P"), "GIF"),
            "image/gif",
            OK,
            "large palette image: converted before the integer downscale",
            (1800, 1200),
            quads,
        ),
        ImageCase(
            "png_rgba_large_1800x1200",
            _half_transparent("RGBA", (1800, 1200)),
            "image/png",
            OK,
            "large RGBA: composited on white before the integer downscale",
            (1800, 1200),
            half_white_red,
            tolerance=2,
        ),
        ImageCase(
            "png_16bit_gray_large",
            _png_16bit(np.repeat(np.repeat(grey16, 20, 0), 20, 1)),
            "image/png",
            OK,
            "1280x960 16-bit grey PNG (mode I;16) through the downscale path",
            (1280, 960),
            (mid_grey, mid_grey, WHITE, WHITE),
            tolerance=2,
        ),
        ImageCase(
            "gif_animated",
            _animated("GIF"),
            "image/gif",
            OK,
            "animated GIF: first frame (red) only",
            (64, 48),
            (RED,) * 4,
            tolerance=2,
        ),
        ImageCase("webp_lossy", encode(card, "WEBP", quality=90), "image/webp", OK, "lossy WebP", (320, 240), quads),
        ImageCase(
            "webp_lossless_alpha",
            encode(Image.open(io.BytesIO(_half_transparent("RGBA"))), "WEBP", lossless=True),
            "image/webp",
            OK,
            "lossless WebP with alpha on white",
            (64, 48),
            half_white_red,
            tolerance=2,
        ),
        ImageCase(
            "webp_animated",
            _animated("WEBP"),
            "image/webp",
            OK,
            "animated WebP: first frame only",
            (64, 48),
            (RED,) * 4,
            tolerance=2,
        ),
        ImageCase("bmp", encode(card, "BMP"), "image/bmp", OK, "Windows bitmap", (320, 240), quads, tolerance=2),
        # --- EXIF orientation (phones store sensor-up, display per tag) -----------------
        *(
            ImageCase(
                f"jpeg_exif_orientation_{o}",
                _exif_orientation_jpeg(o),
                "image/jpeg",
                OK,
                f"EXIF orientation {o}: shown upright",
                (320, 240),
                quads,
            )
            for o in range(2, 9)
        ),
        ImageCase(
            "jpeg_exif_orientation_invalid",
            _exif_orientation_jpeg(9),
            "image/jpeg",
            OK,
            "EXIF orientation 9 (invalid): kept as stored",
            (320, 240),
            quads,
        ),
        # --- broken data -------------------------------------------------------------------
        ImageCase(
            "jpeg_truncated_half",
            _truncated(big_jpeg, 0.5),
            "image/jpeg",
            "truncated_image",
            "JPEG cut in the middle of the scan",
        ),
        ImageCase("jpeg_truncated_headers", jpeg[:300], "image/jpeg", "truncated_image", "JPEG cut inside its headers"),
        ImageCase(
            "png_truncated",
            _truncated(encode(color_card(320, 240), "PNG"), 0.6),
            "image/png",
            "truncated_image",
            "PNG cut in the IDAT stream",
        ),
        ImageCase(
            "png_corrupt_idat",
            _with_damaged_idat(png),
            "image/png",
            "corrupt_image",
            "PNG with damaged bytes in its compressed stream",
        ),
        ImageCase("gif_truncated", _truncated(gif, 0.5), "image/gif", "truncated_image", "GIF cut in the middle"),
        ImageCase(
            "png_zero_size",
            png_bytes(0, 0, 8, 2),
            "image/png",
            "not_image",
            "PNG declaring 0x0 pixels (Pillow refuses the header)",
        ),
        # --- decompression bombs: tiny files, enormous declared sizes -------------------
        # Between our cap (50 M pixels) and Pillow's error (2 x 89 M): only our own check stops these.
        ImageCase(
            "png_over_cap_8000x7000",
            png_bytes(8_000, 7_000, 8, 2),
            "image/png",
            "too_many_pixels",
            "~100-byte PNG declaring 56 M pixels (over the 50 M cap, under Pillow's own limit)",
        ),
        ImageCase(
            "jpeg_over_cap_10000x6000",
            _jpeg_with_declared_size(10_000, 6_000),
            "image/jpeg",
            "too_many_pixels",
            "JPEG whose SOF declares 60 M pixels",
        ),
        # Far beyond: Pillow's DecompressionBombError (the second line) may fire first.
        ImageCase(
            "png_bomb_50000x50000",
            png_bytes(50_000, 50_000, 8, 2),
            "image/png",
            "too_many_pixels",
            "~100-byte PNG declaring 50,000 x 50,000 (7.5 GB as RGB)",
        ),
        ImageCase(
            "jpeg_bomb_60000x60000",
            _jpeg_with_declared_size(60_000, 60_000),
            "image/jpeg",
            "too_many_pixels",
            "JPEG whose SOF declares 60,000 x 60,000",
        ),
        ImageCase(
            "gif_bomb_65535x65535",
            _gif_with_declared_size(65_535, 65_535),
            "image/gif",
            "too_many_pixels",
            "GIF whose screen descriptor declares 65,535 x 65,535",
        ),
        ImageCase(
            "png_ztxt_bomb",
            _png_metadata_bomb(b"zTXt"),
            "image/png",
            "corrupt_image",
            "zTXt text chunk inflating to 16 MB (Pillow's MAX_TEXT_CHUNK refuses it)",
        ),
        ImageCase(
            "png_iccp_bomb",
            _png_metadata_bomb(b"iCCP"),
            "image/png",
            "corrupt_image",
            "ICC profile chunk inflating to 16 MB",
        ),
        # --- decode-time bombs: small files that cost minutes of CPU ------------------------
        ImageCase(
            "jpeg_progressive_scan_bomb",
            progressive_scan_bomb(2048, 5_000),
            "image/jpeg",
            "too_many_scans",
            "progressive JPEG with 5,000 extra scans (a full pass each): refused from the markers",
        ),
        # --- every decode mode at the pixel cap: bounded memory -------------------------------
        *(
            ImageCase(
                f"at_cap_{name}",
                data,
                "image/jpeg" if name.startswith("jpeg") else "image/png",
                OK,
                f"7000 x 7000 {name} (49 M pixels): decoded within the byte budget",
                (AT_CAP_SIDE, AT_CAP_SIDE),
                tags=frozenset({"at_cap"}),
            )
            for name, data in at_cap_images().items()
        ),
        # --- not images (or not formats we accept) --------------------------------------
        ImageCase("empty", b"", "image/jpeg", "not_image", "zero bytes"),
        ImageCase(
            "html",
            b"<!doctype html><html><body>404 Not Found</body></html>",
            "text/html",
            "not_image",
            "an HTML error page",
        ),
        ImageCase("json", b'{"error": "expired"}', "application/json", "not_image", "a JSON body"),
        ImageCase(
            "random_bytes",
            rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            "application/octet-stream",
            "not_image",
            "4 KiB of random bytes",
        ),
        ImageCase(
            "svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
            "image/svg+xml",
            "not_image",
            "SVG is XML, not pixels",
        ),
        ImageCase(
            "pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "application/pdf", "not_image", "a PDF document"
        ),
        ImageCase(
            "tiff",
            encode(card, "TIFF"),
            "image/tiff",
            "not_image",
            "TIFF is a valid image but not an accepted format (libtiff stays out of reach)",
        ),
        ImageCase("ico", encode(card, "ICO"), "image/x-icon", "not_image", "ICO is not an accepted format"),
        ImageCase(
            "jpeg_magic_only",
            b"\xff\xd8\xff\xe0" + b"\x00" * 16,
            "image/jpeg",
            "not_image",
            "JPEG magic bytes and nothing else (no frame header)",
        ),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return tuple(cases)


def case(name: str) -> ImageCase:
    """One case by name."""
    for c in corpus():
        if c.name == name:
            return c
    raise KeyError(name)
