"""`galleryrank sheet`'s renderer: one tile per position with its caption lines."""

from PIL import Image

from galleryrank.consumer.cli.sheet import CAPTION_H, TILE_H, TILE_W, render_sheet, tiles_of


def test_a_sheet_has_a_tile_per_photo_in_rows_of_columns(tmp_path):
    photos = []
    for k, colour in enumerate(["red", "green", "blue", "white", "black"]):
        path = tmp_path / f"p{k}.jpg"
        Image.new("RGB", (640, 480), colour).save(path)
        photos.append((path, f"#{k + 1}  5.00", "bedroom 0.91", "first bedroom"))
    out = render_sheet("gallery", photos, tmp_path / "sheet.png", columns=2)
    with Image.open(out) as sheet:
        assert sheet.size == (2 * TILE_W, 24 + 3 * (TILE_H + CAPTION_H))
        # the third tile (row 1, column 0) shows the blue photo in its middle
        r, g, b = sheet.getpixel((TILE_W // 2, 24 + (TILE_H + CAPTION_H) + TILE_H // 2))
        assert r < 10 and g < 10 and b > 245  # JPEG round trip


def test_captions_come_from_the_gallery_document_and_a_missing_photo_gets_a_grey_tile(tmp_path):
    doc = {
        "images": [
            {
                "image_id": "a",
                "area": "facade",
                "area_confidence": 0.93,
                "aesthetic": 6.5,
                "reason": "hero: best facade (hero area)",
            },
            {"image_id": "b", "area": "kitchen", "area_confidence": 0.41, "aesthetic": 6.1, "reason": "next best"},
        ]
    }
    tiles = tiles_of(doc, [Image.new("RGB", (64, 48), "red"), None])
    assert [t[1:] for t in tiles] == [
        ("#1  6.50", "facade 0.93", "hero: best facade (hero area)"),
        ("#2  6.10", "kitchen 0.41", "next best"),
    ]
    out = render_sheet("h-1", tiles, tmp_path / "s.png")
    with Image.open(out) as sheet:
        assert sheet.getpixel((TILE_W + 10, 24 + 10)) == (200, 200, 200)
