#!/usr/bin/env bash
# The main job on embedded defaults: set up .venv, then `galleryrank demo`.
# Arguments go to `galleryrank demo` (e.g. --images DIR --hotels 6).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
. .venv/bin/activate
exec galleryrank demo "$@"
