"""Settings from the environment (server/settings.py): the defaults, a bad value naming its
variable, the secret required outside demo mode, and the origin allow-list."""

from __future__ import annotations

import pytest

from server.settings import Settings, SettingsError, from_env


def test_settings_from_env() -> None:
    s = from_env({"LIVECART_SECRET": "s" * 32, "LIVECART_RATE_PER_S": "5",
                  "LIVECART_ALLOWED_ORIGINS": "http://a.example, http://b.example ,"})
    assert s.rate_per_s == 5.0 and s.secret == "s" * 32
    assert s.allowed_origins == ("http://a.example", "http://b.example")
    assert s.max_frame_bytes == 64 * 1024 and s.rate_burst == 40 and s.abuse_errors == 20


@pytest.mark.parametrize("env", [
    {"LIVECART_SECRET": "short"},
    {"LIVECART_RATE_PER_S": "fast"},
    {"LIVECART_FSYNC": "sometimes"},
    {"LIVECART_CURRENCY": "EURO"},
    {"LIVECART_MAX_FRAME_BYTES": "0"},
    {"LIVECART_KEY_PREFIX": "a b"},
])
def test_bad_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        from_env(env)


def test_missing_secret_is_an_error_outside_demo() -> None:
    with pytest.raises(SettingsError) as info:
        _ = Settings().signing_secret
    assert "LIVECART_SECRET" in str(info.value)
    assert Settings(demo=True).signing_secret
    assert Settings(secret="x" * 32).signing_secret == "x" * 32


def test_origin_allow_list() -> None:
    from server.edge.gate import origin_allowed

    assert origin_allowed("http://any", ())
    assert origin_allowed(None, ("http://ok",))  # non-browser clients
    assert origin_allowed("http://ok", ("http://ok",))
    assert not origin_allowed("http://evil", ("http://ok",))
    assert not origin_allowed("http://ok.evil", ("http://ok",))
    assert origin_allowed("http://x", ("*",))
