"""Every setting has an env var and a CLI flag, and the README lists them all."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from galleryrank.consumer.cli.main import cli
from galleryrank.consumer.cli.options import split_settings
from galleryrank.consumer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting_with_env_var_and_flag():
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`GALLERYRANK_{name.upper()}`" in readme, name
        assert f"`--{name.replace('_', '-')}`" in readme, name


def test_every_setting_is_a_flag_of_consume_or_serve():
    out = CliRunner().invoke(cli, ["consume", "--help"]).output + CliRunner().invoke(cli, ["serve", "--help"]).output
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in out, name


def test_flag_beats_env_var_beats_default(monkeypatch):
    monkeypatch.setenv("GALLERYRANK_BATCH_SIZE", "17")
    monkeypatch.setenv("GALLERYRANK_TOPIC", "from-env")
    settings, rest = split_settings({"batch_size": 64, "topic": None, "other": 1})
    assert settings.batch_size == 64  # flag
    assert settings.topic == "from-env"  # env var
    assert settings.dlq_topic == "hotel-images.dlq"  # default
    assert rest == {"other": 1}


def test_secret_never_shows_in_repr(monkeypatch):
    monkeypatch.setenv("GALLERYRANK_SASL_PASSWORD", "hunter2")
    settings = Settings()
    assert settings.sasl_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_redis_password_in_url_never_shows_in_repr():
    settings = Settings(redis_url="redis://:s3cret-pw@redis.internal:6379/0")
    assert settings.redis_url.endswith("@redis.internal:6379/0")  # still usable
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings)
    assert "redis://:***@redis.internal:6379/0" in repr(settings)
