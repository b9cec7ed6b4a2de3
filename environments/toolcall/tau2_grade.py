"""Scoring a τ²-bench conversation with the package's own evaluators (no LLM), and the agent's system prompt.

Reward = the product of the components in the task's reward basis: DB (the agent's and the user's databases, rebuilt
by replaying the conversation's calls, hash-equal to those the gold actions make), ENV_ASSERTION (the task's
assertions hold on the final state), COMMUNICATE (each required string appears in some agent message) and ACTION
(every gold action has a matching call). Each component is also a signal (`db`, `env_assertion`, `communicate`,
`action`). An episode that did not end by the user's or the agent's stop scores 0, as in τ²-bench.
"""

from __future__ import annotations

from typing import Any

from gymbox.tasks.toolcall.tau2 import domain_module, import_tau2

# The agent's instructions and prompt layout, as τ²-bench's `LLMAgent` and `LLMSoloAgent` write them (their module
# imports litellm, so the text is kept here).
AGENT_INSTRUCTION = """You are a customer service agent that helps the user according to the <policy> provided below.
In each turn you can either:
- Send a message to the user.
- Make a tool call.
You cannot do both at the same time.

Try to be helpful and always follow the policy. Always make sure you generate valid JSON only."""
SOLO_INSTRUCTION = """You are a customer service agent that helps the user according to the <policy> provided below.
You will be provided with a ticket that contains the user's request.
You will need to plan and call the appropriate tools to solve the ticket.

You cannot communicate with the user, only make tool calls.
Stop when you consider that you have solved the ticket.
To do so, send a message containing a single tool call to the `done` tool. Do not include any other tool calls in \
this last message.

Always follow the policy. Always make sure you generate valid JSON only."""
BASES = {"DB": "db", "ENV_ASSERTION": "env_assertion", "COMMUNICATE": "communicate", "ACTION": "action",
         "NL_ASSERTION": "nl_assertion"}


def agent_system_prompt(policy: str, ticket: str | None = None) -> str:
    """The agent's system prompt: instructions and the domain policy (and, solo, the ticket)."""
    if ticket is None:
        return f"<instructions>\n{AGENT_INSTRUCTION}\n</instructions>\n<policy>\n{policy}\n</policy>"
    return (f"<instructions>\n{SOLO_INSTRUCTION}\n</instructions>\n<policy>\n{policy}\n</policy>\n"
            f"<ticket>\n{ticket}\n</ticket>")


def components(domain: str, task: Any, trajectory: list[Any], solo: bool) -> dict[str, float]:
    """Each component of the task's reward basis, as the package's evaluators score it."""
    basis = [b.value for b in task.evaluation_criteria.reward_basis]
    if "NL_ASSERTION" in basis:
        raise ValueError(f"τ² task {task.id!r} needs an LLM judge (NL_ASSERTION), which gymbox does not run yet")
    scores: dict[str, float] = {}
    if {"DB", "ENV_ASSERTION"} & set(basis):
        evaluator = import_tau2("tau2.evaluator.evaluator_env").EnvironmentEvaluator
        info = evaluator.calculate_reward(environment_constructor=domain_module(domain).get_environment, task=task,
                                          full_trajectory=trajectory, solo_mode=solo)
        scores.update({BASES[k.value]: float(v) for k, v in (info.reward_breakdown or {}).items()})
    if "COMMUNICATE" in basis:
        evaluator = import_tau2("tau2.evaluator.evaluator_communicate").CommunicateEvaluator
        scores["communicate"] = float(evaluator.calculate_reward(task=task, full_trajectory=trajectory).reward)
    if "ACTION" in basis:
        evaluator = import_tau2("tau2.evaluator.evaluator_action").ActionEvaluator
        scores["action"] = float(evaluator.calculate_reward(task=task, full_trajectory=trajectory).reward)
    return scores


def grade(domain: str, task: Any, trajectory: list[Any], solo: bool, *, finished: bool) -> dict[str, float]:
    """Signals of a finished (or cut-off) episode: each component of the reward basis, and `success`."""
    if not finished:
        return {"success": 0.0}
    scores = components(domain, task, trajectory, solo)
    reward = 1.0
    for value in scores.values():
        reward *= value
    return {**scores, "success": float(reward == 1.0)}
