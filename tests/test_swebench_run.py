"""A SWE-bench-format instance, with its own Dockerfile, played through the swe environment.

The instance is made here from a shipped parse task, the way SWE-bench instances look: the image holds the
repository at /testbed at a base commit that has the bug and lacks the test file that shows it; `test_patch`
adds that file back; `patch` is the fix.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from gymbox.environments.runtime.images import build_from_dockerfile, image_files
from gymbox.harness.swe_validate import call, play
from gymbox.tasks.swe.packages import PACKAGES
from gymbox.tasks.swe.swebench import checkout, dockerfile_for, load_instances, to_task
from tests.test_swe_env import sampled

pytestmark = [pytest.mark.container, pytest.mark.slow]

DOCKERFILE = """\
FROM {image}
USER root
RUN cp -a /repo /testbed && chown -R 1000:1000 /testbed
USER agent
COPY --chown=1000:1000 bug.patch /home/agent/bug.patch
WORKDIR /testbed
RUN git apply /home/agent/bug.patch && rm /home/agent/bug.patch {test_file} && git add -A \\
    && GIT_AUTHOR_DATE=2025-01-01T00:00:00Z GIT_COMMITTER_DATE=2025-01-01T00:00:00Z \\
       git -c user.name=t -c user.email=t@localhost commit -q -m base
"""


def new_file_patch(path: str, text: str) -> str:
    lines = text.splitlines(keepends=True)
    body = "".join(f"+{line}" if line.endswith("\n") else f"+{line}\n\\ No newline at end of file\n"
                   for line in lines)
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n{body}")


def test_a_swebench_instance_resolves_with_its_patch_and_not_without(tmp_path: Path, swe_images: object) -> None:
    task = sampled("parse")
    pkg = PACKAGES["parse"]
    test_file = task.payload["fail_to_pass"][0].split("::")[0]
    with tarfile.open(fileobj=io.BytesIO(image_files(swe_images, pkg.image(), pkg.root))) as tar:
        handle = tar.extractfile(f"repo/{test_file}")
        assert handle is not None
        test_text = handle.read().decode()
    folder = tmp_path / "dockerfiles" / "parse__parse-1"
    folder.mkdir(parents=True)
    (folder / "bug.patch").write_text(task.payload["bug_patch"])
    (folder / "Dockerfile").write_text(DOCKERFILE.format(image=pkg.image(), test_file=test_file))
    record = {"instance_id": "parse__parse-1", "repo": "r1chardj0n3s/parse", "base_commit": "0" * 40,
              "patch": task.payload["gold_patch"], "test_patch": new_file_patch(test_file, test_text),
              "problem_statement": task.instruction,
              "FAIL_TO_PASS": json.dumps(task.payload["fail_to_pass"]),
              "PASS_TO_PASS": json.dumps([t for t in task.payload["pass_to_pass"] if t.startswith(test_file)])}
    # The base commit is whatever the Dockerfile made: build once to learn it, as a user's harness would know it.
    tag = checkout({**record, "instance_id": record["instance_id"]}).image()
    build_from_dockerfile(swe_images, folder / "Dockerfile", tag, log=lambda _: None)
    head = subprocess.run(["docker", "run", "--rm", tag, "git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    record["base_commit"] = head
    (tmp_path / "instances.jsonl").write_text(json.dumps(record) + "\n")

    [instance] = load_instances(tmp_path / "instances.jsonl")
    spec = to_task(instance, dockerfile_for(instance, tmp_path / "dockerfiles"))
    gold, applied = play(spec, spec.payload["gold_patch"])
    assert applied is not None and "[exit code" not in str(applied.observation.messages[-1].content)
    assert gold["resolved"] == 1.0 and gold["outcome_level"] == 3.0
    # The agent cannot see the hidden test file, and breaking the visible tests does not count.
    bare, _ = play(spec, None, actions=[call("bash", command=f"test ! -e {test_file} && echo 'x = (' > {test_file}")])
    assert bare["resolved"] == 0.0 and bare["f2p_passed"] == 0.0
