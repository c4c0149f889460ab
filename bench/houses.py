"""houses-dev helpers for benchmarks and calibration scripts (real listing photos, never shipped).

houses-dev: the Houses Dataset of H. Ahmed E. and M. Moustafa, "House Price Estimation
from Visual and Textual Features", IJCCI 2016, pp. 62-68, DOI 10.5220/0006040700620068.
1,740 photos, 435 houses x (bathroom, bedroom, facade, kitchen). Looked for at
``$GALLERYRANK_HOUSES_DEV``, else ``../shared/data/houses-dev`` next to the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AREAS = ("bathroom", "bedroom", "facade", "kitchen")
JUDGEMENTS = REPO / "bench" / "houses_judgements.json"


def houses_dev_dir() -> Path | None:
    env = os.environ.get("GALLERYRANK_HOUSES_DEV")
    root = Path(env) if env else REPO.parent / "shared" / "data" / "houses-dev"
    return root if all((root / a).is_dir() for a in AREAS) else None


def houses_files(root: Path) -> list[Path]:
    return sorted(p for a in AREAS for p in (root / a).glob("*.jpg"))


def house_number(path: Path) -> int:
    return int(path.stem.removeprefix("house"))
