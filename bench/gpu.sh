#!/usr/bin/env bash
# GPU benchmark for a CUDA machine, unattended, < 8 minutes (issues 4 and 17). Two parts, each
# printing a table and writing JSON under bench/results/ (and under $OUT when that is set):
#
#  1. bench/gpu_bench.py: correctness against the CPU (bf16 on the GPU vs fp32 on the CPU on the
#     same pixels; nvJPEG decode path vs CPU decode), model-only img/s at batch 64 and 256,
#     end-to-end img/s from JPEG bytes with batched GPU decode.
#  2. bench/model_server_bench.py: events/s end to end (Tansu, Redis, 1600x1200 JPEGs served over
#     loopback HTTP) for N = 1, 2, 4, 8, 16 `galleryrank consume` processes scoring in-process on
#     the GPU, and against one model server (galleryrank model-server) where nvidia-pytriton is
#     installed; otherwise those rows say "skipped: <reason>".
#
#   bench/gpu.sh               # on the GPU machine, from any directory
#   bench/gpu.sh --cpu-smoke   # tiny sizes on the CPU (checks the script without a GPU)
#   bench/gpu.sh --compile     # also time torch.compile (adds minutes of compilation)
#
# Python: the project's .venv when there is one; else, when a folder .whl/ holds wheels (a
# machine without network, e.g. a lent GPU machine whose python3 already has torch), they are
# installed with --no-index into /tmp/galleryrank-site and the checkout runs from PYTHONPATH;
# else a .venv is made (needs the network).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
args=()
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) smoke=1; args+=(--smoke) ;;
    *) args+=("$arg") ;;
  esac
done

if [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
elif compgen -G ".whl/*.whl" >/dev/null; then
  PY=${PYTHON:-python3}
  site=/tmp/galleryrank-site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "creating .venv (pip install -e .[test])" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet -e '.[test]'
  PY=.venv/bin/python
fi
export PYTHONUNBUFFERED=1
out=${OUT:-}
results=bench/results
mkdir -p "$results"

"$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
EOF
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
nproc || true

status=0
# 1. correctness + model-only + end to end in one process (~1.5 min on an H200)
seconds=()
[[ $smoke == 0 ]] && seconds=(--seconds 3)
timeout 200 "$PY" -m bench.gpu_bench ${args[@]+"${args[@]}"} ${seconds[@]+"${seconds[@]}"} || status=$?

# 2. N consumer processes, in-process GPU scoring vs one model server (~4 min on an H200)
skip=()
if ! "$PY" -c 'import pytriton' 2>/dev/null && [[ ! -x .venv-triton/bin/python ]]; then
  skip=(--triton-skip-reason "nvidia-pytriton is not installed for this Python (its wheel is 55 MB: it does not fit the 64 MiB a lent GPU machine may be sent next to Tansu, Redis and the model weights)")
fi
if [[ $smoke == 1 ]]; then
  msb=(--device cpu --processes 1 --events 48 --photos 4 --image-servers 1 --settle 2)
else
  msb=(--device cuda --processes 1,2,4,8,16 --events 12000 --photos 32 --batch-size 128
       --download-concurrency 128 --start-timeout 150 --run-timeout 60)
fi
timeout 330 "$PY" -m bench.model_server_bench "${msb[@]}" ${skip[@]+"${skip[@]}"} || status=$?

if [[ -n "$out" ]]; then
  cp "$results"/gpu*.json "$results"/model_server_*.json "$out"/ 2>/dev/null || true
fi
exit "$status"
