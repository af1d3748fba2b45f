"""Settings: environment over .env, validation with the variable named, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from videopoll.errors import ConfigError
from videopoll.settings import from_env

FULL = {
    "OPENHANDS_API_KEY": "oh-secret-1234",
    "GITHUB_TOKEN": "ghp_secret5678",
    "VIDEOPOLL_GITHUB_REPO": "Yknld/video-artifacts",
    "SUPABASE_URL": "https://abc.supabase.co",
    "SUPABASE_SERVICE_ROLE_KEY": "sb-service-9999",
}


def test_defaults_follow_the_design() -> None:
    s = from_env({})
    assert (s.store, s.openhands_base_url, s.github_api_url) == (
        "supabase", "https://app.all-hands.dev", "https://api.github.com")
    assert (s.github_ref, s.github_dir, s.bucket) == ("main", "videos", "lesson-assets")
    assert (s.interval, s.max_generation, s.artifact_grace) == (30, 3600, 600)
    assert (s.max_bytes, s.concurrency, s.lease) == (2 * 1024**3, 4, 300)
    assert s.github_lfs_url == "https://github.com"


@pytest.mark.parametrize(("api", "lfs"), [
    ("https://api.github.com", "https://github.com"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_lfs_server_is_derived_from_the_api_url(api: str, lfs: str) -> None:
    assert from_env({"GITHUB_API_URL": api}).github_lfs_url == lfs


def test_old_variable_name_is_an_alias() -> None:
    s = from_env({"OPENHAND_API_KEY": "legacy-key"})
    assert s.openhands_api_key is not None and s.openhands_api_key.get() == "legacy-key"


def test_repr_never_shows_secrets() -> None:
    text = repr(from_env({**FULL, "GEMINI_API_KEY": "gem-abcdef"}))
    for secret in ("oh-secret-1234", "ghp_secret5678", "sb-service-9999", "gem-abcdef"):
        assert secret not in text
    assert "Yknld/video-artifacts" in text


def test_require_names_the_first_missing_variable() -> None:
    s = from_env({k: v for k, v in FULL.items() if k != "GITHUB_TOKEN"})
    with pytest.raises(ConfigError, match="GITHUB_TOKEN not configured") as info:
        s.require("store", "openhands", "github")
    assert info.value.exit_code == 2
    assert info.value.hint is not None and ".env" in info.value.hint


def test_local_store_needs_no_supabase() -> None:
    from_env({"VIDEOPOLL_STORE": "local"}).require("store")


@pytest.mark.parametrize(("name", "value", "message"), [
    ("VIDEOPOLL_STORE", "mongo", "VIDEOPOLL_STORE must be one of"),
    ("VIDEOPOLL_INTERVAL", "-5", "VIDEOPOLL_INTERVAL must be at least"),
    ("VIDEOPOLL_INTERVAL", "soon", "VIDEOPOLL_INTERVAL must be a number"),
    ("VIDEOPOLL_CONCURRENCY", "0", "VIDEOPOLL_CONCURRENCY must be at least 1"),
    ("VIDEOPOLL_MAX_BYTES", "1.5", "VIDEOPOLL_MAX_BYTES must be a whole number"),
    ("VIDEOPOLL_GITHUB_REPO", "not a repo", "VIDEOPOLL_GITHUB_REPO must be owner/name"),
    ("VIDEOPOLL_GITHUB_DIR", "../up", "VIDEOPOLL_GITHUB_DIR must be a relative folder"),
    ("SUPABASE_URL", "abc.supabase.co", "SUPABASE_URL must be an http"),
    ("OPENHANDS_AUTH", "cookie", "OPENHANDS_AUTH must be bearer or session"),
    ("VIDEOPOLL_PROMPT_FILE", "/nonexistent/prompt.txt", "VIDEOPOLL_PROMPT_FILE does not exist"),
])
def test_bad_values_are_one_line_naming_the_variable(name: str, value: str, message: str
                                                     ) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env({name: value})


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("VIDEOPOLL_INTERVAL=12\nVIDEOPOLL_BUCKET=from-file\n")
    s = from_env({"VIDEOPOLL_INTERVAL": "7"}, env_file)
    assert (s.interval, s.bucket) == (7, "from-file")


def test_a_dotenv_line_without_value_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("VIDEOPOLL_INTERVAL=12\nGITHUB_TOKEN\n")
    with pytest.raises(ConfigError, match="'GITHUB_TOKEN' has no value"):
        from_env({}, env_file)
