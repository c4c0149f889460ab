"""`galleryrank model-server`: a local Triton Inference Server for one host and for the tests.

Exports the scoring graph into a Triton model repository (models/triton.py; cached under
``<model_cache_dir>/triton-<weights key>``) unless ``--repository`` names one, then runs
models/model_server.py (PyTriton: a real ``tritonserver`` with dynamic batching) with the
model server's own interpreter, replacing this process. Consumers then score through it:
``galleryrank consume --model-server grpc://127.0.0.1:8001``.

The interpreter: ``--python``, else $TRITON_PYTHON, else ``.venv-triton/bin/python`` in the
repository (made by scripts/model_server_venv.sh from Debian's /usr/bin/python3.11: PyTriton's
Python-backend stub links the system libpython3.11, and a venv of another 3.11 build fails to
load the model with "'_thread.RLock' object has no attribute '_recursion_count'"), else this
Python when it can import pytriton.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import click

from .options import SettingsCommand, settings, split_settings

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the repo (editable install) or site-packages/galleryrank
SERVER_SCRIPT = PACKAGE_ROOT / "models" / "model_server.py"


def server_python(explicit: str | None = None) -> str:
    """The interpreter that runs the model server (see the module docstring)."""
    for candidate in (explicit, os.environ.get("TRITON_PYTHON"), str(PACKAGE_ROOT / ".venv-triton" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            return candidate
    if importlib.util.find_spec("pytriton") is not None:
        return sys.executable
    raise click.ClickException(
        "no interpreter with nvidia-pytriton: run scripts/model_server_venv.sh (makes .venv-triton from "
        "Debian's /usr/bin/python3.11), or pass --python / set TRITON_PYTHON"
    )


def ensure_repository(checkpoint: str | None, cache_dir: str, device: str) -> Path:
    """The Triton repository for these weights, exported once into the model cache."""
    from galleryrank.models.export import cache_key
    from galleryrank.models.scoring import load_scoring_model
    from galleryrank.models.triton import MODEL_NAME, TritonConfig, write_repository

    model = load_scoring_model(checkpoint, backend="torch").torch_module()
    root = Path(cache_dir).expanduser() / f"triton-{cache_key(model)}"
    if not (root / MODEL_NAME / "config.pbtxt").is_file():
        kind = "KIND_GPU" if device.startswith("cuda") else "KIND_CPU"
        tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
        result = write_repository(checkpoint, tmp, TritonConfig(instance_kind=kind, preferred_batch_sizes=(16, 32, 64)))
        if result["max_abs_diff"]["max"] > 1e-3:
            raise click.ClickException(f"exported graph differs from PyTorch: {result['max_abs_diff']}")
        tmp.rename(root)
    return root


@click.command("model-server", cls=SettingsCommand)
@click.option(
    "--repository",
    type=click.Path(file_okay=False),
    default=None,
    help="Triton model repository from `galleryrank export --triton`; default: exported into the model cache",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to serve other hosts")
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="Triton's Prometheus metrics")
@click.option("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
@click.option("--preferred-batch-sizes", default="16,32,64", show_default=True)
@click.option(
    "--queue-delay-us",
    type=int,
    default=2000,
    show_default=True,
    help="Longest a request waits for others to batch with",
)
@click.option("--python", "python_path", default=None, help="Interpreter with nvidia-pytriton (see --help above)")
@settings("checkpoint", "model_cache_dir", "device", "backend")
def model_server(
    repository,
    host,
    grpc_port,
    http_port,
    metrics_port,
    threads,
    preferred_batch_sizes,
    queue_delay_us,
    python_path,
    **kwargs,
) -> None:
    """A local Triton model server with dynamic batching (PyTriton); consumers use --model-server grpc://HOST:PORT."""
    cfg, _ = split_settings(kwargs)
    checkpoint, model_cache_dir, device, backend = cfg.checkpoint, cfg.model_cache_dir, cfg.device, cfg.backend
    python = server_python(python_path)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "auto":
        backend = "torch-fp16" if device.startswith("cuda") else "onnxruntime"
    repo = Path(repository) if repository else ensure_repository(checkpoint, model_cache_dir, device)
    args = [
        python,
        str(SERVER_SCRIPT),
        "--repository",
        str(repo),
        "--host",
        host,
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        "--metrics-port",
        str(metrics_port),
        "--backend",
        backend,
        "--device",
        device,
        "--preferred-batch-sizes",
        preferred_batch_sizes,
        "--queue-delay-us",
        str(queue_delay_us),
    ]
    if threads:
        args += ["--threads", str(threads)]
    if checkpoint:
        args += ["--checkpoint", checkpoint]
    # The torch backends import galleryrank (and torch) in the server's Python: install the
    # project there (`pip install --no-deps -e .`) to use them; onnxruntime needs neither.
    click.echo(json.dumps({"python": python, "repository": str(repo), "grpc": f"{host}:{grpc_port}"}), err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, args)
