"""The quality score has no colour preference (issue 22): colourfulness and saturation are
measured but held at their mean for the heads, in every checkpoint."""

import torch

from galleryrank.models.network import create_model
from galleryrank.models.quality import COLOUR_FEATURES, FEATURE_NAMES, QualityFeatures


def test_colour_features_reach_the_heads_as_their_mean():
    qf = QualityFeatures()
    raw = torch.randn(4, len(FEATURE_NAMES)) * 3 + 1
    q = qf.standardise(raw)
    for name in COLOUR_FEATURES:
        assert torch.all(q[:, FEATURE_NAMES.index(name)] == 0)
    others = [i for i, n in enumerate(FEATURE_NAMES) if n not in COLOUR_FEATURES]
    assert torch.equal(q[:, others], ((raw - qf.mean) / qf.std)[:, others])


def test_the_aesthetic_score_does_not_move_with_colourfulness_or_saturation():
    model = create_model("efficientnet_lite0", area_head="zeroshot", weights=None)
    with torch.no_grad():  # a head and blend that would reward colour if it reached them
        model.aesthetic_head[-1].weight.normal_(0, 0.5)
        model.aesthetic_blend.weight.fill_(0.3)
    pooled = torch.randn(2, model.backbone.num_features)
    raw = torch.randn(2, len(FEATURE_NAMES))
    louder = raw.clone()
    for name in COLOUR_FEATURES:
        louder[:, FEATURE_NAMES.index(name)] += 5.0
    qf = model.quality_features
    with torch.inference_mode():
        a = model.aesthetic_logits(pooled, qf.standardise(raw))
        b = model.aesthetic_logits(pooled, qf.standardise(louder))
    assert torch.equal(a, b)
