"""Packaging facts the docs and scripts promise, checked without the network.

- The distribution is `xes-voice` (`xes` on the package index is an unrelated project), and every
  install line in the docs, scripts and messages installs it, never a bare `xes`.
- Each lock file pins, with hashes, every requirement pyproject.toml declares for its environment,
  at a version inside pyproject's bounds; the locks agree with each other; and the scripts install
  the locks. A dependency added to pyproject.toml without `bash scripts/lock.sh` fails here.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DISTRIBUTION = "xes-voice"

# lock file -> the pyproject extras its environment holds (besides the dependencies themselves).
LOCKS: dict[str, tuple[str, ...]] = {
    "requirements/runtime.txt": (),
    "requirements/peer.txt": ("peer",),
    "requirements/test.txt": ("peer", "test", "postgres"),  # test lists psycopg itself
    "bench/requirements.txt": ("peer", "test", "postgres"),
}
# The platform the locks are made for (scripts/lock.sh): CPython 3.11 on Linux x86_64.
LOCK_ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
                    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                    "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def parse_lock(path: Path) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of hashes)} of a `uv pip compile --generate-hashes` file."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        pinned = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+)", line)
        if pinned:
            name = canonicalize_name(pinned.group(1))
            assert name not in pins, f"{path}: {name} pinned twice"
            pins[name] = (pinned.group(2), 0)
        elif line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{path}: unexpected line {line!r}")
    return pins


def required(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's requirements for an environment with these extras, on the lock's platform."""
    project = PYPROJECT["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    requirements += [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(LOCK_ENVIRONMENT)]


def test_the_distribution_is_xes_voice_and_provides_the_xes_package_and_command() -> None:
    assert PYPROJECT["project"]["name"] == DISTRIBUTION
    # What is installed in this environment is this project under that name, not the index's `xes`.
    installed = importlib.metadata.distribution(DISTRIBUTION)
    assert {(e.name, e.value) for e in installed.entry_points if e.group == "console_scripts"} \
        == {("xes", "xes.cli:main")}
    # (A set: newer setuptools' editable installs list the package twice, RECORD and top_level.txt.)
    assert set(importlib.metadata.packages_distributions()["xes"]) == {DISTRIBUTION}


def install_targets(command: str) -> list[str]:
    """The things `pip install ...` installs in one shell line: no options, no -r/-c files."""
    words = shlex.split(command.split("&&")[0].split(" #")[0], comments=False)
    targets, skip_next = [], False
    for word in words[2:]:
        if skip_next:
            skip_next = False
        elif word in ("-r", "--requirement", "-c", "--constraint", "-d", "--target", "-t"):
            skip_next = True
        elif not word.startswith("-"):
            targets.append(word)
    return targets


def install_lines() -> list[tuple[str, str]]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "src").rglob("*.py")),
             *sorted((ROOT / "scripts").glob("*.sh")), ROOT / "bench" / "run.sh",
             ROOT / "bench" / "README.md"]
    found = []
    for path in files:
        for line in path.read_text().splitlines():
            for match in re.finditer(r"pip install [^`\"\n]*", line):
                found.append((str(path.relative_to(ROOT)), match.group(0)))
    return found


def test_every_install_line_installs_xes_voice_never_the_index_xes() -> None:
    lines = install_lines()
    assert len(lines) >= 6, lines  # README, docs/python.md, docs/deploy.md, the peer's messages
    for where, line in lines:
        for target in install_targets(line):
            target = target.strip("'\"")
            if target.startswith((".", "/", "$ROOT", '"$ROOT')) or target in ("pip", "uv"):
                continue  # this clone (distribution xes-voice), or the installer tools themselves
            name = canonicalize_name(Requirement(target).name)
            assert name == DISTRIBUTION, f"{where}: `{line}` installs {name!r}, not {DISTRIBUTION}"
    # And the docs that tell people how to install say which distribution that is.
    for doc in ("README.md", "docs/python.md", "docs/deploy.md"):
        assert DISTRIBUTION in (ROOT / doc).read_text(), doc
    every_text = "\n".join((ROOT / where).read_text() for where in {w for w, _ in lines})
    assert not re.search(r"\bxes\[", every_text), "an extra spelled on the index's `xes` distribution"


@pytest.mark.parametrize("lock", LOCKS)
def test_each_lock_pins_its_environment_with_hashes_inside_pyprojects_bounds(lock: str) -> None:
    pins = parse_lock(ROOT / lock)
    assert pins, lock
    for name, (version, hashes) in pins.items():
        assert hashes >= 1, f"{lock}: {name}=={version} has no hash"
    for requirement in required(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} lacks {requirement} (run bash scripts/lock.sh)"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), \
            f"{lock} pins {name}=={pins[name][0]}, outside pyproject's {requirement}"


def test_locks_agree_and_every_extra_is_locked() -> None:
    versions: dict[str, set[str]] = {}
    for lock in LOCKS:
        for name, (version, _) in parse_lock(ROOT / lock).items():
            versions.setdefault(name, set()).add(version)
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}
    locked_extras = {extra for extras in LOCKS.values() for extra in extras}
    assert set(PYPROJECT["project"]["optional-dependencies"]) == locked_extras
    assert "uv" in parse_lock(ROOT / "requirements/lock-tool.txt")


def test_the_scripts_install_the_locks_and_only_with_hashes() -> None:
    def script(path: str) -> str:
        return (ROOT / path).read_text()
    assert "venv_ensure requirements/peer.txt" in script("scripts/serve.sh")
    assert "venv_ensure requirements/test.txt" in script("scripts/test.sh")
    assert "venv_ensure bench/requirements.txt" in script("bench/run.sh")
    assert "npm ci" in script("bench/run.sh") and "npm install" not in script("bench/run.sh")
    pip_lines = [line for line in script("scripts/lib.sh").splitlines() if "pip\" install" in line]
    assert pip_lines and all("--require-hashes" in line or "--no-deps" in line for line in pip_lines)
