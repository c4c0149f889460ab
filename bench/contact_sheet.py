"""Contact sheets of houses-dev galleries, to judge an order as an editor does: position,
photo, area and confidence, score, reason; today's order and the new one side by side.

    nice -n 10 python -m bench.contact_sheet --galleries 0 1 2 --out /tmp/sheets

A gallery is ten houses merged into one hotel (~40 photos, bench/houses_galleries.py).
"before" = the pre-issue-22 default (xquad 0.9, no hero rule, colour in the score);
"after" = today's code default (seats, hero rules, run limit, confidence floor,
colour-neutral score). houses-dev photos (Ahmed & Moustafa, IJCCI 2016) and sheets
made of them are never committed: write them outside the repository (/tmp).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--galleries", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("/tmp/galleryrank-sheets"))
    ap.add_argument("--cache-dir", default="~/.cache/galleryrank")
    ap.add_argument(
        "--before-checkpoint",
        help="checkpoint scored for 'before' (e.g. the pre-issue-22 default.pt from git); default: today's, colour kept",
    )
    args = ap.parse_args()
    if REPO in args.out.resolve().parents or args.out.resolve() == REPO:
        sys.exit("write sheets outside the repository (houses-dev photos are never committed)")
    from bench.houses import houses_dev_dir

    root = houses_dev_dir()
    if root is None:
        print("houses-dev not found (set GALLERYRANK_HOUSES_DEV); skipped")
        return
    import torch

    from bench.houses_galleries import candidates, gallery_houses, gallery_paths, score_photos
    from bench.ranking_bench import TODAY
    from galleryrank.consumer.cli.sheet import render_sheet
    from galleryrank.models.defaults import load_default_model, load_model
    from galleryrank.ranking import RankingConfig, rank_gallery

    torch.set_num_threads(1)
    model, version = load_default_model()
    before, before_version = load_model(args.before_checkpoint) if args.before_checkpoint else (model, version)
    groups = gallery_houses(root, max(args.galleries) + 1, seed=0)
    for g in args.galleries:
        paths = gallery_paths(root, groups[g])
        for label, config, scorer in (("before", TODAY, before), ("after", RankingConfig(), model)):
            keep = scorer.quality_features.keep.clone()
            if scorer is before:
                scorer.quality_features.keep.fill_(1.0)  # colour in the score, as before issue 22
            photos = score_photos(scorer, paths, args.cache_dir)
            scorer.quality_features.keep.copy_(keep)
            cands = candidates(photos)
            ranked = rank_gallery(cands, photos.areas, config)
            tiles = []
            for pos, (i, reason) in enumerate(zip(ranked.order, ranked.reasons)):
                top = int(np.argmax(photos.area_probs[i]))
                tiles.append(
                    (
                        photos.paths[i],
                        f"#{pos + 1}  {photos.aesthetic[i]:.2f}  [{photos.true_area[i]}]",
                        f"{photos.areas[top]} {photos.area_probs[i, top]:.2f}",
                        reason,
                    )
                )
            shown_version = before_version if scorer is before else version
            title = f"gallery {g} ({label}): houses {groups[g]}  strategy={config.strategy}  model {shown_version}"
            print(render_sheet(title, tiles, args.out / f"gallery{g}-{label}.png"))


if __name__ == "__main__":
    main()
