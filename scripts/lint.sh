#!/usr/bin/env bash
# Static gates (also run by .ci/run): ruff lint, ruff format check, mypy.
# mypy is strict on ranking/ and models/ and checks consumer/ (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
. .venv/bin/activate

ruff check .
ruff format --check .

# mypy resolves modules by folder; the repository maps consumer/, models/ and
# ranking/ into the package galleryrank, so give it that tree as links.
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree/galleryrank"
cp galleryrank/*.py "$tree/galleryrank/"
for room in consumer models ranking; do ln -s "../../../$room" "$tree/galleryrank/$room"; done
(cd "$tree" && mypy -p galleryrank)
echo "lint: ruff and mypy clean"
