"""The checkout in an episode's container: put it at the task's state, read the agent's patch, restore the rest.

Only the package's source folder is the agent's to change. Everything else in the checkout (tests, conftest.py,
pytest's configuration, top-level files) is put back from the image's own copy, held outside the container,
before any test runs, so nothing the agent leaves there reaches the grader; the scratch folders are emptied.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.runtime.docker_sandbox import ContainerSandbox, rebase
from gymbox.tasks.swe.packages import Package

REPO = "/repo"
TASK_DIR = "/var/tmp/gymbox-task"
# Fixed identity and dates: the task's commit has the same hash in every episode, and says nothing of the bug.
GIT_ENV = {"GIT_AUTHOR_NAME": "gymbox", "GIT_AUTHOR_EMAIL": "gymbox@localhost", "GIT_COMMITTER_NAME": "gymbox",
           "GIT_COMMITTER_EMAIL": "gymbox@localhost", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
SCRATCH = ("/tmp", "/var/tmp")  # the agent's to fill; emptied before grading, which writes there


class NoRoom(Exception):
    """The agent filled the checkout's size-limited folder: the image's files cannot be put back to run the tests."""


def prepare(box: ContainerSandbox, pkg: Package, bug_patch: str, *, commit: str | None = None,
            timeout: float = 120.0) -> str:
    """Check out `commit` (if given), apply the bug, take the tests out, and start a fresh history at that state
    (so no later commit and no earlier version is in reach); returns the new commit."""
    steps = ["set -e", f"cd {pkg.root}"]
    if commit:
        steps.append(f"git -c advice.detachedHead=false checkout -q -f {shlex.quote(commit)}")
    if bug_patch:
        box.put_files({f"{TASK_DIR}/bug.patch": bug_patch.encode()}, mode=0o600)
        steps.append(f"git apply --whitespace=nowarn {TASK_DIR}/bug.patch")
    steps.append(f"rm -rf {TASK_DIR}")
    if pkg.hide_tests:
        steps.append("rm -rf " + " ".join(shlex.quote(t) for t in pkg.tests))
    steps.append("rm -rf .git; git init -q -b main; git add -A; git commit -q -m 'Task state'; git rev-parse HEAD")
    result = box.exec("; ".join(steps), timeout=timeout, env=GIT_ENV)
    if result.exit_code != 0:
        raise InvalidTask(f"cannot put {pkg.name} {pkg.version} at the task's state in {pkg.image()}: "
                          f"{result.render()}")
    return result.output.strip().splitlines()[-1]


def clear_scratch(box: ContainerSandbox, timeout: float = 60.0) -> None:
    """Empty the scratch folders, which the agent may have filled: every command's output passes through /tmp."""
    folders = " ".join(SCRATCH)
    box.exec(f"chmod -R u+rwX {folders} 2>/dev/null; find {folders} -mindepth 1 -delete 2>/dev/null; true",
             timeout=timeout)


def agent_patch(box: ContainerSandbox, start: str, *, root: str = REPO, timeout: float = 60.0) -> str | None:
    """Everything the agent changed since the task's commit (new files included), as a git diff; None when git
    cannot tell (the agent removed or broke the repository's history)."""
    # Against the recorded commit, not HEAD: an agent that commits its work still has a patch.
    script = (f"cd {root} && git add -A >/dev/null 2>&1; git -c core.hooksPath=/dev/null diff --cached "
              f"--no-color --no-ext-diff --no-textconv {start}")
    result = box.exec(script, timeout=timeout, max_output=1 << 20)
    return result.output if result.exit_code == 0 else None


def restore(box: ContainerSandbox, pkg: Package, originals: bytes, *, test_patch: str = "",
            timeout: float = 60.0) -> None:
    """Put back every file outside the package's source folder, its test folders and every conftest.py as the
    image had them, with `test_patch` (SWE-bench's hidden tests) applied to them, if any."""
    keep = [] if pkg.source == "." else pkg.source.split("/")
    steps = [f"chmod -R u+rwX {pkg.root} 2>/dev/null; cd {pkg.root}"]
    # At each level of the source folder's path, remove its siblings (they come back from the image's copy).
    for depth in range(len(keep)):
        folder = "/".join(keep[:depth]) or "."
        keep_git = " ! -name .git" if depth == 0 else ""
        steps.append(f"find {shlex.quote(folder)} -mindepth 1 -maxdepth 1{keep_git} ! -name {shlex.quote(keep[depth])}"
                     " -exec rm -rf {} +")
    inside = [t for t in pkg.tests if pkg.is_source_path(t)]
    if inside:
        steps.append("rm -rf " + " ".join(shlex.quote(t) for t in inside))
    # pytest loads a conftest.py from any folder above a test: the agent's own go, the image's come back.
    steps.append(f"find {shlex.quote(pkg.source)} -name conftest.py -not -path './.git/*' -exec rm -f {{}} +")
    result = box.exec("; ".join(steps), timeout=timeout, workdir=pkg.root)
    if result.exit_code != 0:
        raise InvalidTask(f"cannot restore the checkout of {pkg.name} before grading: {result.render()}")
    restored = _restorable(pkg, originals)
    if test_patch:  # applied here, by this machine's git, so that no git runs in the container during grading
        restored = _patched(restored, test_patch, PurePosixPath(pkg.root).name)
    restored = rebase(restored)  # into the checkout's folder itself: a volume, on a read-only root file system
    _check_room(box, pkg.root, restored, timeout)
    box.put_archive(pkg.root, restored)


def _check_room(box: ContainerSandbox, root: str, archive: bytes, timeout: float) -> None:
    """Raise `NoRoom` when the checkout's file system lacks the room the archive's files take (a page or more
    each): the agent filled it, and the engine would fail halfway."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        needed = sum(4096 + member.size for member in tar)
    free = box.exec(f"df -B1 --output=avail {shlex.quote(root)} | tail -n 1", timeout=timeout).output.strip()
    if free.isdigit() and int(free) < needed:
        raise NoRoom(f"{root} has {int(free):,} bytes free, and the checkout's files need {needed:,}")


def _patched(archive: bytes, patch: str, top: str) -> bytes:
    """The archive with `patch` applied to its files (new files added, deleted ones dropped)."""
    with tempfile.TemporaryDirectory(prefix="gymbox-test-patch-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="fully_trusted")
        folder = Path(tmp) / top
        folder.mkdir(exist_ok=True)
        done = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], input=patch.encode(), cwd=folder,
                              capture_output=True)
        if done.returncode != 0:
            raise InvalidTask("the hidden tests (test_patch) do not apply to the restored checkout: "
                              + done.stderr.decode(errors="replace").strip())
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            tar.add(folder, arcname=top, filter=_agent_owned)
        return out.getvalue()


def _agent_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 1000
    info.uname = info.gname = ""
    return info


def _restorable(pkg: Package, originals: bytes) -> bytes:
    """The image's checkout archive less the source folder (its test folders and conftest.py files stay) and the
    git history."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(originals)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            rel = member.name.partition("/")[2]  # the archive's names start with the checkout's folder name
            if rel == ".git" or rel.startswith(".git/"):
                continue
            if (pkg.is_source_path(rel) and not pkg.is_test_path(rel) and not member.isdir()
                    and PurePosixPath(rel).name != "conftest.py"):
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()

