"""One frozen Settings from the environment, then `.env`, then command-line flags.

Secrets are kept in `Secret` wrappers so that printing a Settings (or a traceback's locals)
never shows them; `require()` names the first missing variable before any network call.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .model import Service
from .services.pacing import CLOUD_RATE, RATE_FORM, SELF_HOSTED_RATE, Rate, parse_rate


class Secret:
    """A string that never prints."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Every variable that holds a credential, and the service that checks it: Settings keeps their
# values in `Secret`s, the output layer scrubs them (`secret_values`) from everything that
# leaves the process, and a missing or refused credential is named by its variable (the first
# of a service's names is the one documented; OPENHAND_API_KEY is the original system's).
SECRET_ENV: Mapping[str, Service | None] = {
    "OPENHANDS_API_KEY": Service.OPENHANDS,
    "OPENHAND_API_KEY": Service.OPENHANDS,
    "GITHUB_TOKEN": Service.GITHUB,
    "SUPABASE_SERVICE_ROLE_KEY": Service.STORE,
    "GEMINI_API_KEY": None,  # handed to the agent, never checked by videopoll
}


def credential_names(service: Service) -> list[str]:
    """The variables that may hold `service`'s credential, the documented one first."""
    return [name for name, owner in SECRET_ENV.items() if owner == service]


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The credential values in `env` (the process environment, a `.env`), for scrubbing."""
    return scrub_order((env.get(name) or "").strip() for name in SECRET_ENV)


def scrub_order(values: Iterable[str]) -> list[str]:
    """Longest first, so a secret containing a shorter one is replaced whole; values under 4
    characters would scrub ordinary text."""
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
STORES = ("supabase", "local")


def _default_lfs(api_url: str) -> str:
    url = api_url.rstrip("/")
    if url == "https://api.github.com":
        return "https://github.com"
    if url.endswith("/api/v3"):
        return url[: -len("/api/v3")]
    return url


@dataclass(frozen=True)
class Settings:
    store: str = "supabase"
    home: Path = Path(".videopoll")
    openhands_api_key: Secret | None = None
    openhands_base_url: str = "https://app.all-hands.dev"
    openhands_auth: str = "bearer"
    openhands_rate: Rate = CLOUD_RATE
    github_token: Secret | None = None
    github_api_url: str = "https://api.github.com"
    github_lfs_url: str = "https://github.com"
    github_repo: str | None = None
    github_ref: str = "main"
    github_dir: str = "videos"
    supabase_url: str | None = None
    supabase_key: Secret | None = None
    bucket: str = "lesson-assets"
    interval: float = 30.0
    max_generation: float = 3600.0
    artifact_grace: float = 600.0
    max_bytes: int = 2 * 1024**3
    # GitHub downloads in flight at once. GitHub's secondary limits: at most 100 concurrent
    # requests (REST and GraphQL together) and 900 points a minute for REST (a GET is 1).
    # 8 per poller leaves room for a dozen pollers on one token; the per-minute points
    # depend on how many videos a pass moves, not on how many move at once.
    concurrency: int = 8
    lease: float = 300.0
    max_attempts: int = 3
    default_user_id: str | None = None
    gemini_api_key: Secret | None = None
    prompt_file: Path | None = None
    timeout: float = 30.0
    ping_url: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if f.repr)
        return f"Settings({shown})"

    def secrets(self) -> list[str]:
        """The credentials this Settings holds, for the output layer's scrubber."""
        held = (getattr(self, f.name) for f in fields(self))
        return scrub_order(v.get() for v in held if isinstance(v, Secret))

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def require(self, *services: Service) -> None:
        """Raise ConfigError naming the first missing variable of the given services."""
        missing: list[str] = []
        for service in services:
            missing.extend(self.missing(service))
        if missing:
            name = missing[0]
            where = self.sources.get("env_file") or ".env"
            raise ConfigError(f"{name} not configured",
                              hint=f"set {name} in the environment or in {where}")

    def missing(self, service: Service) -> list[str]:
        key = credential_names(service)[:1]
        if service == Service.OPENHANDS:
            return [] if self.openhands_api_key else key
        if service == Service.GITHUB:
            out = [] if self.github_token else key
            return out + ([] if self.github_repo else ["VIDEOPOLL_GITHUB_REPO"])
        if service == Service.STORE and self.store == "supabase":
            out = [] if self.supabase_url else ["SUPABASE_URL"]
            return out + ([] if self.supabase_key else key)
        return []

    def credential_source(self, service: Service) -> tuple[str, str] | None:
        """(variable, where it was set) of the credential `service` was sent, or None when
        the service takes none here (the local store)."""
        if service == Service.STORE and self.store != "supabase":
            return None
        names = credential_names(service)
        if not names:
            return None
        name = self.sources.get(f"credential:{service}") or names[0]
        where = self.sources.get("env_file", ".env") if \
            self.sources.get(f"from_file:{name}") else "the environment"
        return name, where

    def refused_hint(self, service: Service | str) -> str | None:
        """The hint of a refused credential: which variable to fix, and where it was set."""
        try:
            source = self.credential_source(Service(service))
        except ValueError:  # not one of our services (an error raised without one)
            return None
        if source is None:
            return None
        name, where = source
        also = {Service.OPENHANDS: "; or OPENHANDS_BASE_URL names another server",
                Service.STORE: "; it must be the service_role key of SUPABASE_URL's project"}
        return f"check {name} (set in {where}): {service} refused it" + \
            also.get(Service(service), "")


