"""The one compile path (relaygate.config.compile) and the commands that share it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from relaygate.cli import main
from relaygate.config import ConfigError, parse_server_config
from relaygate.config.compile import compile_server, is_portkey_config
from relaygate.gateway import Gateway
from relaygate.providers.registry import default_registry
from tests.servers import free_port

KNOWN = frozenset(default_registry().names)

TYPO_SERVER: dict[str, Any] = {
    "configs": {
        "prod": {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "openai", "api_key": "sk-test"},
                {"provider": "opnai", "api_key": "sk-test"},
            ],
        }
    },
    "default_config": "prod",
}
TYPO_PATH = "configs.prod.targets[1].provider"


def test_an_unknown_provider_in_a_named_config_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        compile_server(parse_server_config(TYPO_SERVER), KNOWN)
    [(path, message)] = info.value.errors
    assert path == TYPO_PATH
    assert message.startswith("unknown provider 'opnai'; known: ")
    assert "openai" in message


def test_an_unknown_provider_in_an_inline_default_is_refused_under_default_config() -> None:
    server = parse_server_config({"default_config": {"provider": "opnai"}})
    with pytest.raises(ConfigError) as info:
        compile_server(server, KNOWN)
    assert [p for p, _ in info.value.errors] == ["default_config.provider"]


def test_a_default_naming_a_config_is_that_compiled_config() -> None:
    compiled = compile_server(
        parse_server_config({**TYPO_SERVER, "configs": {"prod": {"provider": "openai"}}}), KNOWN
    )
    assert compiled.default is compiled.configs["prod"]
    assert compiled.all() == [compiled.configs["prod"]]


def test_warnings_name_ignored_fields_and_retries_above_the_server_cap() -> None:
    server = parse_server_config(
        {
            "limits": {"max_retry_attempts": 2},
            "configs": {
                "c": {
                    "strategy": {"mode": "fallback"},
                    "metadata": {"team": "a"},
                    "targets": [
                        {"provider": "openai"},
                        {"provider": "openai", "retry": {"attempts": 4}},
                    ],
                }
            },
        }
    )
    warnings = compile_server(server, KNOWN).warnings
    assert "configs.c.metadata: ignored (relaygate does not use config metadata)" in warnings
    assert any(w.startswith("configs.c.targets[1].retry.attempts: 4 is above") for w in warnings)
    assert len(warnings) == 2


def test_the_gateway_refuses_a_bad_named_config_at_start_up_with_the_same_error() -> None:
    with pytest.raises(ConfigError) as info:
        Gateway(parse_server_config(TYPO_SERVER))
    assert [p for p, _ in info.value.errors] == [TYPO_PATH]


@pytest.mark.parametrize(
    ("document", "portkey"),
    [
        ({"provider": "openai"}, True),
        ({"strategy": {"mode": "fallback"}, "targets": []}, True),
        ({"configs": {}, "providers": {"openai": {}}}, False),
        ([{"provider": "openai"}], False),
    ],
)
def test_portkey_config_detection(document: Any, portkey: bool) -> None:
    assert is_portkey_config(document) is portkey


def test_validate_prints_the_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump({"configs": {"c": {"provider": "openai", "cache": {}}}}))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: valid server config" in out
    assert (
        "warning: configs.c.cache: ignored (relaygate caches in simple mode only: "
        "{mode: simple, max_age})" in out
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaygate.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def _explanation(output: str) -> str:
    """The explained error: everything after the command's own first line."""
    return output.split("\n", 1)[1].strip()


def test_validate_serve_and_rehearse_give_the_same_error_for_the_same_bad_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(TYPO_SERVER))
    validate = _run("validate", str(path))
    serve = _run("serve", "--config", str(path), "--port", str(free_port()))
    rehearse = _run("rehearse", str(path), "--requests", "1")
    assert (validate.returncode, serve.returncode, rehearse.returncode) == (1, 2, 2)
    assert "listening" not in serve.stderr
    assert "Traceback" not in serve.stderr + rehearse.stderr
    expected = _explanation(validate.stdout)
    assert f"{TYPO_PATH}: unknown provider 'opnai'; known: " in expected
    assert _explanation(serve.stderr) == expected
    assert _explanation(rehearse.stderr) == expected


def test_validate_and_rehearse_agree_on_a_bad_portkey_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"provider": "opnai"}))
    validate = _run("validate", str(path))
    rehearse = _run("rehearse", str(path), "--requests", "1")
    assert (validate.returncode, rehearse.returncode) == (1, 2)
    expected = _explanation(validate.stdout)
    assert "provider: unknown provider 'opnai'; known: " in expected
    assert _explanation(rehearse.stderr) == expected
