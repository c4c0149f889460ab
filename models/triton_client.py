"""The ``triton`` scoring backend: ``ScoringModel.score`` answered by a Triton Inference Server.

    GALLERYRANK_MODEL_SERVER=grpc://triton:8001 galleryrank consume

Same interface and same ``ScoreOutput`` as the in-process backends (models/scoring.py): the
consumer decodes and resizes on its CPUs and sends uint8 NCHW batches (150 KB per 224 px
image) over gRPC; the server batches requests of many consumer processes together
(dynamic batching) and runs the graph exported by ``galleryrank export --triton``. The model
version and area names come from the server's model config (``galleryrank_*`` parameters),
so Redis state names the model the server really runs.

Failures: every request has a deadline (``timeout_s``). When the server is unreachable,
restarting or overloaded the call is retried with backoff *forever*, logging a clear error
(after a deadline is exceeded the next try waits twice as long, up to 16x, so that a slow
server is not sent the same batch again while it still works on it):
the batch waits, the scorer's in-flight cap fills, partitions pause, offsets stay
uncommitted, and nothing goes to the dead-letter topic (the events are not at fault).
``interrupt()`` (called on shutdown) ends the wait. At start the server gets
``start_timeout_s`` to answer before the consumer gives up with an error naming the URL.

``score`` is called from one worker thread at a time (the MicroBatcher's model thread);
it uses tritonclient's gRPC client.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .scoring import ScoreOutput, _make_output

log = logging.getLogger(__name__)

MODEL_NAME = "galleryrank"  # models/triton.py
INPUT_NAME = "images"
OUTPUT_NAMES = ("aesthetic_dist", "area_probs", "embedding")
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
MAX_TIMEOUT_FACTOR = 16


class ModelServerError(RuntimeError):
    """The model server cannot be used (unreachable at start, wrong model, or interrupted)."""


def parse_url(url: str) -> str:
    """``grpc://host:port`` (or ``host:port``) -> ``host:port`` for tritonclient."""
    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    if parts.scheme != "grpc":
        raise ValueError(f"model server URL must be grpc://host:port, not {url!r}")
    if not parts.hostname or not parts.port:
        raise ValueError(f"model server URL needs a host and a port: {url!r}")
    return f"{parts.hostname}:{parts.port}"


