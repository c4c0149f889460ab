"""Reviewer tokens and the per-person rate limit: pure logic (the Redis side is in
tests/integration/test_review_api.py)."""

from __future__ import annotations

from galleryrank.consumer.api.review import TOKEN_PARAMS, RateLimiter
from galleryrank.consumer.state.reviewers import Reviewer, split_token


def test_a_token_names_its_reviewer_and_malformed_ones_are_refused():
    secret = "A" * 43
    assert split_token(f"grv1.ann.{secret}") == ("ann", secret)
    assert split_token(f"grv1.ann.smith.{secret}") == ("ann.smith", secret)  # ids may hold dots
    for bad in (
        "",
        "grv1.",
        f"grv2.ann.{secret}",
        f"grv1..{secret}",
        "grv1.ann.short",
        f"grv1.a b.{secret}",
        "x" * 500,
    ):
        assert split_token(bad) is None, bad


def test_roles():
    assert Reviewer("ed", "editor", "t").can_edit and not Reviewer("ann", "reviewer", "t").can_edit
    assert not Reviewer("gone", "editor", "t", revoked_at="t2").active


def test_rate_limit_is_per_person_over_a_sliding_minute():
    limit = RateLimiter(3)
    assert [limit.retry_after("ann", now=t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert limit.retry_after("ann", now=3.0) == 57.0  # the first write leaves the window at 60 s
    assert limit.retry_after("bob", now=3.0) == 0.0  # another person is not slowed down
    assert limit.retry_after("ann", now=60.5) == 0.0
    # Peeking (count=False) never uses up the window: refused tokens are counted only when they fail.
    peek = RateLimiter(1)
    assert peek.retry_after("10.0.0.1", now=0.0, count=False) == 0.0
    assert peek.retry_after("10.0.0.1", now=0.0) == 0.0 and peek.retry_after("10.0.0.1", now=1.0, count=False) > 0


def test_token_carrying_query_parameters_are_known():
    assert {"token", "access_token"} <= TOKEN_PARAMS
