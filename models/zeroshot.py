"""Zero-shot area prior: ImageNet classifier probabilities summed per hotel area.

ImageNet-1k has no "hotel bedroom" class, but it has the objects that make one:
P(area) = sum of P(ImageNet class) over the classes this table assigns to the area,
and ``other`` takes the rest. This is a prior, not a trained tagger: it knows
objects, not rooms (a lobby with a piano reads as foyer, a lobby without one as
other). ImageNet-1k has no swimming-pool, lobby or reception class, so those
areas rest on weak proxies (swimwear and water scenes; pianos, doormats,
turnstiles; shop counters). Train a tagger on the team's labelled photos
(``galleryrank train tagger``) to replace it; docs/models.md has its measured figures.

Class names are torchvision's ImageNet-1k category names (the index order of every
ImageNet classifier here), checked against that list when the matrix is built.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

DEFAULT_AREAS = [
    "bedroom",
    "bathroom",
    "foyer",
    "reception",
    "restaurant",
    "swimming_pool",
    "kitchen",
    "facade",
    "other",
]
OTHER = "other"

# area -> ImageNet-1k class names (torchvision spelling). Everything unlisted -> "other".
# ORIGINAL_TABLE is the 0.1 table (kept to report old vs new); IMAGENET_TO_AREA adds below.
ORIGINAL_TABLE: dict[str, list[str]] = {
    "bedroom": [
        "four-poster",
        "quilt",
        "studio couch",
        "pillow",
        "wardrobe",
        "window shade",
        "lampshade",
        "table lamp",
        "chiffonier",
        "cradle",
        "crib",
        "home theater",
        "entertainment center",
    ],
    "bathroom": [
        "bathtub",
        "tub",
        "washbasin",
        "shower curtain",
        "toilet seat",
        "medicine chest",
        "soap dispenser",
        "bath towel",
        "paper towel",
        "toilet tissue",
        "plunger",
        "hand blower",
    ],
    "foyer": [
        "sliding door",
        "doormat",
        "turnstile",
        "prayer rug",
        "grand piano",
        "upright",
        "vase",
        "library",
        "throne",
        "altar",
    ],
    "reception": [
        "desk",
        "monitor",
        "cash machine",
        "barbershop",
        "bookshop",
        "confectionery",
        "shoe shop",
        "tobacco shop",
        "toyshop",
        "grocery store",
    ],
    "restaurant": [
        "restaurant",
        "dining table",
        "plate",
        "menu",
        "espresso",
        "cup",
        "red wine",
        "eggnog",
        "consomme",
        "hot pot",
        "trifle",
        "ice cream",
        "pizza",
        "carbonara",
        "beer glass",
        "wine bottle",
        "goblet",
        "cocktail shaker",
        "china cabinet",
        "folding chair",
    ],
    "swimming_pool": [
        "bathing cap",
        "swimming trunks",
        "maillot",
        "bikini",
        "snorkel",
        "lakeside",
        "seashore",
        "sandbar",
        "breakwater",
    ],
    "kitchen": [
        "stove",
        "refrigerator",
        "dishwasher",
        "microwave",
        "Dutch oven",
        "toaster",
        "espresso maker",
        "coffeepot",
        "frying pan",
        "wok",
        "caldron",
        "Crock Pot",
        "rotisserie",
        "waffle iron",
    ],
    "facade": [
        "palace",
        "boathouse",
        "church",
        "mosque",
        "monastery",
        "castle",
        "dome",
        "triumphal arch",
        "cinema",
        "bell cote",
        "planetarium",
        "prison",
        "thatch",
        "tile roof",
        "barn",
        "greenhouse",
        "patio",
        "fountain",
        "mobile home",
        "yurt",
        "stupa",
        "obelisk",
        "dock",
        "pier",
    ],
}


# Added after reading which ImageNet classes carry the mass of misread houses-dev photos
# (scripts/calibrate_area_prior.py): facades lost most to fences, mailboxes, poles, parked
# cars and sky/garden objects; kitchens to plate racks and washers; "lakeside" read
# lawns-with-water as pool. Top-1 with the raw prior went 0.818 -> 0.868 (docs/models.md).
ADDED: dict[str, list[str]] = {
    "facade": [
        "picket fence",
        "worm fence",
        "chainlink fence",
        "stone wall",
        "mailbox",
        "flagpole",
        "sundial",
        "solar dish",
        "beacon",
        "cliff dwelling",
        "water tower",
        "lakeside",
        "moving van",
        "pole",
        "street sign",
        "park bench",
        "lawn mower",
        "garbage truck",
        "pickup",
        "limousine",
        "minivan",
        "convertible",
        "alp",
    ],
    "kitchen": ["plate rack", "washer", "photocopier"],
}
MOVED_FROM = {"lakeside": "swimming_pool"}
IMAGENET_TO_AREA = copy.deepcopy(ORIGINAL_TABLE)
for _area, _names in ADDED.items():
    for _name in _names:
        if _name in MOVED_FROM:
            IMAGENET_TO_AREA[MOVED_FROM[_name]].remove(_name)
        IMAGENET_TO_AREA[_area].append(_name)

# Decision rule fitted on houses-dev by scripts/calibrate_area_prior.py --write: a temperature
# and a log-prior per area (a handful of numbers, no network weights).
PRIOR_FILE = Path(__file__).resolve().parent / "heads" / "area_prior.json"


def calibrated_prior(areas: list[str]) -> tuple[np.ndarray, float]:
    """(log-prior bias per area, temperature); (zeros, 1) = the raw prior when no calibration exists."""
    if not PRIOR_FILE.exists():
        return np.zeros(len(areas), np.float32), 1.0
    cal = json.loads(PRIOR_FILE.read_text())
    return np.array([cal["area_bias"].get(a, 0.0) for a in areas], np.float32), float(cal["temperature"])


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in classifier index order (shipped with torchvision)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def area_matrix(areas: list[str] = DEFAULT_AREAS, table: dict[str, list[str]] = IMAGENET_TO_AREA) -> np.ndarray:
    """(1000, len(areas)) 0/1 matrix; each ImageNet class maps to exactly one area.

    Areas of ``areas`` missing from the table get no classes (probability 0); table
    areas missing from ``areas`` fall to ``other``, which must be in ``areas``.
    """
    if OTHER not in areas:
        raise ValueError(f"the zero-shot prior needs an {OTHER!r} area; got {areas}")
    cats = imagenet_categories()
    index = {name: i for i, name in enumerate(cats)}
    col = {a: j for j, a in enumerate(areas)}
    m = np.zeros((len(cats), len(areas)), dtype=np.float32)
    assigned: dict[str, str] = {}
    for area, names in table.items():
        for name in names:
            if name not in index:
                raise KeyError(f"zero-shot table: {name!r} is not an ImageNet-1k class name")
            if name in assigned:
                raise ValueError(f"zero-shot table: {name!r} listed under {assigned[name]} and {area}")
            assigned[name] = area
            m[index[name], col.get(area, col[OTHER])] = 1.0
    unassigned = m.sum(axis=1) == 0
    m[unassigned, col[OTHER]] = 1.0
    return m
