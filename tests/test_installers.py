"""The installer scripts say what they install, never install for --help, and support non-root.

Each script runs with a PATH holding only the shell tools it uses and stubs: ``id`` (the user
id a case wants), ``apt-get`` (records its arguments, simulates an install plan) and, when a
case wants it, ``sudo`` (runs what follows ``-n``). Nothing is installed for real.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "chromium": (REPO / "scripts" / "ensure-chromium.sh", ["chromium", "chromium-driver"]),
    "prometheus": (REPO / "scripts" / "ensure-prometheus.sh", ["prometheus"]),
    "redis": (REPO / "scripts" / "ensure-redis.sh", ["redis-server"]),
    "bench": (REPO / "benchmarks" / "run.sh", ["nginx", "wrk", "util-linux", "redis-server"]),
}
TOOLS = ("bash", "sed", "awk", "dirname", "tr", "cat", "env", "tee", "chmod", "rm", "printf")

APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$APT_LOG"
case " $* " in
  *" -s install "*) echo "Inst libjs-demo (1 Debian)"; for p in "$@"; do
      case "$p" in -*|install|DPkg*) ;; *) echo "Inst $p (1 Debian)";; esac; done ;;
esac
exit 0
"""


def stub_path(tmp_path: Path, *, uid: int, sudo: bool) -> tuple[dict[str, str], Path]:
    """An environment whose PATH has only the tools and stubs (see the module docstring)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    stubs = {"id": f"#!/bin/sh\necho {uid}\n", "apt-get": APT_GET}
    if sudo:
        stubs["sudo"] = '#!/bin/sh\n[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\nexec "$@"\n'
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "apt.log"
    env = {
        "PATH": str(bin_dir),
        "APT_LOG": str(log),
        "HOME": str(tmp_path),
        "RELAYGATE_SBIN": str(bin_dir),  # not the machine's /usr/sbin, whatever it holds
    }
    return env, log


def run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("bash") or "bash", str(script), *args],
        # Nor an nginx installed in /usr/sbin on this machine (run.sh looks there too).
        env={**env, "PYTHON": "/nonexistent/python"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def installs(log: Path) -> list[str]:
    """The recorded apt-get calls that install (simulations aside)."""
    if not log.exists():
        return []
    return [
        line for line in log.read_text().splitlines() if " install " in line and " -s " not in line
    ]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_prints_usage_and_installs_nothing(tmp_path: Path, name: str) -> None:
    script, _ = SCRIPTS[name]
    env, log = stub_path(tmp_path, uid=0, sudo=False)
    done = run(script, env, "--help")
    assert done.returncode == 0, done.stderr
    assert "--help" in done.stdout
    assert not log.exists(), "apt-get was called for --help"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_without_root_or_sudo_the_packages_are_named_and_nothing_is_installed(
    tmp_path: Path, name: str
) -> None:
    script, packages = SCRIPTS[name]
    env, log = stub_path(tmp_path, uid=1000, sudo=False)
    done = run(script, env)
    assert done.returncode == 1
    assert "installing needs root" in done.stderr
    assert f"sudo apt-get install --no-install-recommends {' '.join(packages)}" in done.stderr
    assert installs(log) == []


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_with_sudo_the_plan_is_printed_before_installing_with_sudo_n(
    tmp_path: Path, name: str
) -> None:
    script, packages = SCRIPTS[name]
    env, log = stub_path(tmp_path, uid=1000, sudo=True)
    done = run(script, env)
    # Installing "succeeds" (the stub), so each script gets as far as its own checks after.
    plan = f"will install from Debian's packages: libjs-demo {' '.join(packages)}"
    assert plan in done.stderr
    assert "missing, needed for" in done.stderr
    assert len(installs(log)) == 1 and installs(log)[0].endswith(" ".join(packages))
    stderr = done.stderr
    assert stderr.index(plan) < stderr.index("installed: ")


def test_as_root_it_installs_without_sudo(tmp_path: Path) -> None:
    script, packages = SCRIPTS["chromium"]
    env, log = stub_path(tmp_path, uid=0, sudo=False)
    done = run(script, env)
    assert "will install from Debian's packages" in done.stderr
    assert installs(log) and installs(log)[0].endswith(" ".join(packages))


def test_an_unknown_argument_is_a_usage_error_and_installs_nothing(tmp_path: Path) -> None:
    script, _ = SCRIPTS["chromium"]
    env, log = stub_path(tmp_path, uid=0, sudo=False)
    done = run(script, env, "--frobnicate")
    assert done.returncode == 2
    assert not log.exists()
