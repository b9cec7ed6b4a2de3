"""The one table of every error code gymbox records, each with its kind, which says how a rollout is treated.

Every layer reads it: the step API's errors take their `infra` flag from it, the records layer's `EpisodeError`
its kind, the harness what it retries and masks. A new code is added here, with its kind and what it means.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """Whose doing an error is, and so what happens to the rollout it ends."""

    AGENT = "agent"  # the agent's doing: scored; the agent sees it when the episode goes on
    INFRA = "infra"  # infrastructure: retried on a fresh session, then kept on the record and masked
    REQUEST = "request"  # a wrong request, task or configuration: not retried (it would fail again), masked

    @property
    def masked(self) -> bool:
        """Whether a rollout that ended with an error of this kind is left out of learning (never scored)."""
        return self is not Kind.AGENT

    @property
    def retried(self) -> bool:
        """Whether a rollout that ended with an error of this kind is played again on a fresh session."""
        return self is Kind.INFRA


TREATMENT = {
    Kind.AGENT: "scored; the agent sees it as an observation when the episode goes on",
    Kind.INFRA: "retried on a fresh session, then kept on the record and masked (never scored)",
    Kind.REQUEST: "not retried (it would fail the same way), kept on the record and masked; the message says what "
                  "to fix",
}


@dataclass(frozen=True)
class ErrorKind:
    """One error code: its kind, and what it means."""

    code: str
    kind: Kind
    description: str


_A, _I, _R = Kind.AGENT, Kind.INFRA, Kind.REQUEST
ERROR_KINDS: dict[str, ErrorKind] = {e.code: e for e in (
    # The agent's doing.
    ErrorKind("format_error", _A, "a reply with no tool call that parses (a turn signal; the agent gets a reminder)"),
    ErrorKind("invalid_action", _A, "an action the environment cannot interpret at all"),
    # Infrastructure: the step API's (`environments/api/errors.py`).
    ErrorKind("env_error", _I, "the server failed in a way it could not type (an unexpected exception)"),
    ErrorKind("capacity", _I, "the server or runtime has no room for another session now"),
    ErrorKind("timeout", _I, "no reply within the time limit of a call"),
    ErrorKind("env_crashed", _I, "the environment's own code failed; its session was closed"),
    ErrorKind("transport", _I, "the server could not be reached, or the connection was lost"),
    ErrorKind("unknown_session", _I, "the server no longer has the episode's session (it restarted or dropped it)"),
    ErrorKind("session_expired", _I, "the server closed the episode's session after it sat idle too long"),
    ErrorKind("invalid_reply", _I, "a server's reply that does not validate (client and server versions differ?)"),
    # Infrastructure: the harness's and the reward's.
    ErrorKind("policy_error", _I, "the policy failed to generate (engine error, no token ids)"),
    ErrorKind("user_policy_error", _I, "the simulated user's policy of a τ²-bench episode failed (its endpoint down, "
              "a reply that does not parse)"),
    ErrorKind("template_not_incremental", _I, "the chat template re-renders earlier turns: tokens cannot be appended"),
    ErrorKind("worker_died", _I, "the Ray worker running the episode died"),
    ErrorKind("runtime_error", _I, "an unexpected exception from the runtime or worker running the episode (Docker's "
              "APIError starting a container, say); the record names its type"),
    ErrorKind("reward_error", _I, "a reward component failed or gave a value that is not finite (scored after the "
              "tries: masked, not retried)"),
    # A wrong request, task or configuration.
    ErrorKind("invalid_request", _R, "a request that does not match the step API schema"),
    ErrorKind("payload_too_large", _R, "a request larger than the server accepts"),
    ErrorKind("unknown_environment", _R, "no environment of that id on the server"),
    ErrorKind("episode_over", _R, "a step sent after the episode ended"),
    ErrorKind("invalid_task", _R, "a task that does not belong to the environment, or whose payload is wrong"),
)}


def kind_of(code: str, infra: bool | None = None) -> Kind:
    """The kind of `code`; a code not in the table is infrastructure when `infra` says so, else the agent's."""
    known = ERROR_KINDS.get(code)
    if known is not None:
        return known.kind
    if infra is None:
        raise KeyError(f"error code {code!r} is not in gymbox's table (environments/api/kinds.py): add it there "
                       "with its kind, or say whether it is infrastructure")
    return Kind.INFRA if infra else Kind.AGENT


def is_infra(code: str) -> bool:
    """Whether `code` is an infrastructure error (retried, then masked)."""
    return kind_of(code) is Kind.INFRA


def table_markdown() -> str:
    """The table as README shows it: kind, codes, how each is treated."""
    rows = ["| kind | codes | treatment |", "| --- | --- | --- |"]
    for kind in Kind:
        codes = ", ".join(f"`{e.code}`" for e in ERROR_KINDS.values() if e.kind is kind)
        rows.append(f"| {kind.value} | {codes} | {TREATMENT[kind]} |")
    return "\n".join(rows)
