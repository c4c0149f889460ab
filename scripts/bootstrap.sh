#!/usr/bin/env bash
# Create .venv and install galleryrank with its test/embedded extras.
# Idempotent: a second run only checks. Used by `make demo` and `make test`.
#
# torch and torchvision are installed first, by pip, pinned to the pair that
# this project's machines keep on local disk (a CUDA build that also runs on
# the CPU); pyproject.toml declares the ranges this pair satisfies.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
EXTRAS=${EXTRAS:-test}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

stamp="$VENV/.galleryrank-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) $TORCH_SPEC $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086
python -m pip install --quiet $TORCH_SPEC
# setuptools' editable install always adds an "Editable installation ... folders with the same
# name as your package" notice (its meta-path finder, which keeps consumer/, models/, ranking/
# from becoming top-level imports: nothing for us to change); only that message is silenced.
PYTHONWARNINGS="ignore:Editable installation" python -m pip install --quiet -e ".[$EXTRAS]"
echo "$want" > "$stamp"
