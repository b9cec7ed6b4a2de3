"""The recipe of each package's image: its source distribution as a git checkout at /repo, and pytest in /opt/tests.

Images depend only on the pinned package, the pinned test wheels and this recipe (not on gymbox's sources), so
they are built once and kept; a changed recipe gives a new label and a rebuild. The build itself is the runtime's
(`gymbox swe images` runs it).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from gymbox.tasks.swe.packages import TEST_WHEELS, Package, fetch_sdist, fetch_test_wheels

REPO = "/repo"
TESTS_VENV = "/opt/tests"
RECIPE_LABEL = "gymbox.swe_recipe"  # the image label that holds `recipe_digest`

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


def image_labels(pkg: Package) -> dict[str, str]:
    """The labels a package's image carries: its recipe's digest and the package."""
    return {RECIPE_LABEL: recipe_digest(pkg), "gymbox.swe_package": f"{pkg.name}=={pkg.version}"}


def write_context(pkg: Package, folder: Path, *, base: str) -> None:
    """Fill an empty build context: the test wheels, the source distribution (both fetched once and cached) and
    the Dockerfile, built on image `base`."""
    sdist = fetch_sdist(pkg)
    shutil.copytree(fetch_test_wheels(), folder / "wheels")
    shutil.copy(sdist, folder / sdist.name)
    (folder / "Dockerfile").write_text(DOCKERFILE.format(base=base, sdist=sdist.name, name=pkg.name,
                                                         version=pkg.version))
