import pytest

from worker.errors import FatalError
from worker.settings import load_settings


def test_defaults_match_the_documented_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.input_topic, settings.output_topic, settings.dlq_topic, settings.group_id) == (
        "conversation-closed",
        "memory-scored",
        "conversation-closed.dlq",
        "memscore",
    )


def test_vllm_urls_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSCORE_VLLM_URLS", "http://a:8000/, http://b:8000")
    assert load_settings().vllm_urls == ["http://a:8000", "http://b:8000"]


def test_a_bad_setting_is_fatal_and_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSCORE_MAX_INFLIGHT_REQUESTS", "zero")
    with pytest.raises(FatalError, match="MEMSCORE_MAX_INFLIGHT_REQUESTS"):
        load_settings()


def test_secrets_never_appear_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSCORE_DATABASE_URL", "postgresql+asyncpg://u:hunter2@db/x")
    monkeypatch.setenv("MEMSCORE_VLLM_API_KEY", "sk-very-secret")
    settings = load_settings()
    text = repr(settings) + str(settings)
    assert "hunter2" not in text
    assert "sk-very-secret" not in text
    assert settings.api_key() == "sk-very-secret"


def test_api_key_is_read_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    key_file = Path(str(tmp_path)) / "key"
    key_file.write_text("sk-from-file\n")
    monkeypatch.setenv("MEMSCORE_VLLM_API_KEY_FILE", str(key_file))
    assert load_settings().api_key() == "sk-from-file"


def test_sasl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSCORE_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(FatalError, match="SASL"):
        load_settings()