class TritonScoringModel:
    backend = "triton"
    device = "cpu"  # the consumer's side: decode on CPU threads, no CUDA here

    def __init__(
        self, url: str, *, model_name: str = MODEL_NAME, timeout_s: float = 10.0, start_timeout_s: float = 120.0
    ):
        import tritonclient.grpc as grpcclient

        self._grpc = grpcclient
        self.url = url
        self._address = parse_url(url)
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(self._address)
        self._interrupted = threading.Event()
        self.retries = 0  # failed calls retried since start (tests, metrics)
        self.requests = 0
        config = self._wait_for_model(start_timeout_s)
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        if "galleryrank_model_version" not in params or "galleryrank_areas" not in params:
            raise ModelServerError(
                f"model {model_name!r} on {url} has no galleryrank_model_version/galleryrank_areas parameters: "
                "serve a repository written by `galleryrank export --triton` (or `galleryrank model-server`)"
            )
        self.model_version: str = params["galleryrank_model_version"]
        self.areas: list[str] = params["galleryrank_areas"].split(",")
        dims = {t["name"]: [int(d) for d in t["dims"]] for t in config["input"] + config["output"]}
        self.input_size: int = dims[INPUT_NAME][-1]
        self.embedding_dim: int = dims["embedding"][0]
        if dims["area_probs"][0] != len(self.areas):
            raise ModelServerError(f"{url}: area_probs has {dims['area_probs'][0]} columns for {len(self.areas)} areas")
        self.max_batch_size = int(config.get("max_batch_size") or 0)
        log.info("model server %s: %s (%s), max batch %d", url, model_name, self.model_version, self.max_batch_size)

    def _wait_for_model(self, start_timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + start_timeout_s
        delay = RETRY_MIN_S
        while True:
            try:
                if self._client.is_model_ready(self.model_name, client_timeout=self.timeout_s):
                    return self._client.get_model_config(self.model_name, as_json=True, client_timeout=self.timeout_s)[
                        "config"
                    ]
                problem = f"model {self.model_name!r} is not ready"
            except self._grpc.InferenceServerException as exc:
                problem = str(exc)
            if time.monotonic() + delay > deadline:
                raise ModelServerError(
                    f"model server {self.url} did not serve {self.model_name!r} within {start_timeout_s:.0f} s "
                    f"({problem}); start it (galleryrank model-server, or Triton with the repository from "
                    "galleryrank export --triton) or fix GALLERYRANK_MODEL_SERVER"
                )
            log.warning("waiting for model server %s: %s", self.url, problem)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def interrupt(self) -> None:
        """Stop retrying: a call waiting for the server raises ModelServerError (shutdown)."""
        self._interrupted.set()

    def resume(self) -> None:
        """Take calls again after ``interrupt()``."""
        self._interrupted.clear()

    def close(self) -> None:
        self.interrupt()
        self._client.close()

    def _check(self, batch: np.ndarray) -> np.ndarray:
        if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8:
            raise TypeError("score() takes a uint8 numpy batch from models.preprocess_image")
        s = self.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
            raise ValueError(f"batch must have shape (N, 3, {s}, {s}), got {batch.shape}")
        return np.ascontiguousarray(batch)

    def _infer(self, batch: np.ndarray, timeout_s: float) -> Any:
        inp = self._grpc.InferInput(INPUT_NAME, list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch)
        outputs = [self._grpc.InferRequestedOutput(n) for n in OUTPUT_NAMES]
        return self._client.infer(self.model_name, [inp], outputs=outputs, client_timeout=timeout_s)

    def score(self, batch: np.ndarray) -> ScoreOutput:
        batch = self._check(batch)
        if len(batch) == 0:
            z = np.zeros
            return _make_output(z((0, 10)), z((0, len(self.areas))), z((0, self.embedding_dim)))
        parts = [batch[i : i + self.max_batch_size] for i in range(0, len(batch), self.max_batch_size or len(batch))]
        outs = [self._score_part(p) for p in parts]
        return _make_output(*(np.concatenate([o[k] for o in outs]) for k in range(3)))

    def _score_part(self, batch: np.ndarray) -> list[np.ndarray]:
        delay = RETRY_MIN_S
        failures = 0
        timeout_s = self.timeout_s
        while True:
            if self._interrupted.is_set():
                raise ModelServerError(f"model server {self.url}: interrupted while waiting for it")
            try:
                result = self._infer(batch, timeout_s)
                self.requests += 1
                if failures:
                    log.warning("model server %s answers again after %d failed tries", self.url, failures)
                return [result.as_numpy(n) for n in OUTPUT_NAMES]
            except self._grpc.InferenceServerException as exc:
                failures += 1
                self.retries += 1
                if exc.status() == "StatusCode.DEADLINE_EXCEEDED":
                    # The server is slow, not gone, and still runs the abandoned request: a retry
                    # with the same deadline would only add load. Wait longer (up to 16x).
                    timeout_s = min(timeout_s * 2, self.timeout_s * MAX_TIMEOUT_FACTOR)
                # Every failure is retried: the inputs were checked above, so the server (down,
                # restarting, reloading, overloaded) is at fault, never the events.
                level = logging.ERROR if failures in (1, 10) or failures % 100 == 0 else logging.DEBUG
                log.log(
                    level,
                    "model server %s failed (%s); try %d, retrying in %.1f s; the batch waits and "
                    "partitions pause until it answers",
                    self.url,
                    exc,
                    failures,
                    delay,
                )
            if self._interrupted.wait(delay):
                raise ModelServerError(f"model server {self.url}: interrupted while waiting for it")
            delay = min(delay * 2, RETRY_MAX_S)
