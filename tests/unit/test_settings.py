"""Settings: environment over .env, validation with the variable named, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from videopoll.errors import ConfigError
from videopoll.model import Service
from videopoll.services.pacing import CLOUD_RATE, SELF_HOSTED_RATE, UNLIMITED, Limit, Rate
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
    assert (s.max_bytes, s.concurrency, s.lease) == (2 * 1024**3, 8, 300)
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
        s.require(Service.STORE, Service.OPENHANDS, Service.GITHUB)
    assert info.value.exit_code == 2
    assert info.value.hint is not None and ".env" in info.value.hint


def test_local_store_needs_no_supabase() -> None:
    from_env({"VIDEOPOLL_STORE": "local"}).require(Service.STORE)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("VIDEOPOLL_STORE", "mongo", "VIDEOPOLL_STORE must be one of"),
    ("VIDEOPOLL_INTERVAL", "-5", "VIDEOPOLL_INTERVAL must be at least"),
    ("VIDEOPOLL_INTERVAL", "soon", "VIDEOPOLL_INTERVAL must be seconds"),
    ("VIDEOPOLL_CONCURRENCY", "0", "VIDEOPOLL_CONCURRENCY must be at least 1"),
    ("VIDEOPOLL_MAX_BYTES", "1.5", "VIDEOPOLL_MAX_BYTES must be bytes"),
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
    with pytest.raises(ConfigError, match="line 2: GITHUB_TOKEN has no value"):
        from_env({}, env_file)


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("VIDEOPOLL_INTERVAL", "5m", 300.0), ("VIDEOPOLL_INTERVAL", "90s", 90.0),
    ("VIDEOPOLL_MAX_GENERATION", "1h30m", 5400.0), ("VIDEOPOLL_ARTIFACT_GRACE", "600", 600.0),
    ("VIDEOPOLL_TIMEOUT", "2.5", 2.5), ("VIDEOPOLL_LEASE", "2d", 172800.0),
    ("VIDEOPOLL_MAX_BYTES", "2GB", 2_000_000_000), ("VIDEOPOLL_MAX_BYTES", "2GiB", 2 * 1024**3),
    ("VIDEOPOLL_MAX_BYTES", "500M", 500 * 1024**2), ("VIDEOPOLL_MAX_BYTES", "1048576", 1048576),
])
def test_human_units_are_understood(name: str, raw: str, value: float) -> None:
    """Durations and sizes as people type them: 5m, 1h30m, 2GB, 2GiB, 500M."""
    field = {"VIDEOPOLL_INTERVAL": "interval", "VIDEOPOLL_MAX_GENERATION": "max_generation",
             "VIDEOPOLL_ARTIFACT_GRACE": "artifact_grace", "VIDEOPOLL_TIMEOUT": "timeout",
             "VIDEOPOLL_LEASE": "lease", "VIDEOPOLL_MAX_BYTES": "max_bytes"}[name]
    assert getattr(from_env({name: raw}), field) == value


@pytest.mark.parametrize(("name", "raw", "words"), [
    ("VIDEOPOLL_INTERVAL", "five minutes", "seconds, or with a unit: 90s, 5m"),
    ("VIDEOPOLL_MAX_BYTES", "2 gigs", "bytes, or with a unit: 500MB, 2GiB"),
    ("VIDEOPOLL_CONCURRENCY", "4.5", "a whole number"),
    ("VIDEOPOLL_LEASE", "0", "at least 1"),
])
def test_a_bad_value_names_the_variable_and_the_expected_form(name: str, raw: str,
                                                             words: str) -> None:
    """Each kind of value says what it expects, not one "seconds/bytes" for all."""
    with pytest.raises(ConfigError) as info:
        from_env({name: raw})
    assert name in info.value.message and words in info.value.message
    assert ("bytes" in info.value.message) == (name == "VIDEOPOLL_MAX_BYTES")


def test_a_corrupt_env_line_is_one_error_naming_the_line(tmp_path: Path,
                                                        capfd: pytest.CaptureFixture[str]
                                                        ) -> None:
    """python-dotenv would warn (twice, once per reader) and skip the line; a skipped line
    may be the key the user meant to set, so it is a configuration error naming the line —
    never quoting it (it may hold a secret)."""
    env_file = tmp_path / "app.env"
    env_file.write_text("GITHUB_TOKEN=ghp_x\n# a comment\n\nthis is not ok secret=xyz\n")
    with pytest.raises(ConfigError) as info:
        from_env({"VIDEOPOLL_ENV_FILE": str(env_file)})
    assert info.value.message == f"{env_file}, line 4: not a NAME=value line"
    assert "xyz" not in info.value.message + (info.value.hint or "")
    assert capfd.readouterr().err == ""  # python-dotenv's own warning is not printed


def test_a_named_env_file_that_is_missing_or_a_folder_is_an_error(tmp_path: Path) -> None:
    """VIDEOPOLL_ENV_FILE is a promise: a typo must not silently mean "no settings"."""
    with pytest.raises(ConfigError, match="does not exist"):
        from_env({"VIDEOPOLL_ENV_FILE": str(tmp_path / "typo.env")})
    with pytest.raises(ConfigError, match="is a directory"):
        from_env({"VIDEOPOLL_ENV_FILE": str(tmp_path)})
    assert from_env({"VIDEOPOLL_ENV_FILE": "/dev/null"}).store == "supabase"
    assert from_env({}).store == "supabase"  # ./.env itself is optional


def test_a_prompt_file_that_is_a_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        from_env({"VIDEOPOLL_PROMPT_FILE": str(tmp_path)})


@pytest.mark.parametrize(("raw", "rate"), [
    ("100/min", Rate(Limit(100, 60.0))),
    ("10/s", Rate(None, Limit(10, 1.0))),
    ("100/min, 10/s", CLOUD_RATE), ("10/second; 100/minute", CLOUD_RATE),
    (" 5 / sec ,6000/h ", Rate(Limit(6000, 3600.0), Limit(5, 1.0))),
    ("0", UNLIMITED), ("off", UNLIMITED), ("OFF", UNLIMITED), ("none", UNLIMITED),
])
def test_the_openhands_rate_is_read(raw: str, rate: Rate) -> None:
    """A per-minute (or per-hour) budget, a per-second cap, both, or none; OpenHands' own
    spelling ("10/second; 100/minute") too."""
    assert from_env({"VIDEOPOLL_OPENHANDS_RATE": raw}).openhands_rate == rate


@pytest.mark.parametrize("raw", ["100", "fast", "100/min,200/min", "10/s;20/s", "0/min",
                                 "-1/s", "10/day", "100/min 10/s", "1e3/min", "/min"])
def test_a_bad_openhands_rate_is_one_line_with_the_form(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env({"VIDEOPOLL_OPENHANDS_RATE": raw})
    message = info.value.message
    assert message.startswith("VIDEOPOLL_OPENHANDS_RATE must be N/min, N/s") and "\n" not in message
    assert repr(raw) in message


@pytest.mark.parametrize(("env", "rate"), [
    ({}, CLOUD_RATE),  # a bearer key: OpenHands Cloud's 100 a minute and 10 a second
    ({"OPENHANDS_AUTH": "session"}, SELF_HOSTED_RATE),  # the open-source server: 10 a second
    ({"OPENHANDS_AUTH": "session", "VIDEOPOLL_OPENHANDS_RATE": "30/min"}, Rate(Limit(30, 60))),
    ({"VIDEOPOLL_OPENHANDS_RATE": "  "}, CLOUD_RATE),
])
def test_the_default_rate_follows_the_server_the_key_is_for(env: dict[str, str],
                                                            rate: Rate) -> None:
    assert from_env(env).openhands_rate == rate


def test_a_rate_prints_as_it_is_written() -> None:
    assert [str(r) for r in (CLOUD_RATE, SELF_HOSTED_RATE, UNLIMITED)] == [
        "100/min, 10/s", "10/s", "off"]
