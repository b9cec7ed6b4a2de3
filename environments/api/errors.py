"""Typed errors of the step API, each carried on the wire with a code."""

from __future__ import annotations

from typing import Any, ClassVar

from gymbox.environments.api.kinds import Kind, kind_of


class EnvError(Exception):
    """Base of every step-API error. Its kind (`kinds.ERROR_KINDS`, by `code`) says how a rollout it ends is
    treated: `infra` errors are retried, then masked; the others are the agent's doing or the caller's to fix."""

    code: ClassVar[str] = "env_error"
    http_status: ClassVar[int] = 500
    kind: ClassVar[Kind] = kind_of("env_error")
    infra: ClassVar[bool] = kind is Kind.INFRA
    retryable: ClassVar[bool] = infra

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The kind comes from the one table; a class with a code missing from it fails at import.
        cls.kind = kind_of(cls.code)
        cls.infra = cls.retryable = cls.kind is Kind.INFRA

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class InvalidRequest(EnvError):
    """The request is malformed: bad JSON, a schema violation, an unknown operation."""

    code = "invalid_request"
    http_status = 400


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    http_status = 413


class UnknownEnvironment(EnvError):
    code = "unknown_environment"
    http_status = 404


class UnknownSession(EnvError):
    code = "unknown_session"
    http_status = 404


class SessionExpired(UnknownSession):
    code = "session_expired"
    http_status = 410


class InvalidReply(EnvError):
    """A server's reply that does not validate as what was asked for: client and server versions differ, or the
    reply was corrupted on the way."""

    code = "invalid_reply"
    http_status = 502


class EpisodeOver(EnvError):
    """A step was sent after the episode terminated or was truncated."""

    code = "episode_over"
    http_status = 409


class InvalidTask(EnvError):
    """The task does not belong to this environment, or its payload is not what the environment expects."""

    code = "invalid_task"
    http_status = 422


class InvalidAction(EnvError):
    """The action cannot be interpreted at all (an environment normally answers with an observation instead)."""

    code = "invalid_action"
    http_status = 422


class CapacityError(EnvError):
    code = "capacity"
    http_status = 503


class StepTimeout(EnvError):
    code = "timeout"
    http_status = 504


class EnvCrashed(EnvError):
    """The environment's own code failed; the session is closed because its state is unknown."""

    code = "env_crashed"
    http_status = 500


class TransportError(EnvError):
    """The server could not be reached or the connection was lost."""

    code = "transport"
    http_status = 502


class UserPolicyError(EnvError):
    """The simulated user's policy of a conversation (a τ²-bench customer) failed: its endpoint is down or its reply
    does not parse. Infrastructure: retried on a fresh session, then masked."""

    code = "user_policy_error"
    http_status = 502


ERRORS: dict[str, type[EnvError]] = {
    cls.code: cls
    for cls in (
        EnvError, InvalidRequest, PayloadTooLarge, UnknownEnvironment, UnknownSession, SessionExpired,
        InvalidReply, EpisodeOver, InvalidTask, InvalidAction, CapacityError, StepTimeout, EnvCrashed,
        TransportError, UserPolicyError,
    )
}


def from_wire(error: dict[str, Any]) -> EnvError:
    """Rebuild the typed error a server sent; an unknown code becomes a plain `EnvError`."""
    cls = ERRORS.get(str(error.get("code")), EnvError)
    return cls(str(error.get("message", "")), **dict(error.get("detail") or {}))
