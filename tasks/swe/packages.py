"""The real packages `swe` tasks are made from: pinned source distributions from PyPI, and where their code lives."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

SIMPLE_INDEX = "https://pypi.org/simple"
# Test tools every package image gets, as wheels for the image's Python (Debian bookworm: CPython 3.11, x86_64).
# No package under test is among them or their dependencies: its original code must not be in the image twice.
TEST_WHEELS = ["pytest==9.2.0", "iniconfig==2.3.1", "packaging==26.3", "pluggy==1.7.0", "Pygments==2.21.0",
               "coverage==7.17.3", "pytest-cov==7.1.0", "hypothesis==6.170.15", "sortedcontainers==2.4.0",
               "attrs==26.1.0", "freezegun==1.5.5", "tzdata==2026.6"]


@dataclass(frozen=True)
class Package:
    """One source distribution: where its code and tests live in the checkout, and how its tests are run."""

    name: str
    version: str
    sha256: str
    source: str  # the package's code, relative to the checkout: the only place the agent's fix counts
    tests: tuple[str, ...]  # test folders, hidden while the agent works
    pythonpath: str = "."  # what pytest puts on sys.path so the tests import the checkout's code
    ignore: tuple[str, ...] = ()  # test paths left out (need what the image lacks, or take minutes)
    root: str = "/repo"  # the checkout in the image
    # How the grader runs pytest: the image's own test tools, with the user site and the checkout's addopts off.
    runner: str = "/opt/tests/bin/python -s /opt/tests/bin/pytest"
    options: str | None = None  # pytest options; by default "-o addopts= -o pythonpath=PYTHONPATH"
    hide_tests: bool = True  # take `tests` out of the checkout while the agent works
    tag: str = ""  # the image, when not gymbox/swe-NAME:VERSION

    @property
    def sdist(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}.tar.gz"

    @property
    def slug(self) -> str:
        return self.name.lower().replace("_", "-")

    @property
    def pytest_options(self) -> str:
        return self.options if self.options is not None else f"-o addopts= -o pythonpath={self.pythonpath}"

    def image(self) -> str:
        return self.tag or f"gymbox/swe-{self.slug}:{self.version}"

    def is_test_path(self, path: str) -> bool:
        return any(path == t or path.startswith(t + "/") for t in self.tests)

    def is_source_path(self, path: str) -> bool:
        return self.source == "." or path == self.source or path.startswith(self.source + "/")


PACKAGES: dict[str, Package] = {p.slug: p for p in [
    Package("more-itertools", "11.2.1", "cbf08fd0af284dc69718b9b76a8e6203df624d70209ea511e4219d350c856f63",
            source="more_itertools", tests=("tests",)),
    Package("toolz", "1.2.0", "9667a038e9d6ecba37995e26cb2f59ec6420b6ad8dd9677de59db9b956b08490",
            source="toolz", tests=("toolz/tests", "toolz/sandbox/tests")),
    Package("boltons", "26.2.0", "d39cfd15c1a1c3bd4d705c82252fa9edb8e4f5e8cc039f8e39afac7b1b47e92c",
            source="boltons", tests=("tests",)),
    Package("python-dateutil", "4.0.0", "d7295ff14fdc0f92f662100bfb6c551d160ca090f2939f1ec5b9794265c03f06",
            source="src/dateutil", tests=("tests",), pythonpath="src"),
    Package("cachetools", "8.0.1", "deb1d376d4d28c2f33f3e3058043b005e0af75c35c094bd54053e27d2906ad95",
            source="src/cachetools", tests=("tests",), pythonpath="src"),
    Package("parse", "1.22.4", "706d458feed5a81b02768d3156e8070baf6cee7d150a3a3c0cd43101a875c3b5",
            source="parse", tests=("tests",)),
]}


class FetchError(RuntimeError):
    """A source distribution or wheel could not be had, or is not the pinned one."""


def cache_dir() -> Path:
    return Path(os.environ.get("GYMBOX_CACHE", Path.home() / ".cache" / "gymbox")) / "swe"


def package(name: str) -> Package:
    slug = name.lower().replace("_", "-")
    if slug not in PACKAGES:
        raise KeyError(f"no swe package {name!r}; known: {', '.join(sorted(PACKAGES))}")
    return PACKAGES[slug]


def fetch_sdist(pkg: Package, dest: Path | None = None) -> Path:
    """The package's source distribution, downloaded once from PyPI and checked against its pinned sha256."""
    dest = dest or cache_dir() / "sdists"
    path = dest / pkg.sdist
    if path.exists() and _sha256(path) == pkg.sha256:
        return path
    dest.mkdir(parents=True, exist_ok=True)
    url = _sdist_url(pkg)
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=120) as response:
            response.raise_for_status()
            partial = path.with_suffix(".part")
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot download {url} ({exc}); put {pkg.sdist} in {dest} by hand") from exc
    if (digest := _sha256(partial)) != pkg.sha256:
        partial.unlink()
        raise FetchError(f"{pkg.sdist} from {url} has sha256 {digest}, not the pinned {pkg.sha256}")
    partial.replace(path)
    return path


def _sdist_url(pkg: Package) -> str:
    index = f"{SIMPLE_INDEX}/{pkg.slug}/"
    try:
        response = httpx.get(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60,
                             follow_redirects=True)
        response.raise_for_status()
        files = response.json()["files"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise FetchError(f"cannot read PyPI's index for {pkg.name} at {index} ({exc})") from exc
    for entry in files:
        if entry["filename"].lower() == pkg.sdist.lower():
            return str(entry["url"])
    raise FetchError(f"PyPI lists no {pkg.sdist} for {pkg.name}")


def fetch_test_wheels(dest: Path | None = None) -> Path:
    """The pinned test tools as wheels for the images' Python, from pip's index (and pip's cache)."""
    dest = dest or cache_dir() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--no-deps",
               "--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
               "--dest", str(dest), *TEST_WHEELS]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"pip could not download the test tools: {result.stderr.strip()[-2000:]}")
    return dest


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