_PLAIN = re.compile(r"-?\d+(?:\.\d+)?")  # negative: refused by the minimum, by name
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)", re.IGNORECASE)
# KB, MB, GB are powers of 1000; KiB, MiB, GiB and the bare K, M, G (as `ls -h` and docker
# print them) are powers of 1024.
_UNITS = {"": 1, "b": 1, **{f"{p}b": 1000 ** (i + 1) for i, p in enumerate("kmgt")},
          **{f"{p}ib": 1024 ** (i + 1) for i, p in enumerate("kmgt")},
          **{p: 1024 ** (i + 1) for i, p in enumerate("kmgt")}}
DURATION_FORM = "seconds, or with a unit: 90s, 5m, 1h30m, 2d"
SIZE_FORM = "bytes, or with a unit: 500MB, 2GiB, 2G"


def parse_duration(text: str) -> float:
    """Seconds from `30`, `2.5`, `90s`, `5m`, `1h30m`, `250ms`; ValueError otherwise."""
    raw = text.strip()
    if _PLAIN.fullmatch(raw):
        return float(raw)
    pieces = _DURATION.findall(raw)
    if not pieces or _DURATION.sub("", raw).strip():
        raise ValueError(raw)
    return sum(float(n) * _SECONDS[u.lower()] for n, u in pieces)


def parse_size(text: str) -> int:
    """Bytes from `1048576`, `500MB`, `2GiB`, `2G`; ValueError otherwise."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or match[2].lower() not in _UNITS or (not match[2] and "." in match[1]):
        raise ValueError(text)  # a fraction of a byte is no size
    return int(float(match[1]) * _UNITS[match[2].lower()])


def _setting(env: Mapping[str, str], name: str, default: float, parse: Callable[[str], Any],
             form: str, minimum: float) -> Any:
    """One numeric setting: parsed, checked against its minimum, the variable named."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {form}; got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}; got {raw!r}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    return float(_setting(env, name, default, parse_duration, DURATION_FORM, minimum))


