"""Errors as data: a stable ``error`` word, an HTTP status, and a message safe to show.

Every error the engine raises on purpose derives from :class:`KeyturnError`. They become HTTP
answers (``{"code", "error", "msg"}``) only at the edge, in ``engine.api``. A message never holds a
token, code, verifier, client secret or API key.

    KeyturnError
    ├── ConfigError                 engine.yaml / template problems (file, line, key path)
    ├── BadRequest                  400 invalid_request
    │   ├── ValidationFailed        400 invalid_input
    │   └── UserMismatch            400 user_mismatch
    ├── Unauthorized                401 unauthorized
    ├── Forbidden                   403 forbidden
    ├── NotFound                    404 not_found
    ├── Conflict                    409 conflict
    ├── PayloadTooLarge             413 payload_too_large
    ├── RateLimited                 429 rate_limited (retry_after seconds)
    ├── ProviderError               502 provider_error (kind: the provider's error word or a fault class)
    ├── Unavailable                 503 unavailable (retry_after seconds)
    ├── StorageError                503 storage_unavailable
    └── AuditUnavailable            503 audit_unavailable (audit.required and no sink writes)
"""

from __future__ import annotations


class KeyturnError(Exception):
    """Base class: ``error`` is a stable machine word, ``status`` the HTTP status at the edge."""

    error: str = "internal_error"
    status: int = 500

    def __init__(self, msg: str, *, error: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if error is not None:
            self.error = error

    def to_dict(self) -> dict[str, object]:
        return {"code": self.status, "error": self.error, "msg": self.msg}


class ConfigError(KeyturnError):
    """A configuration problem; ``path`` is the key path, ``file``/``line`` where it stands."""

    error = "config_error"

    def __init__(self, msg: str, *, path: str = "", file: str | None = None, line: int | None = None) -> None:
        super().__init__(msg)
        self.path = path
        self.file = file
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.msg}"


class BadRequest(KeyturnError):
    error = "invalid_request"
    status = 400


class ValidationFailed(BadRequest):
    error = "invalid_input"


class UserMismatch(BadRequest):
    error = "user_mismatch"


class Unauthorized(KeyturnError):
    error = "unauthorized"
    status = 401


class Forbidden(KeyturnError):
    error = "forbidden"
    status = 403


class NotFound(KeyturnError):
    error = "not_found"
    status = 404


class Conflict(KeyturnError):
    error = "conflict"
    status = 409


class PayloadTooLarge(KeyturnError):
    error = "payload_too_large"
    status = 413


class RateLimited(KeyturnError):
    error = "rate_limited"
    status = 429

    def __init__(self, msg: str, *, retry_after: float) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


class ProviderError(KeyturnError):
    """The provider answered with an error or not at all; ``kind`` is a bounded word for metrics."""

    error = "provider_error"
    status = 502

    def __init__(
        self, msg: str, *, kind: str, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(msg)
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


class Unavailable(KeyturnError):
    error = "unavailable"
    status = 503

    def __init__(self, msg: str, *, retry_after: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


class StorageError(Unavailable):
    error = "storage_unavailable"


class AuditUnavailable(Unavailable):
    error = "audit_unavailable"
