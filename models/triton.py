"""A Triton Inference Server model repository for the scoring graph (production serving on a GPU).

    galleryrank export --triton DIR        # DIR/galleryrank/config.pbtxt + DIR/galleryrank/1/model.onnx

The repository holds the ONNX scoring graph of ``models/export.py`` (uint8 NCHW images in,
``aesthetic_dist``, ``area_probs``, ``embedding`` out; normalisation inside the graph, so
the client sends 1 byte per pixel channel) and a ``config.pbtxt`` for Triton's ONNX Runtime
backend: dynamic batching with preferred sizes and a short queue delay, one GPU instance
group, and two parameters that the consumer's ``triton`` backend reads back at start
(``galleryrank_model_version``, ``galleryrank_areas``) so that state written to Redis names
the model the server really runs. Triton's own config parser is strict (an unknown field
fails the load); CI parses the file with Triton's ``ModelConfig`` protobuf schema
(tritonclient) and checks it against the graph (tests/unit/test_triton_repository.py).

Run it with the official image (the version is pinned in compose.yaml and deploy/k8s/triton):

    docker run --gpus 1 -p 8001:8001 -v $PWD/DIR:/models nvcr.io/nvidia/tritonserver:<tag>-py3 \
        tritonserver --model-repository=/models
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .export import INPUT_NAME, OPSET, OUTPUT_NAMES

MODEL_NAME = "galleryrank"
PARAM_MODEL_VERSION = "galleryrank_model_version"
PARAM_AREAS = "galleryrank_areas"


@dataclass(frozen=True)
class TritonConfig:
    """What config.pbtxt says beyond the graph's shapes (defaults sized for one H200)."""

    max_batch_size: int = 256
    # Triton forms a batch of one of these sizes when it can, waiting at most the queue delay.
    preferred_batch_sizes: tuple[int, ...] = (64, 128, 256)
    max_queue_delay_us: int = 2000
    instance_kind: str = "KIND_GPU"  # KIND_CPU for a CPU-only Triton
    instance_count: int = 1
    # ONNX Runtime inside Triton may hand the graph to TensorRT in fp16 (much faster on a GPU;
    # the first load builds the engine for minutes). Off by default: scores then equal the
    # ONNX Runtime CPU backend's within fp32 rounding.
    tensorrt_fp16: bool = False
    extra_parameters: dict[str, str] = field(default_factory=dict)


def _q(s: str) -> str:
    return json.dumps(s)  # a protobuf text-format string literal (double quotes, escapes)


def render_config(
    *,
    input_size: int,
    n_areas: int,
    embedding_dim: int,
    model_version: str,
    areas: list[str],
    cfg: TritonConfig = TritonConfig(),
    name: str = MODEL_NAME,
) -> str:
    """config.pbtxt text for the scoring graph."""
    if cfg.max_batch_size < max(cfg.preferred_batch_sizes, default=1):
        raise ValueError("preferred batch sizes must not exceed max_batch_size")
    dims = {OUTPUT_NAMES[0]: 10, OUTPUT_NAMES[1]: n_areas, OUTPUT_NAMES[2]: embedding_dim}
    outputs = ",\n".join(f"  {{ name: {_q(n)} data_type: TYPE_FP32 dims: [ {d} ] }}" for n, d in dims.items())
    params = {PARAM_MODEL_VERSION: model_version, PARAM_AREAS: ",".join(areas), **cfg.extra_parameters}
    lines = [
        f"name: {_q(name)}",
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {cfg.max_batch_size}",
        "input [",
        f"  {{ name: {_q(INPUT_NAME)} data_type: TYPE_UINT8 format: FORMAT_NCHW dims: [ 3, {input_size}, {input_size} ] }}",
        "]",
        "output [",
        outputs,
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(str(b) for b in cfg.preferred_batch_sizes)} ]",
        f"  max_queue_delay_microseconds: {cfg.max_queue_delay_us}",
        "}",
        "instance_group [",
        f"  {{ count: {cfg.instance_count} kind: {cfg.instance_kind} }}",
        "]",
        "version_policy: { latest: { num_versions: 1 } }",
    ]
    if cfg.tensorrt_fp16:
        lines += [
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            '  parameters { key: "precision_mode" value: "FP16" }',
            '  parameters { key: "max_workspace_size_bytes" value: "1073741824" }',
            "} ] } }",
        ]
    lines += [f"parameters {{ key: {_q(k)} value: {{ string_value: {_q(v)} }} }}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def write_repository(
    checkpoint: str | None,
    out_dir: str | Path,
    cfg: TritonConfig = TritonConfig(),
    opset: int = OPSET,
    name: str = MODEL_NAME,
) -> dict[str, Any]:
    """Export the checkpoint's (None: the default model's) graph into a Triton model repository.

    The graph's parity with PyTorch fp32 is checked as by ``galleryrank export`` (``max_abs_diff``).
    """
    from .export import export_onnx
    from .scoring import load_scoring_model

    scorer = load_scoring_model(checkpoint, backend="torch")
    model = scorer.torch_module()
    root = Path(out_dir)
    result = export_onnx(checkpoint, root / name / "1" / "model.onnx", opset=opset)
    text = render_config(
        input_size=model.input_size,
        n_areas=len(scorer.areas),
        embedding_dim=model.embedding_dim,
        model_version=scorer.model_version,
        areas=scorer.areas,
        cfg=cfg,
        name=name,
    )
    config = root / name / "config.pbtxt"
    config.write_text(text)
    return result | {
        "repository": str(root),
        "model": name,
        "config": str(config),
        "areas": scorer.areas,
        "input_size": model.input_size,
    }
