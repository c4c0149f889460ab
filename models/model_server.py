"""A local Triton Inference Server for one host and for the tests (``galleryrank model-server``).

PyTriton (the ``nvidia-pytriton`` wheel, which bundles a real ``tritonserver`` binary) serves
the scoring graph of a repository written by ``galleryrank export --triton DIR`` with Triton's
dynamic batcher, on the same gRPC/HTTP protocol, under the same model name, with the same
inputs, outputs and ``galleryrank_*`` parameters as the production Triton that runs that
repository with its ONNX Runtime backend. So the consumer's ``triton`` backend
(``GALLERYRANK_MODEL_SERVER=grpc://host:8001``) cannot tell them apart.

Inference inside: ONNX Runtime on the CPU (the repository's model.onnx), or, with
``--backend torch-fp16 --device cuda``, the project's ``ScoringModel`` in fp16 on the GPU
(needs torch and galleryrank importable).

This file imports nothing from galleryrank at module level on purpose: it runs in its own
virtual environment (scripts/model_server_venv.sh: Debian's /usr/bin/python3.11 +
nvidia-pytriton + numpy + onnxruntime, no torch), because PyTriton's Python-backend stub
links the system libpython and fails to load models from a venv of another build of the
same Python version. ``galleryrank model-server`` (consumer/cli/main.py) exports the
repository with the main environment, then runs this file with that interpreter.

    .venv-triton/bin/python models/model_server.py --repository DIR [--grpc-port 8001]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("galleryrank.model_server")

MODEL_NAME = "galleryrank"  # models/triton.py MODEL_NAME
OUTPUT_NAMES = ("aesthetic_dist", "area_probs", "embedding")  # models/export.py
_PARAM = re.compile(r'parameters\s*\{\s*key:\s*("(?:[^"\\]|\\.)*")\s*value:\s*\{\s*string_value:\s*("(?:[^"\\]|\\.)*")')
_DIMS = re.compile(r'\{\s*name:\s*"(\w+)"[^}]*?dims:\s*\[([^\]]*)\]')


def read_repository(repository: Path, name: str = MODEL_NAME) -> dict[str, Any]:
    """Graph path, shapes and galleryrank parameters of a repository from ``export --triton``."""
    text = (repository / name / "config.pbtxt").read_text()
    params = {json.loads(k): json.loads(v) for k, v in _PARAM.findall(text)}
    dims = {n: [int(x) for x in d.split(",")] for n, d in _DIMS.findall(text)}
    max_batch = re.search(r"max_batch_size:\s*(\d+)", text)
    versions = sorted((p for p in (repository / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise FileNotFoundError(f"{repository / name} has no version folder (run galleryrank export --triton)")
    return {
        "onnx": versions[-1] / "model.onnx",
        "parameters": params,
        "input_size": dims["images"][-1],
        "n_areas": dims["area_probs"][0],
        "embedding_dim": dims["embedding"][0],
        "max_batch_size": int(max_batch.group(1)) if max_batch else 0,
    }


def onnx_infer(onnx_path: Path, threads: int | None) -> Callable[[np.ndarray], list[np.ndarray]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_cpu_mem_arena = False
    session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])

    def run(images: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {"images": images})

    return run


def torch_infer(
    checkpoint: str | None, device: str, backend: str
) -> tuple[Callable[[np.ndarray], list[np.ndarray]], str, list[str]]:
    from galleryrank.models import load_scoring_model

    model = load_scoring_model(checkpoint, device=device, backend=backend)

    def run(images: np.ndarray) -> list[np.ndarray]:
        out = model.score(images)
        return [out.aesthetic_dist, out.area_probs, out.embedding]

    return run, model.model_version, model.areas


class BatchStats:
    """Batch sizes the server's model actually ran (what the dynamic batcher formed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches = 0
        self.images = 0
        self.largest = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.batches += 1
            self.images += n
            self.largest = max(self.largest, n)


def serve(a: argparse.Namespace) -> int:
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    repo = read_repository(Path(a.repository))
    params = dict(repo["parameters"])
    if a.backend == "onnxruntime":
        run = onnx_infer(repo["onnx"], a.threads)
    else:
        run, version, areas = torch_infer(a.checkpoint, a.device, a.backend)
        params.update(galleryrank_model_version=version, galleryrank_areas=",".join(areas))
    stats = BatchStats()

    @batch
    def infer(images: np.ndarray) -> dict[str, np.ndarray]:
        stats.add(len(images))
        return dict(zip(OUTPUT_NAMES, (np.ascontiguousarray(o, dtype=np.float32) for o in run(images))))

    s = repo["input_size"]
    preferred = [int(b) for b in a.preferred_batch_sizes.split(",") if b]
    max_batch = a.max_batch_size or repo["max_batch_size"]
    config = TritonConfig(
        grpc_port=a.grpc_port,
        http_port=a.http_port,
        metrics_port=a.metrics_port,
        grpc_address=a.host,
        http_address=a.host,
        log_verbose=0,
    )
    # Not `with Triton(...)`: entering it connects, and bind() would then load the model at once,
    # before the parameters below are in its config.
    triton = Triton(config=config, workspace=a.workspace)
    try:
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=infer,
            inputs=[Tensor(name="images", dtype=np.uint8, shape=(3, s, s))],
            outputs=[
                Tensor(name="aesthetic_dist", dtype=np.float32, shape=(10,)),
                Tensor(name="area_probs", dtype=np.float32, shape=(repo["n_areas"],)),
                Tensor(name="embedding", dtype=np.float32, shape=(repo["embedding_dim"],)),
            ],
            config=ModelConfig(
                max_batch_size=max_batch,
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=a.queue_delay_us,
                    preferred_batch_size=[b for b in preferred if b <= max_batch] or None,
                ),
            ),
            strict=True,
        )
        # The galleryrank_* parameters go into the generated config.pbtxt as in the exported
        # repository, so clients read the model version and areas the same way from both.
        # PyTriton 0.7 has no public field for them: its generator writes backend_parameters.
        for model in triton._model_manager.models:  # noqa: SLF001 - pinned nvidia-pytriton==0.7.0
            model._get_triton_model_config().backend_parameters.update(params)  # noqa: SLF001
        log.info(
            "serving %s (%s) on grpc %s:%d", MODEL_NAME, params.get("galleryrank_model_version"), a.host, a.grpc_port
        )
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        triton.run()
        print(json.dumps({"ready": True, "grpc_port": a.grpc_port, "metrics_port": a.metrics_port}), flush=True)
        while not stop.wait(1.0) and triton.is_alive():
            pass
        log.info("stopping: %d batches, %d images, largest batch %d", stats.batches, stats.images, stats.largest)
    finally:
        triton.stop()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", required=True, help="Triton model repository from galleryrank export --triton")
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 for other hosts)")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch", "torch-fp16", "torch-bf16"))
    p.add_argument("--device", default="cpu", help="torch backends: cpu, cuda, cuda:N")
    p.add_argument("--checkpoint", default=None, help="torch backends: checkpoint (default: the default model)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--max-batch-size", type=int, default=0, help="Default: the repository's config.pbtxt")
    p.add_argument("--preferred-batch-sizes", default="16,32,64", help="Comma-separated; the dynamic batcher's goal")
    p.add_argument(
        "--workspace", default=None, help="PyTriton's working folder (default: a new one under ~/.cache/pytriton)"
    )
    p.add_argument("--queue-delay-us", type=int, default=2000, help="Longest a request waits for batch company")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
