"""galleryrank.consumer.images.decode over the hostile/odd image corpus (tests/hostile_images.py) and real photos."""

from __future__ import annotations

import io
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

# The repository root must be importable for ``tests.hostile_images`` when pytest runs
# as a bare command (``python -m pytest`` adds it already); harmless otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from galleryrank.consumer.images.decode import (
    ALLOWED_FORMATS,
    DecodedImage,
    DecodeError,
    decode_image,
    load_oriented_rgb,
)
from galleryrank.models.preprocess import preprocess_image
from tests.hostile_images import OK, ImageCase, case, color_card, corpus, encode

CASES = corpus()


def quadrant_colours(pixels: np.ndarray) -> list[tuple[int, int, int]]:
    """Colour at the centre of each quadrant (TL, TR, BL, BR) of a (3, S, S) array."""
    s = pixels.shape[1]
    a, b = s // 4, 3 * s // 4
    return [tuple(int(v) for v in pixels[:, y, x]) for y, x in ((a, a), (a, b), (b, a), (b, b))]


def outcome(data: bytes, **kwargs: int) -> DecodedImage | str:
    try:
        return decode_image(data, **kwargs)
    except DecodeError as exc:
        return exc.reason


def test_corpus_is_big_and_varied() -> None:
    assert len(CASES) >= 40
    reasons = {c.expect for c in CASES}
    assert {OK, "not_image", "truncated_image", "corrupt_image", "too_many_pixels"} <= reasons


@pytest.mark.parametrize("image_case", CASES, ids=[c.name for c in CASES])
def test_hostile_corpus_case(image_case: ImageCase) -> None:
    result = outcome(image_case.data)
    if image_case.expect != OK:
        assert result == image_case.expect, f"{image_case.note}: got {result!r}"
        return
    assert isinstance(result, DecodedImage), f"{image_case.note}: got {result!r}"
    assert result.pixels.shape == (3, 224, 224)
    assert result.pixels.dtype == np.uint8
    assert 0 <= result.phash < 2**64
    if image_case.size is not None:
        assert (result.width, result.height) == image_case.size
    if image_case.quadrants is not None:
        got = quadrant_colours(result.pixels)
        for where, want, have in zip(
            ("top-left", "top-right", "bottom-left", "bottom-right"), image_case.quadrants, got
        ):
            assert max(abs(w - h) for w, h in zip(want, have)) <= image_case.tolerance, (
                f"{image_case.note}: {where} is {have}, expected ~{want}"
            )


def test_decode_error_carries_reason_and_detail() -> None:
    with pytest.raises(DecodeError) as info:
        decode_image(case("png_bomb_50000x50000").data)
    assert info.value.reason == "too_many_pixels"
    assert info.value.detail


def test_pixel_cap_is_checked_on_the_declared_size() -> None:
    data = encode(color_card(320, 240), "PNG")
    assert outcome(data, max_pixels=320 * 240) != "too_many_pixels"
    assert outcome(data, max_pixels=320 * 240 - 1) == "too_many_pixels"


def test_webp_pixels_count_four_times_against_the_cap() -> None:
    # Pillow's WebP decoder needs ~16 bytes per pixel, the PNG decoder ~4.
    card = color_card(1000, 1000)
    assert isinstance(outcome(encode(card, "PNG"), max_pixels=3_000_000), DecodedImage)
    assert outcome(encode(card, "WEBP", lossless=True), max_pixels=3_000_000) == "too_many_pixels"
    assert isinstance(outcome(encode(card, "WEBP", lossless=True), max_pixels=4_000_000), DecodedImage)


def test_output_size_follows_the_size_argument() -> None:
    decoded = decode_image(case("jpeg_rgb").data, size=64)
    assert decoded.pixels.shape == (3, 64, 64)
    assert quadrant_colours(decoded.pixels)[0][0] > 200  # still the red corner


def test_exif_rotation_swaps_width_and_height_of_a_portrait_photo() -> None:
    upright = color_card(240, 320)  # portrait
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 320x240 on the sensor
    decoded = decode_image(encode(stored, "JPEG", quality=90, exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (240, 320)
    assert quadrant_colours(decoded.pixels)[0][0] > 200 and quadrant_colours(decoded.pixels)[3][2] < 80


def test_draft_decode_matches_a_full_decode() -> None:
    """Image.draft (DCT-domain downscale) must not change what the model sees beyond resampling noise."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(skimage_data.astronaut()).resize((1600, 1200))
    data = encode(photo, "JPEG", quality=90)
    full = preprocess_image(Image.open(io.BytesIO(data)).convert("RGB"), 224).astype(np.int16)
    drafted_rgb, width, height = load_oriented_rgb(data, 224)
    assert (width, height) == (1600, 1200)
    assert 448 <= min(drafted_rgb.size) < 1200, "draft should have downscaled the JPEG"
    drafted = decode_image(data).pixels.astype(np.int16)
    assert np.abs(full - drafted).mean() < 3.0


def test_phash_tells_near_duplicates_from_different_photos() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    astronaut = Image.fromarray(skimage_data.astronaut())
    coffee = Image.fromarray(skimage_data.coffee())
    a_high = decode_image(encode(astronaut, "JPEG", quality=95)).phash
    a_low = decode_image(encode(astronaut.resize((256, 256)), "JPEG", quality=40)).phash
    c = decode_image(encode(coffee, "JPEG", quality=95)).phash

    def hamming(x: int, y: int) -> int:
        return bin(x ^ y).count("1")

    assert hamming(a_high, a_low) <= 6
    assert hamming(a_high, c) >= 20


def test_truncated_images_stay_errors_even_if_someone_enables_load_truncated() -> None:
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        assert outcome(case("jpeg_truncated_half").data) == "truncated_image"
        assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_only_web_photo_formats_are_opened() -> None:
    assert {"JPEG", "PNG", "GIF", "WEBP"} <= set(ALLOWED_FORMATS)
    assert not {"EPS", "TIFF", "PSD", "PDF", "ICO"} & set(ALLOWED_FORMATS)


def test_decoding_in_threads_gives_the_same_results() -> None:
    """The pipeline decodes in a thread pool: results must not depend on concurrency."""
    serial = [outcome(c.data) for c in CASES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda c: outcome(c.data), CASES))
    for c, s, t in zip(CASES, serial, threaded):
        if isinstance(s, DecodedImage):
            assert isinstance(t, DecodedImage) and np.array_equal(s.pixels, t.pixels) and s.phash == t.phash, c.name
        else:
            assert s == t, c.name
