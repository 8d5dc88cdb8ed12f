"""AWS credentials and SigV4 signing for Bedrock, with botocore's own signer.

Signing is botocore's :class:`botocore.auth.SigV4Auth` over a
:class:`botocore.awsrequest.AWSRequest`: the canonical request, the string to sign and the
key derivation are botocore's, kept in step with AWS, never re-written here.

Credentials come from the target (``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token``) or else from the standard AWS chain as botocore resolves it
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and
the shared credentials and config files, container and instance roles...). The chain is
resolved once, on the first request that needs it, and kept (botocore refreshes temporary
credentials itself when they near expiry). Resolving it may read files and, on a machine
with no other source, ask the instance metadata service: set ``AWS_EC2_METADATA_DISABLED=true``
where that is not wanted.

botocore's signer logs the canonical request and the signature at DEBUG; its
``botocore.auth`` logger is held at INFO here so that a signature never reaches a log.

botocore is imported on the first Bedrock request, not with relaygate: a gateway that
never calls Bedrock does not carry its modules (thousands of objects every full garbage
collection would walk).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from relaygate.config.model import Secret

if TYPE_CHECKING:
    from botocore.credentials import Credentials

SERVICE = "bedrock"
"""The SigV4 signing name of the Bedrock runtime."""

logging.getLogger("botocore.auth").setLevel(logging.INFO)


def _secret(value: Any) -> str | None:
    if isinstance(value, Secret):
        return value.reveal() or None
    return value if isinstance(value, str) and value else None


def configured_credentials(options: Mapping[str, Any]) -> Credentials | None:
    """The credentials a target sets itself, or ``None`` when it sets no key pair."""
    key = _secret(options.get("aws_access_key_id"))
    secret = _secret(options.get("aws_secret_access_key"))
    if key is None or secret is None:
        return None
    from botocore.credentials import Credentials

    return Credentials(key, secret, _secret(options.get("aws_session_token")))


class CredentialChain:
    """The standard AWS credential chain and default region, resolved once, lazily, shared.

    ``resolve`` answers ``(credentials, region)``: botocore's resolver by default (a botocore
    session's ``get_credentials()`` and its ``region`` setting, from ``AWS_REGION``,
    ``AWS_DEFAULT_REGION`` or the profile); tests inject their own.
    """

    def __init__(self, resolve: Callable[[], tuple[Any, str | None]] | None = None) -> None:
        self._resolve = resolve or _botocore_chain
        self._lock = threading.Lock()
        self._resolved = False
        self._credentials: Any = None
        self._region: str | None = None

    @property
    def resolved(self) -> bool:
        """Whether the chain has been resolved (its answers are then immediate)."""
        return self._resolved

    def ensure(self) -> None:
        """Resolve the chain now if it has not been (blocking: botocore may ask a metadata
        service over the network; call it off the event loop)."""
        self._ensure()

    def _ensure(self) -> None:
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    self._credentials, self._region = self._resolve()
                    self._resolved = True

    def credentials(self) -> Any:
        """The chain's credentials (botocore ``Credentials``), ``None`` when it has none."""
        self._ensure()
        return self._credentials

    def region(self) -> str | None:
        """The default region the AWS configuration names, if any."""
        self._ensure()
        return self._region


def _botocore_chain() -> tuple[Any, str | None]:
    from botocore.session import Session

    session = Session()
    return session.get_credentials(), chain_region(session.get_config_variable("region"))


def chain_region(configured: object, environ: Mapping[str, str] = os.environ) -> str | None:
    """The AWS configuration's default region: ``AWS_REGION`` when set (the name current AWS
    SDKs read first), else what botocore resolved (``configured``: ``AWS_DEFAULT_REGION``,
    else the profile's ``region``), else ``None``."""
    region = environ.get("AWS_REGION") or configured
    return region if isinstance(region, str) and region else None


def sign(
    credentials: Any,
    region: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, str]:
    """``headers`` plus the SigV4 headers (``authorization``, ``x-amz-date``, and
    ``x-amz-security-token`` for temporary credentials) for a POST of ``body`` to ``url``.

    Every header given is signed (so none may change after); the names come back lower-case.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    frozen = credentials.get_frozen_credentials()
    SigV4Auth(frozen, SERVICE, region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}
