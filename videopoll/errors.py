"""The exceptions videopoll raises, each with a stable code and an exit code.

    class                       code          exit  meaning
    VideopollError              error           1
    ├── ConfigError             config          2   missing or invalid setting
    │   └── UsageError          usage           2   a malformed argument or option
    ├── NotFound                not_found       1   a lesson or conversation nobody knows
    ├── Refused                 refused         1   not allowed (a second pending video)
    ├── Interrupted             interrupted   130
    ├── LeaseLost               lease_lost      1   another poller took the video over
    ├── ServiceError            service         1   a remote service misbehaved
    │   ├── Unreachable         unreachable     1   DNS, refused, timeout (after retries)
    │   ├── RateLimited         rate_limited    1   a wait longer than the pass affords
    │   ├── ServerError         server_error    1   5xx (after retries)
    │   ├── ProtocolError       protocol        1   an answer that breaks the contract
    │   ├── AuthError           auth            3   the service refused our credentials
    │   ├── RequestRejected     rejected        1   any other 4xx
    │   └── DiskError           disk            1   a local file could not be written (ENOSPC…)
    └── ArtifactError           artifact        1   one video's bytes cannot be used
        ├── UnsafePath          unsafe_path         permanent
        ├── TooLarge            too_large           permanent
        ├── NotVideo            not_video           permanent
        ├── ContentMismatch     mismatch            permanent after VIDEOPOLL_MAX_ATTEMPTS
        ├── ArtifactMissing     missing             permanent after VIDEOPOLL_MAX_ATTEMPTS
        └── ShortBody           short_body          transient: the body broke off

`ServiceError.transient` tells the engine to defer a row rather than fail it; every class's
docstring is its default message, so `raise Unreachable()` already reads well.
"""

from __future__ import annotations


class VideopollError(Exception):
    """videopoll failed."""

    code = "error"
    exit_code = 1
    transient = False

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(VideopollError):
    """The configuration is incomplete or invalid."""

    code = "config"
    exit_code = 2


class UsageError(ConfigError):
    """The command line is not valid."""

    code = "usage"


class NotFound(VideopollError):
    """Not found."""

    code = "not_found"


class Refused(VideopollError):
    """Refused."""

    code = "refused"


class Interrupted(VideopollError):
    """Interrupted."""

    code = "interrupted"
    exit_code = 130


class ServiceError(VideopollError):
    """A service answered in a way videopoll could not use."""

    code = "service"
    transient = True

    def __init__(
        self,
        message: str | None = None,
        *,
        service: str = "",
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.service = service
        self.status = status


class Unreachable(ServiceError):
    """The service could not be reached."""

    code = "unreachable"


class RateLimited(ServiceError):
    """The service asked us to slow down."""

    code = "rate_limited"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None,
                 service: str = "", status: int | None = None) -> None:
        super().__init__(message, service=service, status=status)
        self.retry_after = retry_after


class ServerError(ServiceError):
    """The service failed (5xx)."""

    code = "server_error"


class ProtocolError(ServiceError):
    """The service's answer broke its contract."""

    code = "protocol"


class AuthError(ServiceError):
    """The service refused our credentials."""

    code = "auth"
    exit_code = 3
    transient = False


class RequestRejected(ServiceError):
    """The service rejected the request."""

    code = "rejected"
    transient = False


class DiskError(ServiceError):
    """A local file could not be written."""

    code = "disk"


class LeaseLost(VideopollError):
    """another poller took over this video (our lease ran out)"""

    code = "lease_lost"
    transient = True


class ArtifactError(VideopollError):
    """The artifact cannot be used."""

    code = "artifact"


class UnsafePath(ArtifactError):
    """unsafe github_path"""

    code = "unsafe_path"


class TooLarge(ArtifactError):
    """artifact larger than VIDEOPOLL_MAX_BYTES"""

    code = "too_large"


class NotVideo(ArtifactError):
    """not an MP4 (no ftyp box)"""

    code = "not_video"


class ContentMismatch(ArtifactError):
    """downloaded bytes do not match GitHub's size and hash"""

    code = "mismatch"


class ArtifactMissing(ArtifactError):
    """the listing names the file, but its bytes cannot be had"""

    code = "missing"
    transient = True  # counted: after VIDEOPOLL_MAX_ATTEMPTS the video fails


class ShortBody(ArtifactError):
    """the download ended before the whole file arrived"""

    code = "short_body"
    transient = True
