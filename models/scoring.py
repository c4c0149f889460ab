"""Serving: one ``ScoringModel`` that turns uint8 batches into scores on a chosen backend.

Backends (all take the same uint8 batch; normalisation is inside the graph):
- ``torch``: eager fp32, the reference;
- ``torch-fp16``: autocast float16 + channels_last (CUDA; also runs, slowly, on a CPU);
- ``torch-bf16``: autocast bfloat16 + channels_last (CPU with AVX-512 BF16, or CUDA);
- ``onnxruntime``: the scoring graph exported once to ``cache_dir`` (keyed by a hash of
  the weights), run by ONNX Runtime;
- ``auto``: CUDA -> ``torch-fp16``; CPU -> ``onnxruntime`` (fastest measured here:
  see ``bench/model_backends.py`` and docs/models.md).

Why fp16 and not bf16 on a GPU: both run on the same tensor cores, but bf16 keeps
8 bits of mantissa against fp16's 11, and the calibrated zero-shot area prior
divides log-probabilities by its temperature (0.41), which multiplies the error.
Measured on 64 real listing photos against fp32 (docs/models.md): bf16 moved an
area probability by up to 0.053 and the aesthetic mean by 0.11 (on the H200: 0.154
and 0.063); fp16 by 0.0075 and 0.0075. EfficientNet-Lite's activations are ReLU6,
bounded, so fp16's smaller range cannot overflow.

``score`` is meant to be called from one worker thread at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .defaults import load_model
from .network import GalleryNet

BACKENDS = ("torch", "torch-fp16", "torch-bf16", "onnxruntime")
AUTOCAST_DTYPES = {"torch-fp16": torch.float16, "torch-bf16": torch.bfloat16}
CUDA_AUTO_BACKEND = "torch-fp16"
CPU_AUTO_BACKEND = "onnxruntime"  # measured on this project's 2-core machines, see docs/models.md
SCORE_BINS = np.arange(1, 11, dtype=np.float32)


@dataclass
class ScoreOutput:
    aesthetic_dist: np.ndarray  # (N, 10) float32, rows sum to 1
    aesthetic: np.ndarray  # (N,) float32, mean of the distribution over 1..10
    area_probs: np.ndarray  # (N, C) float32, rows sum to 1, columns in ScoringModel.areas order
    embedding: np.ndarray  # (N, D) float32, L2-normalised

    def __len__(self) -> int:
        return len(self.aesthetic)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_backend(backend: str, device: str) -> str:
    if backend == "auto":
        return CUDA_AUTO_BACKEND if device.startswith("cuda") else CPU_AUTO_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, not {backend!r}")
    return backend


def _make_output(dist: np.ndarray, area: np.ndarray, emb: np.ndarray) -> ScoreOutput:
    dist = np.ascontiguousarray(dist, dtype=np.float32)
    return ScoreOutput(
        aesthetic_dist=dist,
        aesthetic=(dist @ SCORE_BINS).astype(np.float32),
        area_probs=np.ascontiguousarray(area, dtype=np.float32),
        embedding=np.ascontiguousarray(emb, dtype=np.float32),
    )


class ScoringModel:
    def __init__(
        self,
        model: GalleryNet,
        model_version: str,
        device: str = "cpu",
        backend: str = "torch",
        cache_dir: str | None = None,
        num_threads: int | None = None,
    ):
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self._model = model.eval().to(self.device)
        for p in self._model.parameters():
            p.requires_grad_(False)
        self.areas: list[str] = list(model.areas)
        self.model_version = model_version
        self.input_size: int = model.input_size
        self.embedding_dim: int = model.embedding_dim
        self._session = None
        if self.backend in AUTOCAST_DTYPES:
            self._model = self._model.to(memory_format=torch.channels_last)
        elif self.backend == "onnxruntime":
            from .export import onnx_session_for

            self._session = onnx_session_for(self._model, cache_dir, device=self.device, num_threads=num_threads)

    def torch_module(self) -> GalleryNet:
        return self._model

    def _check(self, batch: np.ndarray) -> np.ndarray:
        if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8:
            raise TypeError("score() takes a uint8 numpy batch from models.preprocess_image")
        s = self.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
            raise ValueError(f"batch must have shape (N, 3, {s}, {s}), got {batch.shape}")
        return np.ascontiguousarray(batch)

    def score(self, batch: np.ndarray | torch.Tensor) -> ScoreOutput:
        """Scores of a uint8 (N, 3, S, S) batch: host numpy, or a tensor (on the device: the hardware
        decode path hands its pixels over without a trip through the host)."""
        cuda = self.device.startswith("cuda")
        if isinstance(batch, torch.Tensor):
            s = self.input_size
            if batch.dtype != torch.uint8 or batch.ndim != 4 or tuple(batch.shape[1:]) != (3, s, s):
                raise ValueError(f"batch must be uint8 (N, 3, {s}, {s}), got {batch.dtype} {tuple(batch.shape)}")
            if self._session is not None or len(batch) == 0:
                return self.score(batch.cpu().numpy())
            x = batch.to(self.device, non_blocking=True)
        else:
            batch = self._check(batch)
            if len(batch) == 0:
                c, d = len(self.areas), self.embedding_dim
                z = np.zeros
                return _make_output(z((0, 10)), z((0, c)), z((0, d)))
            if self._session is not None:
                dist, area, emb = self._session.run(None, {"images": batch})
                return _make_output(dist, area, emb)
            x = torch.from_numpy(batch)
            if cuda:
                x = x.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode():
            if self.backend in AUTOCAST_DTYPES:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=AUTOCAST_DTYPES[self.backend]):
                    dist, area, emb = self._model(x)
            else:
                dist, area, emb = self._model(x)
        return _make_output(dist.float().cpu().numpy(), area.float().cpu().numpy(), emb.float().cpu().numpy())


def load_scoring_model(
    checkpoint: str | None = None,
    device: str = "cpu",
    backend: str = "torch",
    cache_dir: str | None = None,
    num_threads: int | None = None,
) -> ScoringModel:
    """``checkpoint`` None => package EfficientNet-Lite0 + the default heads in models/heads/."""
    model, version = load_model(checkpoint)
    if cache_dir is not None:
        cache_dir = str(Path(cache_dir).expanduser())
    return ScoringModel(model, version, device=device, backend=backend, cache_dir=cache_dir, num_threads=num_threads)
