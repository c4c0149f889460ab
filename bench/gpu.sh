#!/usr/bin/env bash
# GPU benchmark for a CUDA machine, unattended, < 8 minutes (issues 4, 17, 26). Three parts, each
# writing JSON under bench/results/ (and under $OUT when that is set), then ONE table
# (bench/gpu_report.py):
#
#  1. bench/gpu_bench.py (~1.5 min): correctness (fp16 on the GPU vs fp32 on the CPU, same pixels;
#     the hardware decoder's and nvJPEG's pixels vs the CPU decode, same files); decode img/s per
#     image size (1600x1200, 2880x1920): hardware (nvImageCodec) / torchvision nvJPEG / Pillow on
#     every core, with host CPU-ms per image; model-only img/s at batch 64 and 256; end to end.
#  2. bench/model_server_bench.py (~4 min): events/s end to end (Tansu, Redis, JPEGs of both sizes
#     over loopback HTTP) for N = 1, 4, 8 `galleryrank consume` processes scoring in-process on the
#     GPU, today's decode path (nvjpeg) and the hardware one, in the same run.
#  3. bench/stage_profile.py (~1.5 min): host CPU-ms per event by stage (Kafka, download, header
#     checks, decode, pHash, model, state, Redis, commit, ...) of one consumer, both paths.
#
#   bench/gpu.sh               # on the GPU machine, from any directory
#   bench/gpu.sh --cpu-smoke   # tiny sizes on the CPU (checks the script without a GPU; a test runs it)
#   bench/gpu.sh --compile     # also time torch.compile (adds minutes of compilation)
#
# Python: the project's .venv when there is one; else, when a folder .whl/ holds wheels (a
# machine without network, e.g. a lent GPU machine whose python3 already has torch), they are
# installed with --no-index into /tmp/galleryrank-site and the checkout runs from PYTHONPATH;
# else a .venv is made (needs the network). bench/gpu_wheels.sh fills .whl/ (59 MB, listed
# with sizes at the start of the run). Nothing is downloaded at run time.
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
  export PATH="$site/bin:$PATH"  # py-spy
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
# Each part reads its own results; stale ones from an earlier run must not show in the table.
rm -f "$results"/gpu.json "$results"/gpu_cpu_smoke.json "$results"/model_server_*.json "$results"/stage_profile_*.json

echo "carried: checkout $(du -sh --exclude=.git --exclude=.venv --exclude=.whl . 2>/dev/null | cut -f1)"
if compgen -G ".whl/*.whl" >/dev/null; then
  echo "carried: .whl/ $(du -ch .whl/*.whl | tail -1 | cut -f1): $(cd .whl && ls ./*.whl | sed 's|^\./||; s/-py3.*\|-cp3.*//' | tr '\n' ' ')"
fi
"$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
try:
    import nvidia.nvimgcodec as n
    print(f"nvImageCodec {n.__version__} (CUDA {n.__cuda_version__})")
except ImportError as exc:
    print(f"nvImageCodec not installed ({exc}): the hardware rows will say so")
EOF
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
nproc || true

status=0
# 1. correctness + decode per size + model-only + end to end, in one process
seconds=()
[[ $smoke == 0 ]] && seconds=(--seconds 2)
timeout "$([[ $smoke == 1 ]] && echo 400 || echo 120)" "$PY" -m bench.gpu_bench \
  ${args[@]+"${args[@]}"} ${seconds[@]+"${seconds[@]}"} || status=$?

# 2. N consumer processes, today's decode path and the hardware one
if [[ $smoke == 1 ]]; then
  msb=(--device cpu --modes in-process:cpu --processes 1 --events 24 --photos 2 --sizes 320x240
       --image-servers 1 --settle 1)
else
  msb=(--device cuda --modes in-process:nvjpeg,in-process:hardware --processes 1,4,8 --events 6000
       --photos 32 --sizes 1600x1200,2880x1920 --batch-size 128 --download-concurrency 128
       --start-timeout 120 --run-timeout 40 --settle 2)
fi
timeout 250 "$PY" -m bench.model_server_bench "${msb[@]}" || status=$?

# 3. host CPU per event by stage, one consumer, both paths
if [[ $smoke == 1 ]]; then
  prof=(--device cpu --paths cpu,nvimgcodec-cpu --events 24 --photos 2 --sizes 320x240 --rate 100)
else
  prof=(--device cuda --paths nvjpeg,hardware --events 6000 --photos 32 --sizes 1600x1200,2880x1920
        --batch-size 128 --download-concurrency 128 --start-timeout 90 --run-timeout 40)
fi
timeout "$([[ $smoke == 1 ]] && echo 300 || echo 110)" "$PY" -m bench.stage_profile "${prof[@]}" || status=$?

# the one table
"$PY" -m bench.gpu_report $([[ $smoke == 1 ]] && echo --smoke) || status=$?
if [[ -n "$out" ]]; then
  cp "$results"/gpu*.json "$results"/model_server_*.json "$results"/stage_profile_*.json "$out"/ 2>/dev/null || true
fi
exit "$status"
