"""The first hour with the ``relaygate`` command: one clear line for each mistake, banners
only once the port is held, ``init``, ``--version`` and ``validate``'s exit statuses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from relaygate.cli import main
from relaygate.providers.registry import default_registry
from relaygate.starter import checked_starter, variables
from tests.conftest import MockFactory
from tests.servers import free_port

PORTKEY_CONFIG = {
    "strategy": {"mode": "fallback"},
    "targets": [{"provider": "openai", "api_key": "sk-a"}, {"provider": "groq", "api_key": "gk"}],
}


def relaygate(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``relaygate`` command of this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "relaygate.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# --- --version and validate ------------------------------------------------------------------


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("relaygate ")


def test_validate_reads_a_pipe_once_and_refuses_an_invalid_config() -> None:
    done = relaygate("validate", "/dev/stdin", stdin="listen: 5\n")
    assert done.returncode == 1
    assert "/dev/stdin: invalid" in done.stdout and "listen" in done.stdout


def test_validate_accepts_a_valid_config_from_a_pipe() -> None:
    done = relaygate("validate", "/dev/stdin", stdin=json.dumps(PORTKEY_CONFIG))
    assert (done.returncode, done.stdout.strip()) == (0, "/dev/stdin: valid Portkey config")


def test_validate_exit_status_2_for_an_unreadable_file_or_bad_usage(tmp_path: Path) -> None:
    done = relaygate("validate", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "cannot read" in done.stderr
    assert relaygate("validate").returncode == 2


# --- serve: a Portkey config where the server config goes ------------------------------------


def test_a_portkey_config_given_as_server_config_gets_one_line_naming_the_flag(
    tmp_path: Path,
) -> None:
    path = tmp_path / "portkey.yaml"
    path.write_text(yaml.safe_dump(PORTKEY_CONFIG))
    done = relaygate("serve", "--config", str(path), "--port", str(free_port()))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "is a Portkey config" in lines[0]
    assert f"relaygate serve --portkey-config {path}" in lines[0]
    assert "default_config:" in lines[0]


def test_a_server_config_given_as_portkey_config_gets_one_line(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("listen: {port: 8787}\n")
    done = relaygate("serve", "--portkey-config", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"relaygate: {path} is a server config, not a Portkey config: serve it with "
        f"`relaygate serve --config {path}`"
    )


# --- busy ports and banners ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["serve"], ["mock-upstream"], ["demo"]],
    ids=["serve", "mock-upstream", "demo"],
)
def test_a_busy_port_is_one_line_naming_it_and_the_flag(held_port: int, command: list[str]) -> None:
    extra = ["--upstream-ports", f"{free_port()},{free_port()}"] if command == ["demo"] else []
    done = relaygate(*command, "--port", str(held_port), *extra)
    output = done.stdout + done.stderr
    assert done.returncode == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines == [
        f"relaygate{'' if command == ['serve'] else ' ' + command[0]}: port {held_port} on "
        f"127.0.0.1 is already in use; pick another with --port N"
    ]
    assert "listening" not in output and "Try it" not in output and "Traceback" not in output


def test_the_listening_banner_comes_once_the_port_accepts_connections(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaygate.cli", "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert banner.strip() == f"relaygate listening on http://127.0.0.1:{port}"
        # Held already: a connection is accepted (queued) at the moment of the banner.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_mock_upstream_announces_its_url_and_script_once_bound() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relaygate.cli",
            "mock-upstream",
            "--port",
            str(port),
            "--script",
            "503,429@retry_after=1,200",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert f"on http://127.0.0.1:{port}/v1" in line
        assert "script '503,429@retry_after=1,200'" in line
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_busy_demo_upstream_port_names_the_option_that_moves_it(held_port: int) -> None:
    done = relaygate(
        "demo", "--port", str(free_port()), "--upstream-ports", f"{held_port},{free_port()}"
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"relaygate demo: port {held_port} on 127.0.0.1 is already in use; is another "
        "relaygate demo running? --upstream-ports A,B moves the demo's simulated upstreams"
    )
    assert "Try it" not in done.stdout


# --- serve --portkey-config ---------------------------------------------------------------------


def test_serve_portkey_config_serves_it_as_the_default_config(
    tmp_path: Path, mock_upstream: MockFactory
) -> None:
    up = mock_upstream(name="backup")
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "api_key": "sk-a", "custom_host": "http://127.0.0.1:9/v1"},
            {"provider": "groq", "api_key": "gk", "custom_host": f"{up.url}/v1"},
        ],
    }
    path = tmp_path / "portkey.json"
    path.write_text(json.dumps(config))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relaygate.cli",
            "serve",
            "--portkey-config",
            str(path),
            "--port",
            str(port),
        ],
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready")
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert ready.json()["configs"] == ["portkey"]
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
        assert raw.parse().choices[0].message.content == "Hello from backup"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- init ----------------------------------------------------------------------------------------


def test_init_writes_a_validated_commented_starter_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "relaygate.yaml"
    assert main(["init", "--providers", "openai,groq", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "OPENAI_API_KEY=" in printed
    text = out.read_text()
    assert text.startswith("# relaygate server config")
    assert '"${OPENAI_API_KEY}"' in text and '"${GROQ_API_KEY}"' in text
    for name in ("OPENAI_API_KEY", "GROQ_API_KEY", "RELAYGATE_API_KEY"):
        monkeypatch.setenv(name, "x")
    assert main(["validate", str(out)]) == 0
    assert main(["init", "--providers", "openai", "--output", str(out)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert out.read_text() == text
    assert main(["init", "--providers", "openai", "--output", str(out), "--force"]) == 0
    assert "groq" not in out.read_text()


def test_init_refuses_an_unknown_provider_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--providers", "opnai", "--output", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert "unknown provider 'opnai'" in err and "openai" in err
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("provider", sorted(default_registry().names))
def test_every_provider_gets_a_starter_that_compiles(provider: str) -> None:
    text = checked_starter([provider], default_registry().names)
    assert f"provider: {provider}" in text
    assert variables([provider])[-1] == "RELAYGATE_API_KEY"


def test_a_server_setting_in_a_portkey_config_gets_a_hint_saying_where_it_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump({"listen": {"port": 8788}, **PORTKEY_CONFIG}))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "listen: unknown field" in out
    assert "did you mean 'listen'" not in out
    assert "put that config under `default_config:` in a server config" in out


def test_a_portkey_config_read_as_a_server_config_says_where_it_belongs(tmp_path: Path) -> None:
    from relaygate.config import ConfigError
    from relaygate.config.explain import explain
    from relaygate.config.server import load_server_config

    path = tmp_path / "portkey.yaml"
    path.write_text(yaml.safe_dump(PORTKEY_CONFIG))
    with pytest.raises(ConfigError) as caught:
        load_server_config(path)
    text = explain(caught.value)
    assert "did you mean 'strategy'" not in text
    assert "'strategy' belongs to a Portkey config" in text and "--portkey-config" in text
