"""The swe environment with real package containers: gold patches resolve, nothing else does, and the grader
holds against an agent that tampers with tests, configuration, processes and time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from gymbox.environments.api import StepResult
from gymbox.environments.api.errors import TransportError
from gymbox.environments.swe.env import SweEnv
from gymbox.harness.swe_validate import call, play
from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.swe.packages import PACKAGES

pytestmark = [pytest.mark.container, pytest.mark.slow]


def sampled(package: str) -> TaskSpec:
    """The package's task with the fewest tests to run (the quickest to grade)."""
    tasks = [t for t in load_suite("swe").tasks if t.category == package]
    return min(tasks, key=lambda t: (len(t.payload["fail_to_pass"]) + len(t.payload["pass_to_pass"]), t.id))


def with_payload(task: TaskSpec, **changes: object) -> TaskSpec:
    return task.model_copy(update={"payload": {**task.payload, **changes}})


def text(result: StepResult) -> str:
    return "\n".join(str(m.content) for m in result.observation.messages)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_gold_patch_resolves_and_empty_or_wrong_patches_do_not(package: str, swe_images: object) -> None:
    task = sampled(package)
    unrelated = call("bash", command=f"sed -i '1i # an unrelated change' {task.payload['path']}")
    with ThreadPoolExecutor(3) as pool:  # three episodes, three containers, at once
        gold_run = pool.submit(play, task, task.payload["gold_patch"])
        empty_run = pool.submit(play, task, None)
        wrong_run = pool.submit(play, task, None, 0, [unrelated])
        (gold, applied), (empty, _), (wrong, _) = gold_run.result(), empty_run.result(), wrong_run.result()
    assert applied is not None and "[exit code" not in text(applied)
    assert gold["resolved"] == 1.0 and gold["outcome_level"] == 3.0 and gold["success"] == 1.0
    assert gold["f2p_passed"] == 1.0 and gold["p2p_broken"] == 0.0 and gold["patch_nonempty"] == 1.0
    assert empty["resolved"] == 0.0 and empty["outcome_level"] == 1.0 and empty["patch_nonempty"] == 0.0
    assert empty["f2p_passed"] < 1.0
    assert wrong["resolved"] == 0.0 and wrong["outcome_level"] == 2.0 and wrong["patch_nonempty"] == 1.0


def test_the_tests_are_hidden_and_history_does_not_show_the_fix(swe_images: object) -> None:
    task = sampled("parse")
    removed = [line[1:] for line in task.payload["gold_patch"].splitlines()
               if line.startswith("-") and not line.startswith("---")]
    env = SweEnv()
    try:
        env.reset(task, 0)
        listing = text(env.step(call("bash", command="ls; git log --oneline | wc -l; git status --short | wc -l")))
        assert "tests" not in listing.split() and "parse" in listing.split()
        assert listing.split()[-2:] == ["1", "0"]  # one commit, nothing changed yet
        history = text(env.step(call("bash", command="git log -p --all | head -c 400000")))
        assert all(line.strip() not in history for line in removed if line.strip())
        shown = text(env.step(call("view", path=task.payload["path"], view_range=[1, 3])))
        assert shown.splitlines()[0].strip().startswith("1\t")
    finally:
        env.close()


FORCE_PASS = """import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    report.outcome, report.longrepr = "passed", None
"""


EVIL_FILTER = """#!/bin/sh
loop='while true; do mkdir -p /repo/tests; cp /home/agent/force.py /repo/tests/conftest.py; sleep 0.05; done'
(nohup bash -c "$loop" >/dev/null 2>&1 &)
cat
"""


def test_tampering_with_tests_config_and_processes_does_not_reach_the_grader(swe_images: object) -> None:
    task = sampled("parse")
    tamper = (
        "mkdir -p tests && printf '%s' \"$FORCE\" > tests/conftest.py && cp tests/conftest.py conftest.py"
        " && cp tests/conftest.py parse/conftest.py && printf '[pytest]\\naddopts = --co\\n' > pytest.ini"
        " && printf 'import sys; sys.exit(0)\\n' > pytest.py"
        " && mkdir -p ~/.local/lib/python3.11/site-packages"
        " && printf 'import os; os._exit(0)\\n' > ~/.local/lib/python3.11/site-packages/usercustomize.py"
        " && (nohup bash -c 'while true; do cp tests/conftest.py conftest.py 2>/dev/null; sleep 0.2; done'"
        " >/dev/null 2>&1 &) && echo tampered")
    env = SweEnv()
    try:
        env.reset(task, 0)
        out = text(env.step(call("bash", command=f"FORCE='{FORCE_PASS}'; {tamper}")))
        assert "tampered" in out
        denied = text(env.step(call("bash", command="echo x >> /opt/tests/bin/pytest")))
        assert "Permission denied" in denied
        # A git filter: `git add`, when the grader reads the patch, would start a loop writing the conftest.
        env.step(call("create", path="/home/agent/force.py", file_text=FORCE_PASS))
        env.step(call("create", path="/home/agent/evil.sh", file_text=EVIL_FILTER))
        armed = text(env.step(call("bash", command="chmod +x /home/agent/evil.sh && git config filter.evil.clean "
                                   "/home/agent/evil.sh && echo '* filter=evil' > .gitattributes && echo armed")))
        assert "armed" in armed
        submitted = env.step(call("submit"))
        signals = submitted.signals
        assert signals["resolved"] == 0.0 and signals["f2p_passed"] < 1.0
        assert submitted.info["failing_count"] >= 1 and "conftest.py" in submitted.info["patch"]
    finally:
        env.close()

    # The other way round: a correct fix still resolves when the agent wrecks the tests and the git history, and
    # leaves a saboteur running.
    env = SweEnv()
    try:
        env.reset(task, 0)
        env.step(call("create", path="/home/agent/fix.patch", file_text=task.payload["gold_patch"]))
        wreck = ("git apply /home/agent/fix.patch && rm -rf .git tests && mkdir tests"
                 " && printf 'raise SystemExit(3)\\n' > tests/conftest.py"
                 " && (nohup bash -c 'while true; do rm -rf /repo/tests; sleep 0.1; done' >/dev/null 2>&1 &)"
                 " && echo wrecked")
        assert "wrecked" in text(env.step(call("bash", command=wreck)))
        signals = env.step(call("submit")).signals
        assert signals["resolved"] == 1.0 and signals["outcome_level"] == 3.0 and signals["patch_nonempty"] == 1.0
    finally:
        env.close()


