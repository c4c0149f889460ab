#!/usr/bin/env bash
# .venv-triton: the model server's own environment (galleryrank model-server, tests/integration/test_triton.py).
# Idempotent: a second run only checks.
#
# Made from Debian's /usr/bin/python3.11 on purpose: PyTriton's Python-backend stub
# (inside the nvidia-pytriton wheel, with a real tritonserver binary) links the system
# libpython3.11.so; from a venv of another 3.11 build (e.g. a python3.11 on PATH built
# elsewhere) the model fails to load with
#   '_thread.RLock' object has no attribute '_recursion_count'.
# Small on purpose: nvidia-pytriton + numpy + onnxruntime (ONNX Runtime on the CPU); no torch,
# no galleryrank (models/model_server.py imports neither for the onnxruntime backend).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_PYTHON=${TRITON_BASE_PYTHON:-/usr/bin/python3.11}
VENV=${TRITON_VENV:-.venv-triton}
SPEC=${TRITON_SPEC:-"nvidia-pytriton==0.7.0 numpy>=1.26,<3 onnxruntime>=1.19,<2"}

if [ ! -x "$BASE_PYTHON" ] || ! "$BASE_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y --no-install-recommends python3.11 python3.11-venv libpython3.11 >/dev/null 2>&1 \
      || (apt-get update >/dev/null 2>&1 \
          && apt-get install -y --no-install-recommends python3.11 python3.11-venv libpython3.11 >/dev/null 2>&1))
  fi
fi
if [ ! -x "$BASE_PYTHON" ]; then
  echo "model_server_venv.sh: $BASE_PYTHON not found (Debian: apt-get install python3.11-venv libpython3.11)" >&2
  exit 1
fi

stamp="$VENV/.galleryrank-triton-installed"
want="$("$BASE_PYTHON" -c 'import sys; print(sys.version.split()[0])') $SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
"$BASE_PYTHON" -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet $SPEC
"$VENV/bin/python" -c 'import pytriton.triton, onnxruntime, numpy'
echo "$want" > "$stamp"
