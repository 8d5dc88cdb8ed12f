"""Bedrock credentials from the standard AWS chain, end to end through ``relaygate serve``.

A ``bedrock`` target with no keys in the config is signed with what botocore's chain finds
in the gateway's environment: the ``AWS_*`` environment variables, or a named profile of
the shared credentials and config files (``AWS_PROFILE``). The Bedrock simulator records
the SigV4 ``authorization`` header, so the key id, the region of the signing scope and the
session token show which source signed. The instance metadata service is switched off
(``AWS_EC2_METADATA_DISABLED``), so nothing here leaves the machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import (
    MESSAGES,
    Mocks,
    answer_of,
    config_header,
    openai_client,
    server_config,
)
from tests.e2e.test_bedrock_responses_e2e import MODEL_ID
from tests.servers import running_gateway

pytestmark = pytest.mark.gateway_process

MOCK_NAMES = ("bedrock",)

SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/bedrock/aws4_request")


def _environment(source: str, home: Path) -> dict[str, str]:
    """The gateway's AWS environment for ``source``: ``env`` (variables) or ``profile``."""
    base = {"AWS_EC2_METADATA_DISABLED": "true"}
    if source == "env":
        return {
            **base,
            "AWS_ACCESS_KEY_ID": "AKIDFROMENV",
            "AWS_SECRET_ACCESS_KEY": "env-secret",
            "AWS_SESSION_TOKEN": "env-session-token",
            "AWS_REGION": "eu-north-1",
        }
    credentials = home / "credentials"
    credentials.write_text(
        "[relaygate-e2e]\naws_access_key_id = AKIDFROMPROFILE\n"
        "aws_secret_access_key = profile-secret\n"
    )
    config = home / "config"
    config.write_text("[profile relaygate-e2e]\nregion = ap-southeast-2\n")
    return {
        **base,
        "AWS_PROFILE": "relaygate-e2e",
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_CONFIG_FILE": str(config),
    }


@pytest.mark.parametrize(
    ("source", "key", "region", "token"),
    [
        ("env", "AKIDFROMENV", "eu-north-1", "env-session-token"),
        ("profile", "AKIDFROMPROFILE", "ap-southeast-2", None),
    ],
)
def test_a_bedrock_target_without_keys_is_signed_from_the_aws_chain(
    mocks: Mocks,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    key: str,
    region: str,
    token: str | None,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # the gateway sees only this test's sources
    target = {
        "provider": "bedrock",
        "custom_host": mocks["bedrock"].url,
        "override_params": {"model": MODEL_ID},
    }
    config = server_config({"bedrock": target})
    with (
        running_gateway(tmp_path / "gw", config, env=_environment(source, tmp_path)) as server,
        openai_client(f"{server.url}/v1") as sdk,
    ):
        answer = sdk.chat.completions.create(
            model="any", messages=MESSAGES, extra_headers=config_header("bedrock")
        )
    assert answer.choices[0].message.content == answer_of("bedrock")
    (sent,) = mocks["bedrock"].requests()
    scope = SCOPE.search(sent["headers"]["authorization"])
    assert scope is not None, sent["headers"]["authorization"]
    assert (scope["key"], scope["region"]) == (key, region)
    assert sent["headers"].get("x-amz-security-token") == token
