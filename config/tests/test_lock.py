"""The dependency locks keep their promises: every package pinned with its hashes, the inputs
and the locks agree, the runtime lock carries what the worker's transport needs, and every
install uses the locks with --require-hashes (the image the runtime lock alone)."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+?)\s*\\?$")


def locked(name: str) -> dict[str, str]:
    """``{canonical name: version}`` of a lock file; fails on a requirement without a hash."""
    pins, current = {}, None
    for line in (ROOT / name).read_text().splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match["name"])
            pins[current] = match["version"]
        elif line.strip().startswith("--hash=sha256:"):
            pins.setdefault(f"{current}#hashes", "yes")
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{name}: a line that is neither a pin, a hash nor a comment: {line!r}")
    unhashed = [package for package in pins if "#" not in package and f"{package}#hashes" not in pins]
    assert not unhashed, f"{name}: pinned without a hash: {unhashed}"
    return {package: version for package, version in pins.items() if "#" not in package}


def inputs(name: str) -> list[Requirement]:
    found = []
    for line in (ROOT / name).read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            found.append(Requirement(text))
    return found


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-dev.txt"])
def test_every_package_of_a_lock_is_pinned_with_its_hashes(lock):
    assert len(locked(lock)) > 20


def test_the_runtime_lock_pins_every_input_within_its_range():
    pins = locked("requirements.txt")
    for requirement in inputs("requirements.in"):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.txt: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])


def test_the_worker_transport_is_named_with_its_extra_and_locked():
    # kombu's Redis transport imports packaging: without celery's redis extra the worker
    # cannot start, and nothing but this extra brings it into the runtime lock.
    celery = next(r for r in inputs("requirements.in") if canonicalize_name(r.name) == "celery")
    assert "redis" in celery.extras
    pins = locked("requirements.txt")
    assert {"kombu", "redis", "packaging"} <= set(pins)


def test_the_dev_lock_has_the_runtime_lock_at_the_same_versions():
    runtime, dev = locked("requirements.txt"), locked("requirements-dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime
    for requirement in inputs("requirements-dev.in"):
        assert canonicalize_name(requirement.name) in dev, f"{requirement} is not in requirements-dev.txt"


def test_every_install_uses_a_lock_with_require_hashes():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line or "PIP_INSTALL)" in line]
    assert installs
    for line in installs:
        assert "--require-hashes" in line or "$(PIP_INSTALL)" in line, line
    assert "PIP_INSTALL = $(PY) -m pip install --quiet --require-hashes" in makefile

    dockerfile = (ROOT / "Dockerfile").read_text()
    [install] = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert "--require-hashes -r /tmp/requirements.txt" in install
    assert "requirements-dev" not in dockerfile
