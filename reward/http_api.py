"""The HTTP contract of the reward service: request models, limits, errors and bearer auth.

Kept apart from the Serve deployment so that `empathy-rl score` validates JSONL lines with the very
same models (one definition of a valid item) without importing Ray.

Validation is strict on purpose: `"crisis": "false"` is a string, not a boolean, and a service that
guessed would silently score a crisis query as a non-crisis one. Unknown fields are rejected for the
same reason (a misspelt `"crissis"` must not fall back to the default). Every rejection is a 4xx JSON
body naming the field as a dotted path (`items.0.crisis`); the submitted text is never echoed back
or logged.
"""


# No `from __future__ import annotations` here: the models are built inside functions, and pydantic
# must see their limit-carrying type aliases as objects, not as names to look up later.
import dataclasses
import functools
import hmac
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from empathy_rl.config import ConfigError, RewardConfig, is_loopback_host
from reward.types import ScoreRequest

_STRICT = ConfigDict(strict=True, extra="forbid")
_SIZE_ERRORS = frozenset({"too_long", "string_too_long"})


@dataclass(frozen=True)
class Limits:
    """Request limits of the HTTP face (`reward.max_*`); `None` means unbounded (file scoring)."""

    max_items: Optional[int] = None
    max_text_chars: Optional[int] = None
    max_references: Optional[int] = None
    max_request_bytes: Optional[int] = None

    @classmethod
    def from_config(cls, cfg: RewardConfig) -> "Limits":
        return cls(cfg.max_items_per_request, cfg.max_text_chars, cfg.max_references, cfg.max_request_bytes)


@functools.lru_cache(maxsize=16)
def item_model(max_text_chars: Optional[int] = None, max_references: Optional[int] = None) -> type[BaseModel]:
    """The pydantic model of one candidate, with the text and reference limits built in."""
    Text = Annotated[str, StringConstraints(max_length=max_text_chars)]

    class ScoreItem(BaseModel):
        model_config = _STRICT
        query: Text
        response: Text
        crisis: bool = False
        language: Literal["zh", "en", "auto"] = "auto"
        references: Annotated[list[Text], Field(max_length=max_references)] = []

        def to_request(self) -> ScoreRequest:
            return ScoreRequest(self.query, self.response, self.crisis, self.language, tuple(self.references))

    return ScoreItem


@functools.lru_cache(maxsize=16)
def body_model(limits: Limits) -> type[BaseModel]:
    """The pydantic model of a `POST /score` body: `{"items": [ScoreItem, ...]}`."""
    Item = item_model(limits.max_text_chars, limits.max_references)

    class ScoreBody(BaseModel):
        model_config = _STRICT
        items: Annotated[list[Item], Field(max_length=limits.max_items)]  # type: ignore[valid-type]

    return ScoreBody


@functools.lru_cache(maxsize=4)
def line_model(max_text_chars: Optional[int] = None) -> type[BaseModel]:
    """A JSONL line for `empathy-rl score`: a ScoreItem plus an optional `id` echoed to the output."""
    Item = item_model(max_text_chars, None)

    class ScoreLine(Item):  # type: ignore[valid-type, misc]
        id: Optional[Union[str, int]] = None

    return ScoreLine


@dataclass
class ApiError(Exception):
    """A rejected request: HTTP status, machine-readable code, the offending field and a message."""

    status: int
    code: str
    message: str
    field: str = "body"
    errors: list[dict[str, str]] = dataclasses.field(default_factory=list)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "field": self.field, "message": self.message, "errors": self.errors}}

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.field}: {self.message}"


def field_path(loc: tuple[Union[str, int], ...]) -> str:
    """pydantic's location tuple as a dotted path (`('items', 0, 'crisis')` -> `items.0.crisis`)."""
    return ".".join(str(part) for part in loc) or "body"


def error_from_validation(err: ValidationError) -> ApiError:
    """400 for bytes that are not JSON (or not UTF-8), 413 when only size limits were broken, else 422."""
    details = err.errors(include_input=False, include_url=False, include_context=False)
    errors = [{"field": field_path(d["loc"]), "code": d["type"], "message": d["msg"]} for d in details]
    if any(d["type"] == "json_invalid" for d in details):
        first = next(e for e in errors if e["code"] == "json_invalid")
        return ApiError(400, "invalid_json", first["message"], "body", errors)
    size_only = all(d["type"] in _SIZE_ERRORS for d in details)
    first = errors[0]
    if size_only:
        return ApiError(413, "too_large", first["message"], first["field"], errors)
    first = next(e for e in errors if e["code"] not in _SIZE_ERRORS)
    return ApiError(422, "invalid_field", first["message"], first["field"], errors)


def parse_score_body(raw: bytes, limits: Limits) -> list[ScoreRequest]:
    """Validate a `POST /score` body (raw bytes: invalid UTF-8 and bad JSON are caught here too)."""
    if limits.max_request_bytes is not None and len(raw) > limits.max_request_bytes:
        raise too_large_body(limits.max_request_bytes)
    try:
        body = body_model(limits).model_validate_json(raw)
    except ValidationError as err:
        raise error_from_validation(err) from None
    return [item.to_request() for item in body.items]  # type: ignore[attr-defined]


def too_large_body(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"request body exceeds reward.max_request_bytes={limit}", "body")


# ---------------------------------------------------------------------------------------- auth


class Secret:
    """A bearer token that never shows up in a repr, a log line or Serve's deployment listing."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(self._value.encode(), presented.encode())

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    def __reduce__(self):  # pickled into the replica as an init argument, unchanged
        return (Secret, (self._value,))


def auth_required(cfg: RewardConfig) -> bool:
    """Auth is on when `reward.require_token` is set or the HTTP face binds beyond loopback."""
    return cfg.require_token or not is_loopback_host(cfg.http_host)


def token_from_env(cfg: RewardConfig) -> Optional[Secret]:
    value = os.environ.get(cfg.auth_token_env, "").strip() if cfg.auth_token_env else ""
    return Secret(value) if value else None


def server_token(cfg: RewardConfig) -> Optional[Secret]:
    """The token the HTTP face will demand, or None when auth is off.

    Refuses to go on (a `ConfigError` naming the keys) when auth is required and the variable named
    by `reward.auth_token_env` is empty: an open scoring endpoint beyond loopback is never the default.
    """
    if not auth_required(cfg):
        return None
    token = token_from_env(cfg)
    if token is None:
        why = "reward.require_token=true" if cfg.require_token else f"reward.http_host={cfg.http_host!r} is not loopback"
        raise ConfigError(
            f"{why}, so the reward service needs a bearer token: export it in ${cfg.auth_token_env} "
            "(the variable named by reward.auth_token_env), or bind reward.http_host=127.0.0.1"
        )
    return token


def check_bearer(authorization: Optional[str], token: Optional[Secret]) -> None:
    """Raise a 401 `ApiError` unless `Authorization: Bearer <token>` matches (no-op when auth is off)."""
    if token is None:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented or not token.matches(presented.strip()):
        message = "missing bearer token" if not authorization else "invalid bearer token"
        raise ApiError(401, "unauthorized", message, "Authorization", headers={"WWW-Authenticate": "Bearer"})
