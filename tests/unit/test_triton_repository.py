"""The Triton model repository that `galleryrank export --triton DIR` writes (models/triton.py).

config.pbtxt is parsed with Triton's own ModelConfig protobuf schema (tritonclient ships
the generated module) in protobuf text format, which rejects unknown fields as Triton's
loader does, and checked against the exported ONNX graph: names, data types and shapes of
the input and the three outputs, dynamic batching, the GPU instance group and the
parameters the consumer's triton backend reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from galleryrank.models.cli import models_app
from galleryrank.models.export import INPUT_NAME, OUTPUT_NAMES, make_session
from galleryrank.models.model_server import read_repository
from galleryrank.models.triton import MODEL_NAME, PARAM_AREAS, PARAM_MODEL_VERSION, TritonConfig, render_config

ONNX_TO_TRITON = {onnx.TensorProto.UINT8: mc.TYPE_UINT8, onnx.TensorProto.FLOAT: mc.TYPE_FP32}


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("triton") / "repo"
    result = CliRunner().invoke(models_app, ["export", "--triton", str(root)])
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout[result.stdout.index("{") :])


def test_export_writes_a_repository_triton_can_load(exported, model):
    root, result = exported
    assert sorted(p.name for p in (root / MODEL_NAME).iterdir()) == ["1", "config.pbtxt"]
    assert (root / MODEL_NAME / "1" / "model.onnx").is_file()
    assert result["max_abs_diff"]["max"] < 1e-3  # the graph scores as PyTorch fp32
    config = parse((root / MODEL_NAME / "config.pbtxt").read_text())
    assert config.name == MODEL_NAME and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size >= 64
    assert config.parameters[PARAM_MODEL_VERSION].string_value == model.model_version
    assert config.parameters[PARAM_AREAS].string_value.split(",") == model.areas
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU


def test_config_matches_the_onnx_graph(exported):
    root, _ = exported
    config = parse((root / MODEL_NAME / "config.pbtxt").read_text())
    graph = onnx.load(str(root / MODEL_NAME / "1" / "model.onnx"), load_external_data=False).graph

    def shape(value_info) -> list[int | str]:
        return [d.dim_value or d.dim_param for d in value_info.type.tensor_type.shape.dim]

    (inp,) = graph.input
    assert [i.name for i in config.input] == [inp.name] == [INPUT_NAME]
    assert config.input[0].data_type == ONNX_TO_TRITON[inp.type.tensor_type.elem_type] == mc.TYPE_UINT8
    assert config.input[0].format == mc.ModelInput.FORMAT_NCHW
    # Triton's dims leave out the batch axis, which the graph keeps dynamic.
    assert isinstance(shape(inp)[0], str) and list(config.input[0].dims) == shape(inp)[1:]
    outputs = {o.name: o for o in graph.output}
    assert [o.name for o in config.output] == list(OUTPUT_NAMES) == list(outputs)
    # Some output dims are symbolic in the graph (computed from a reshape): take the shapes of a real run.
    session = make_session(root / MODEL_NAME / "1" / "model.onnx")
    ran = session.run(None, {INPUT_NAME: np.zeros((2, *config.input[0].dims), np.uint8)})
    for out, value in zip(config.output, ran):
        assert out.data_type == ONNX_TO_TRITON[outputs[out.name].type.tensor_type.elem_type] == mc.TYPE_FP32
        assert value.shape == (2, *out.dims)


def test_dynamic_batching_is_configured(exported):
    root, _ = exported
    config = parse((root / MODEL_NAME / "config.pbtxt").read_text())
    assert config.HasField("dynamic_batching")
    preferred = list(config.dynamic_batching.preferred_batch_size)
    assert preferred == sorted(preferred) and preferred and max(preferred) <= config.max_batch_size
    assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 10_000


def test_model_server_reads_the_repository_like_triton(exported):
    root, _ = exported
    config = parse((root / MODEL_NAME / "config.pbtxt").read_text())
    repo = read_repository(root)
    assert repo["onnx"] == root / MODEL_NAME / "1" / "model.onnx"
    assert repo["input_size"] == config.input[0].dims[-1]
    assert repo["n_areas"] == config.output[1].dims[0] and repo["embedding_dim"] == config.output[2].dims[0]
    assert repo["max_batch_size"] == config.max_batch_size
    assert repo["parameters"] == {k: v.string_value for k, v in config.parameters.items()}


@pytest.mark.parametrize(
    "cfg",
    [TritonConfig(instance_kind="KIND_CPU", instance_count=2), TritonConfig(tensorrt_fp16=True)],
    ids=["cpu", "tensorrt-fp16"],
)
def test_config_variants_parse(cfg):
    text = render_config(
        input_size=224, n_areas=3, embedding_dim=8, model_version='v"1', areas=["a", "b", "c"], cfg=cfg
    )
    config = parse(text)
    assert config.parameters[PARAM_MODEL_VERSION].string_value == 'v"1'  # quoted as text format wants
    assert config.instance_group[0].count == cfg.instance_count
    if cfg.tensorrt_fp16:
        (acc,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"


def test_the_schema_check_is_strict():
    text = render_config(input_size=224, n_areas=3, embedding_dim=8, model_version="v", areas=["a", "b", "c"])
    with pytest.raises(text_format.ParseError):
        parse(text.replace("max_queue_delay_microseconds", "max_queue_delay_us"))
    with pytest.raises(text_format.ParseError):
        parse(text.replace("TYPE_UINT8", "TYPE_BYTE"))
    with pytest.raises(ValueError):
        render_config(input_size=224, n_areas=3, embedding_dim=8, model_version="v", areas=["a", "b", "c"],
                      cfg=TritonConfig(max_batch_size=32))  # fmt: skip
    assert np.array_equal(list(parse(text).input[0].dims), [3, 224, 224])


def test_model_server_runs_from_the_interpreter_asked_for(tmp_path, monkeypatch):
    """--python, then $TRITON_PYTHON, then .venv-triton (PyTriton's stub needs Debian's python3.11)."""
    from galleryrank.consumer.cli.model_server import PACKAGE_ROOT, SERVER_SCRIPT, server_python

    assert SERVER_SCRIPT.is_file() and SERVER_SCRIPT.parent == PACKAGE_ROOT / "models"
    explicit, from_env = tmp_path / "explicit-python", tmp_path / "env-python"
    explicit.write_text("")
    from_env.write_text("")
    monkeypatch.setenv("TRITON_PYTHON", str(from_env))
    assert server_python(str(explicit)) == str(explicit)
    assert server_python() == str(from_env)
    monkeypatch.delenv("TRITON_PYTHON")
    venv = PACKAGE_ROOT / ".venv-triton" / "bin" / "python"
    if venv.is_file():
        assert server_python() == str(venv)
