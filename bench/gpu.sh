#!/usr/bin/env bash
# GPU benchmark for a CUDA machine (issue 4, item 7): correctness against the
# CPU, model-only img/s at batch 64 and 256 in bf16, end-to-end img/s from JPEG
# bytes with batched GPU decode. Prints a table, writes bench/results/gpu.json.
# Budget: < 10 minutes (each measurement ~8 s; a hard timeout stops it at 9.5).
#
#   bench/gpu.sh               # on the GPU machine, from any directory
#   bench/gpu.sh --cpu-smoke   # tiny sizes on the CPU fallback (checks the script without a GPU)
#   bench/gpu.sh --compile     # also time torch.compile (adds minutes of compilation)
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) args+=(--smoke) ;;
    *) args+=("$arg") ;;
  esac
done

# A copy of the repository may arrive with the venv carried; create one only when missing.
if [[ ! -x .venv/bin/python ]]; then
  echo "creating .venv (pip install -e .[test])" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet -e '.[test]'
fi

.venv/bin/python - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
EOF
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

exec timeout 570 .venv/bin/python -m bench.gpu_bench ${args[@]+"${args[@]}"}
