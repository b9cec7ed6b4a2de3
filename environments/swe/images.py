"""One image per package: its source distribution as a git checkout at /repo, and pytest in /opt/tests.

Images depend only on the pinned package, the pinned test wheels and this recipe (not on gymbox's sources), so
they are built once and kept; a changed recipe gives a new label and a rebuild.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gymbox.environments.runtime.images import BASE_TAG, build_base, docker_build
from gymbox.tasks.swe.packages import TEST_WHEELS, Package, fetch_sdist, fetch_test_wheels

REPO = "/repo"
TESTS_VENV = "/opt/tests"
BASE = BASE_TAG

# The checkout and the agent's home belong to user 1000 (the agent); the test tools belong to root, so nothing
# the agent does can change them. The package itself is never installed: its original code is only in /repo.
DOCKERFILE = f"""\
FROM {{base}}
COPY wheels /tmp/wheels
RUN python3 -m venv {TESTS_VENV} \\
    && {TESTS_VENV}/bin/pip install --no-cache-dir --no-index --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels
RUN useradd --uid 1000 --create-home --shell /bin/bash agent && mkdir {REPO} && chown agent:agent {REPO}
COPY --chown=1000:1000 {{sdist}} /tmp/sdist.tar.gz
USER agent
RUN tar -xzf /tmp/sdist.tar.gz -C {REPO} --strip-components=1 --no-same-owner \\
    && find {REPO} -name __pycache__ -prune -exec rm -rf {{{{}}}} + \\
    && cd {REPO} && git init -q -b main && git add -A \\
    && git -c user.name=gymbox -c user.email=gymbox@localhost commit -q -m "{{name}} {{version}}"
USER root
RUN rm -f /tmp/sdist.tar.gz
ENV PATH={TESTS_VENV}/bin:/usr/local/bin:/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
USER agent
WORKDIR {REPO}
CMD ["sleep", "infinity"]
"""


def recipe_digest(pkg: Package) -> str:
    text = DOCKERFILE + pkg.sha256 + "\n".join(TEST_WHEELS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_package_image(client: Any, pkg: Package, *, force: bool = False,
                        log: Callable[[str], None] = print) -> str:
    """Build (or reuse) `gymbox/swe-NAME:VERSION`; returns the image id."""
    import docker.errors

    tag, digest = pkg.image(), recipe_digest(pkg)
    try:
        existing = client.images.get(tag)
        if not force and existing.labels.get("gymbox.swe_recipe") == digest:
            log(f"{tag} is up to date ({existing.id[:19]})")
            return str(existing.id)
    except docker.errors.ImageNotFound:
        pass
    build_base(client, log=log)  # the Debian base all gymbox images share (debootstrap, once)
    sdist = fetch_sdist(pkg)
    wheels = fetch_test_wheels()
    context = Path(tempfile.mkdtemp(prefix="gymbox-swe-build-"))
    try:
        shutil.copytree(wheels, context / "wheels")
        shutil.copy(sdist, context / sdist.name)
        (context / "Dockerfile").write_text(DOCKERFILE.format(base=BASE, sdist=sdist.name, name=pkg.name,
                                                              version=pkg.version))
        log(f"docker build {tag}")
        docker_build(client, tag, log, path=str(context), network_mode="none",
                     labels={"gymbox.swe_recipe": digest, "gymbox.swe_package": f"{pkg.name}=={pkg.version}"})
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return str(client.images.get(tag).id)


def build_instance_image(client: Any, dockerfile: Path, tag: str, *, log: Callable[[str], None] = print) -> str:
    """Build (or reuse) a SWE-bench instance's image from its own Dockerfile, with the Dockerfile's folder as
    the build context; rebuilt when the Dockerfile changes."""
    import docker.errors

    if not dockerfile.is_file():
        raise FileNotFoundError(f"no Dockerfile at {dockerfile}")
    digest = hashlib.sha256(dockerfile.read_bytes()).hexdigest()[:16]
    try:
        existing = client.images.get(tag)
        if existing.labels.get("gymbox.dockerfile") == digest:
            return str(existing.id)
    except docker.errors.ImageNotFound:
        pass
    log(f"docker build {tag} from {dockerfile}")
    docker_build(client, tag, log, path=str(dockerfile.parent), dockerfile=dockerfile.name,
                 labels={"gymbox.dockerfile": digest})
    return str(client.images.get(tag).id)
