"""ONNX export of the scoring graph (uint8 images -> dist, area probs, embedding) and ORT sessions."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .checkpoint import state_fingerprint
from .defaults import load_model
from .network import GalleryNet
from .quality import HEAD_INPUTS_VERSION

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAMES = ["aesthetic_dist", "area_probs", "embedding"]
DEFAULT_CACHE_DIR = "~/.cache/galleryrank"


def export_graph(model: GalleryNet, path: str | Path, opset: int = OPSET) -> Path:
    """Write the eval-mode scoring graph with a dynamic batch axis; input uint8 (N,3,S,S)."""
    model = model.eval()
    device = next(model.parameters()).device
    s = model.input_size
    dummy = torch.zeros((2, 3, s, s), dtype=torch.uint8, device=device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # The backbone's TF "same" padding (timm Conv2dSame) computes its pads at run time; the
        # exporter reverses that pad list with a step -1 Slice, which it cannot constant-fold and
        # says so three times per export. Harmless: ONNX Runtime evaluates the Slice, and parity
        # with PyTorch is checked after every export (max_abs_diff). Only that message is hidden.
        warnings.filterwarnings(
            "ignore", message=r"Constant folding - Only steps=1 can be constant folded", category=UserWarning
        )
        # TorchScript-based exporter: a single self-contained file, dynamic batch via dynamic_axes
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=OUTPUT_NAMES,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}},
        )
    tmp.replace(path)
    return path


def cache_key(model: GalleryNet, opset: int = OPSET) -> str:
    fingerprint = state_fingerprint(model.state_dict())[:16]
    return f"{model.backbone_name}-{fingerprint}-s{model.input_size}-op{opset}-h{HEAD_INPUTS_VERSION}"


def cached_graph(model: GalleryNet, cache_dir: str | None = None) -> Path:
    """Path of the exported graph for these exact weights; exported on first use."""
    root = Path(os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR))
    path = root / f"{cache_key(model)}.onnx"
    if not path.exists():
        t0 = time.perf_counter()
        export_graph(model, path)
        log.info("exported ONNX scoring graph to %s in %.1f s", path, time.perf_counter() - t0)
    return path


def make_session(path: str | Path, device: str = "cpu", num_threads: int | None = None) -> ort.InferenceSession:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    # no busy-waiting between ops: on a CPU shared with decode threads (and other tenants) spinning
    # workers steal the cores the rest of the pipeline needs
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No CPU memory arena: it keeps the high-water mark of every batch size seen;
    # off, peak RSS of the pipeline benchmark fell by ~300 MB at the same CPU per
    # event (bench/pipeline_bench.py --ort-options), margin under the 2 GB budget.
    opts.enable_cpu_mem_arena = False
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("onnxruntime on cuda needs onnxruntime-gpu; use backend torch-bf16")
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def onnx_session_for(
    model: GalleryNet, cache_dir: str | None, device: str = "cpu", num_threads: int | None = None
) -> ort.InferenceSession:
    return make_session(cached_graph(model, cache_dir), device=device, num_threads=num_threads)


def parity(model: GalleryNet, onnx_path: str | Path, batch: np.ndarray) -> dict[str, float]:
    """Max abs difference per output between ONNX Runtime and eager fp32 PyTorch on ``batch``."""
    sess = make_session(onnx_path)
    ort_out = sess.run(None, {INPUT_NAME: batch})
    device = next(model.parameters()).device
    with torch.inference_mode():
        ref = [t.cpu().numpy() for t in model.eval()(torch.from_numpy(batch).to(device))]
    diffs = {name: float(np.abs(a - b).max()) for name, a, b in zip(OUTPUT_NAMES, ort_out, ref)}
    diffs["aesthetic_mean"] = float(np.abs((ort_out[0] - ref[0]) @ np.arange(1, 11)).max())
    diffs["max"] = max(diffs.values())
    return diffs


def export_onnx(
    checkpoint: str | None, out: str | Path, *, opset: int = OPSET, parity_images: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Export a checkpoint's (None: the default model's) scoring graph to ``out`` and check parity.

    Parity inputs: ``parity_images`` random uint8 images plus the skimage sample photos
    when scikit-image is installed; the max abs difference per output is returned.
    """
    model, model_version = load_model(checkpoint)
    t0 = time.perf_counter()
    path = export_graph(model, out, opset=opset)
    seconds = time.perf_counter() - t0
    s = model.input_size
    batch = np.random.default_rng(seed).integers(0, 256, (parity_images, 3, s, s), dtype=np.uint8)
    try:
        from PIL import Image
        from skimage import data as skdata

        from .preprocess import preprocess_image

        photos = [
            preprocess_image(Image.fromarray(getattr(skdata, n)()), s) for n in ("chelsea", "coffee", "astronaut")
        ]
        batch = np.concatenate([batch, np.stack(photos)])
    except ImportError:
        pass
    diffs = parity(model, path, batch)
    return {
        "onnx": str(path),
        "model_version": model_version,
        "opset": opset,
        "export_seconds": round(seconds, 2),
        "parity_images": int(len(batch)),
        "max_abs_diff": diffs,
        "bytes": Path(path).stat().st_size,
    }
