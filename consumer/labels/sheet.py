"""A contact sheet: thumbnails in a grid with a caption under each (PIL only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

TILE = 160
CAPTION_LINES = 3
LINE_PX = 12


def contact_sheet(items: Sequence[tuple[Path, Sequence[str]]], out: Path, columns: int = 6) -> Path | None:
    """Write a PNG of ``(image path, caption lines)`` tiles to ``out``; None (and no file) when empty."""
    if not items:
        return None
    rows = (len(items) + columns - 1) // columns
    cell_h = TILE + CAPTION_LINES * LINE_PX + 6
    sheet = Image.new("RGB", (columns * (TILE + 4) + 4, rows * (cell_h + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (path, caption) in enumerate(items):
        x, y = 4 + (i % columns) * (TILE + 4), 4 + (i // columns) * (cell_h + 4)
        try:
            with Image.open(path) as img:
                thumb = ImageOps.exif_transpose(img).convert("RGB")
                thumb.thumbnail((TILE, TILE))
        except OSError:
            thumb = Image.new("RGB", (TILE, TILE), "grey")
        sheet.paste(thumb, (x + (TILE - thumb.width) // 2, y + (TILE - thumb.height) // 2))
        for k, line in enumerate(list(caption)[:CAPTION_LINES]):
            draw.text((x, y + TILE + 2 + k * LINE_PX), line[:30], fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
