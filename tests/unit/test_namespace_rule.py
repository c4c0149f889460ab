"""One namespace rule (consumer/state/namespace.py) for settings, the read API, blue/green and the store."""

from __future__ import annotations

import pytest

from galleryrank.consumer.settings import ConfigError, Settings, load_settings
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.namespace import RESERVED, NamespaceError, is_valid_name, validate_name


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_settings_refuse_reserved_namespaces(name, monkeypatch):
    monkeypatch.setenv("GALLERYRANK_NAMESPACE", name)
    with pytest.raises((ConfigError, ValueError)) as err:
        load_settings()
    assert "namespace" in str(err.value).lower()
    with pytest.raises(ValueError):
        Settings(namespace=name)


def test_settings_and_blue_green_agree_on_every_name():
    for name in ["live", "replay-2026.11_30", "v2", "a" * 64, "a" * 65, "live\n", "live:*", "-x", "", "active"]:
        try:
            Settings(namespace=name or None)
            settings_ok = True
        except ValueError:
            settings_ok = False
        try:
            validate_name(name)
            rule_ok = True
        except NamespaceError:
            rule_ok = False
        assert settings_ok == (rule_ok or not name) and rule_ok == is_valid_name(name), name


def test_reserved_names_are_the_keys_outside_any_namespace():
    """Every key keys.py makes without a namespace starts with a reserved segment."""
    from tests.unit.test_keys_contract import produced

    namespaced = {k for k in produced() if "<namespace>" in k or k.split(":")[1] == "*"}
    global_keys = [k for k in produced() if k not in namespaced]
    assert global_keys
    for key in global_keys:
        assert key.split(":")[1] in RESERVED, key
    assert keys.DEFAULT_NAMESPACE not in RESERVED