def _count(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    return int(_setting(env, name, default, int, "a whole number", minimum))


def _url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = (env.get(name) or "").strip() or default
    if raw is None:
        return None
    if not re.match(r"https?://[^\s/]+", raw):
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _rate(env: Mapping[str, str], auth: str) -> Rate:
    """VIDEOPOLL_OPENHANDS_RATE. Unset: the limiter of the server the key is for. A bearer key
    is OpenHands Cloud's (or an Enterprise install's, the same server): 10 a second and 100 a
    minute per user. A session key is the open-source server's, whose limiter allows 10 a
    second per client and has no per-minute budget."""
    raw = (env.get("VIDEOPOLL_OPENHANDS_RATE") or "").strip()
    if not raw:
        return CLOUD_RATE if auth == "bearer" else SELF_HOSTED_RATE
    try:
        return parse_rate(raw)
    except ValueError:
        raise ConfigError(f"VIDEOPOLL_OPENHANDS_RATE must be {RATE_FORM}; got {raw!r}") from None


def _secret(env: Mapping[str, str], *names: str) -> Secret | None:
    for name in names:
        value = (env.get(name) or "").strip()
        if value:
            return Secret(value)
    return None


def env_file_path(environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The `.env` file to read and whether it was asked for by name (VIDEOPOLL_ENV_FILE)."""
    named = (environ.get("VIDEOPOLL_ENV_FILE") or "").strip()
    return (Path(named), True) if named else (Path(".env"), False)


def read_env_file(path: Path, *, strict: bool = True) -> dict[str, str]:
    """A `.env` file's variables, as python-dotenv reads them (interpolation included).

    Strict: a line that is not `NAME=value` is a ConfigError naming the file and the line —
    its content is never shown, it may hold a secret — instead of python-dotenv's warning
    and a silently skipped line. Not strict (the scrubber's early look): what parses."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        if strict:
            raise ConfigError(f"{path} is not UTF-8 text") from None
        return {}
    except OSError as exc:
        if strict:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        return {}
    if not text.strip():  # VIDEOPOLL_ENV_FILE=/dev/null, say: nothing to parse
        return {}
    from dotenv import dotenv_values  # only where a .env file has something in it
    from dotenv.parser import parse_stream

    start = 1  # python-dotenv's own count drifts after blank lines: count them here
    for binding in parse_stream(io.StringIO(text)):
        chunk = binding.original.string  # blank lines, then the statement
        line = start + len(chunk) - len(chunk.lstrip("\n"))
        start += chunk.count("\n")
        if binding.error and strict:
            raise ConfigError(f"{path}, line {line}: not a NAME=value line",
                              hint=f"fix or remove line {line} of {path}")
        if not binding.error and binding.key and binding.value is None and strict:
            raise ConfigError(f"{path}, line {line}: {binding.key} has no value",
                              hint=f"write {binding.key}=… or remove the line")
    if not strict:
        return {b.key: b.value for b in parse_stream(io.StringIO(text))
                if not b.error and b.key and b.value is not None}
    values = dotenv_values(stream=io.StringIO(text))
    return {k: v for k, v in values.items() if v is not None}


def load_env(environ: Mapping[str, str] | None = None,
             env_file: Path | None = None) -> dict[str, str]:
    """The process environment over the `.env` file (the environment wins, like dotenv).
    A file named by VIDEOPOLL_ENV_FILE must exist; `./.env` is optional."""
    environ = dict(os.environ if environ is None else environ)
    path, named = (env_file, True) if env_file else env_file_path(environ)
    merged: dict[str, str] = {}
    if path.is_dir():
        raise ConfigError(f"VIDEOPOLL_ENV_FILE is a directory: {path}" if named
                          else f"{path} is a directory, not an env file")
    if path.exists():
        from_file = read_env_file(path)
        merged.update(from_file)
        merged["__env_file__"] = str(path)
        # Which credentials the file (not the environment) supplies: a refusal names where.
        merged["__from_file__"] = " ".join(n for n in SECRET_ENV
                                           if n in from_file and n not in environ)
    elif named:
        raise ConfigError(f"VIDEOPOLL_ENV_FILE names a file that does not exist: {path}",
                          hint="create it, or unset VIDEOPOLL_ENV_FILE to read ./.env")
    merged.update(environ)
    return merged


def from_env(environ: Mapping[str, str] | None = None, env_file: Path | None = None) -> Settings:
    """Settings from the environment and `.env`; invalid values raise ConfigError."""
    env = load_env(environ, env_file)
    store = (env.get("VIDEOPOLL_STORE") or "supabase").strip().lower()
    if store not in STORES:
        raise ConfigError(f"VIDEOPOLL_STORE must be one of {', '.join(STORES)}, got {store!r}")
    auth = (env.get("OPENHANDS_AUTH") or "bearer").strip().lower()
    if auth not in ("bearer", "session"):
        raise ConfigError(f"OPENHANDS_AUTH must be bearer or session, got {auth!r}")
    repo = (env.get("VIDEOPOLL_GITHUB_REPO") or "").strip() or None
    if repo is not None and not _REPO.fullmatch(repo):
        raise ConfigError(f"VIDEOPOLL_GITHUB_REPO must be owner/name, got {repo!r}")
    github_dir = (env.get("VIDEOPOLL_GITHUB_DIR") or "videos").strip().strip("/")
    if not github_dir or ".." in github_dir.split("/") or not github_dir.isascii():
        raise ConfigError(f"VIDEOPOLL_GITHUB_DIR must be a relative folder, got {github_dir!r}")
    api_url = _url(env, "GITHUB_API_URL", "https://api.github.com") or ""
    prompt = (env.get("VIDEOPOLL_PROMPT_FILE") or "").strip()
    if prompt and Path(prompt).is_dir():
        raise ConfigError(f"VIDEOPOLL_PROMPT_FILE is a directory, not a file: {prompt}")
    if prompt and not Path(prompt).is_file():
        raise ConfigError(f"VIDEOPOLL_PROMPT_FILE does not exist: {prompt}")
    sources = {"env_file": env["__env_file__"]} if "__env_file__" in env else {}
    sources.update({f"from_file:{name}": "1" for name in env.get("__from_file__", "").split()})
    for service in Service:  # which of a service's names held its credential
        used = next((n for n in credential_names(service) if (env.get(n) or "").strip()), None)
        if used:
            sources[f"credential:{service}"] = used
    return Settings(
        store=store,
        home=Path(env.get("VIDEOPOLL_HOME") or ".videopoll"),
        openhands_api_key=_secret(env, *credential_names(Service.OPENHANDS)),
        openhands_base_url=_url(env, "OPENHANDS_BASE_URL", "https://app.all-hands.dev") or "",
        openhands_auth=auth,
        openhands_rate=_rate(env, auth),
        github_token=_secret(env, *credential_names(Service.GITHUB)),
        github_api_url=api_url,
        github_lfs_url=_url(env, "VIDEOPOLL_GITHUB_LFS_URL", _default_lfs(api_url)) or "",
        github_repo=repo,
        github_ref=(env.get("VIDEOPOLL_GITHUB_REF") or "main").strip(),
        github_dir=github_dir,
        supabase_url=_url(env, "SUPABASE_URL", None),
        supabase_key=_secret(env, *credential_names(Service.STORE)),
        bucket=(env.get("VIDEOPOLL_BUCKET") or "lesson-assets").strip(),
        interval=_seconds(env, "VIDEOPOLL_INTERVAL", 30, minimum=0.01),
        max_generation=_seconds(env, "VIDEOPOLL_MAX_GENERATION", 3600),
        artifact_grace=_seconds(env, "VIDEOPOLL_ARTIFACT_GRACE", 600),
        max_bytes=int(_setting(env, "VIDEOPOLL_MAX_BYTES", 2 * 1024**3, parse_size, SIZE_FORM,
                               1)),
        concurrency=_count(env, "VIDEOPOLL_CONCURRENCY", Settings.concurrency),
        lease=_seconds(env, "VIDEOPOLL_LEASE", 300, minimum=1),
        max_attempts=_count(env, "VIDEOPOLL_MAX_ATTEMPTS", 3),
        default_user_id=(env.get("DEFAULT_USER_ID") or "").strip() or None,
        gemini_api_key=_secret(env, "GEMINI_API_KEY"),
        prompt_file=Path(prompt) if prompt else None,
        timeout=_seconds(env, "VIDEOPOLL_TIMEOUT", 30, minimum=0.1),
        ping_url=_url(env, "VIDEOPOLL_PING_URL", None),
        sources=sources,
    )