def test_endless_commands_and_endless_tests_are_cut_off(swe_images: object) -> None:
    task = with_payload(sampled("parse"), command_seconds=3, grade_seconds=20)
    env = SweEnv()
    try:
        env.reset(task, 0)
        looped = text(env.step(call("bash", command="while true; do :; done")))
        assert "time limit of 3 s" in looped
        # A package that never finishes importing: the hidden tests hang, grading stops at its own limit.
        env.step(call("bash", command=f"echo 'while True: pass' >> {task.payload['path']}"))
        signals = env.step(call("submit")).signals
        assert signals["tests_timed_out"] == 1.0 and signals["resolved"] == 0.0 and signals["f2p_passed"] == 0.0
    finally:
        env.close()


def test_bad_tool_calls_are_explained_and_the_episode_goes_on(swe_images: object) -> None:
    task = sampled("toolz")
    env = SweEnv()
    try:
        env.reset(task, 0)
        cases = [
            (call("python", code="1"), "no tool named"),
            (call("bash"), "needs a string argument 'command'"),
            (call("view", path="no/such/file.py"), "does not exist"),
            (call("view", path=task.payload["path"], view_range=[5]), "two line numbers"),
            (call("str_replace", path=task.payload["path"], old_str="import", new_str="x"), "occurs"),
            (call("str_replace", path=task.payload["path"], old_str="no such text anywhere", new_str="x"),
             "does not occur"),
            (call("create", path=task.payload["path"], file_text="x"), "already exists"),
            (call("create", path="/opt/tests/evil.py", file_text="x"), "Read-only file system"),
        ]
        for action, expected in cases:
            result = env.step(action)
            assert expected in text(result), (action, text(result))
            assert result.signals["valid_action"] == 0.0 and not result.terminated
        huge = env.step(call("create", path="big.txt", file_text="x" * 200_000))
        assert "too large" in text(huge) and huge.signals["valid_action"] == 0.0
        killed = env.step(call("bash", command="kill -9 -1"))  # every process of the agent's user
        assert not killed.terminated and "ok" in text(env.step(call("bash", command="echo ok")))
        made = env.step(call("create", path="notes/x.txt", file_text="a\nb\n"))
        assert "does not exist" in text(made)  # the folder must exist first
        made = env.step(call("create", path="x.txt", file_text="a\nb\n"))
        assert "Created" in text(made) and made.signals["valid_action"] == 1.0
        edited = env.step(call("str_replace", path="x.txt", old_str="b", new_str="c"))
        assert "2\tc" in text(edited)
    finally:
        env.close()


def test_a_container_that_dies_is_an_infrastructure_error(swe_images: object) -> None:
    env = SweEnv()
    try:
        env.reset(sampled("toolz"), 0)
        assert env.box is not None
        env.box.remove()
        with pytest.raises(TransportError, match="gone"):
            env.step(call("bash", command="ls"))
    finally:
        env.close()


def test_the_agent_cannot_fill_the_host_s_disk_and_a_full_checkout_is_graded(swe_images: object) -> None:
    task = sampled("parse")
    source = task.payload["path"].split("/")[0]
    env = SweEnv()
    try:
        env.reset(task, 0)
        for where in ("/home/agent", "/var/tmp", "/repo"):  # every folder the agent can write has a size limit
            out = text(env.step(call("bash", command=f"cat /dev/zero > {where}/fill; du -sm {where}/fill")))
            assert "No space left on device" in out and int(out.split()[-2]) <= 1024, out
        denied = text(env.step(call("bash", command="touch /fill /var/lib/fill /run/lock/fill")))
        assert denied.count("Read-only file system") == 3  # the rest of the container does not take writes
        assert "lost: /tmp" in text(env.step(call("bash", command="cat /dev/zero > /tmp/fill")))
        moved = text(env.step(call("bash", command=f"rm -f /tmp/fill; mv /repo/fill {source}/fill && echo moved")))
        assert "moved" in moved  # the package's own folder is full: the image's files cannot come back to test it
        signals = env.step(call("submit")).signals
        assert signals["outcome_level"] == 2.0 and signals["f2p_passed"] == 0.0 and signals["resolved"] == 0.0
    finally:
        env.close()
    # A fix with the scratch folders left full is graded as any other: they are emptied before the tests run.
    fill = call("bash", command="cat /dev/zero > /var/tmp/fill; cat /dev/zero > /tmp/fill; true")
    gold, _ = play(task, task.payload["gold_patch"], 0, [fill])
    assert gold["resolved"] == 1.0 and gold["outcome_level"] == 3.0
