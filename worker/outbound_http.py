"""POSTs on a tenant's behalf (notifications, commit statuses) under the outbound address rule
(common/outbound.py): the URL's host is checked right before the request and the request goes to
exactly the address checked (the Host header and TLS name stay the URL's own), so a DNS answer
that changed since cannot win; no redirect is followed, no proxy of the environment used, and
the whole exchange and the answer read are bounded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from common.build_secrets import SecretCipher
from common.config import Config, ConfigError
from common.outbound import OutboundRefused, OutboundRule

# The start of an answer kept (the API shows it in a delivery); the rest is not read.
MAX_ANSWER_BYTES = 4096


@dataclass(frozen=True)
class Answer:
    status_code: int
    text: str


def post(rule: OutboundRule, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Answer:
    """POSTs `body` to `url`. Raises OutboundRefused for a host the farm does not connect to, and
    httpx.HTTPError when there is no answer in time."""
    target = rule.check_url(url)
    parts = urlsplit(url)
    address = target.addresses[0]
    pinned = f"[{address}]" if ":" in address else address
    pinned_url = urlunsplit((parts.scheme, f"{pinned}:{target.port}", parts.path or "/", parts.query, ""))
    deadline = time.monotonic() + timeout_s
    client = httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False)
    request = client.stream(
        "POST",
        pinned_url,
        content=body,
        headers={**headers, "Host": parts.netloc},
        extensions={"sni_hostname": target.host},
    )
    with client, request as response:
        start = b""
        for chunk in response.iter_bytes():
            start += chunk
            if len(start) >= MAX_ANSWER_BYTES or time.monotonic() > deadline:
                break
    return Answer(response.status_code, start[:MAX_ANSWER_BYTES].decode(errors="replace"))


@dataclass(frozen=True)
class Outcome:
    """One attempt of an integration's request: the answer's status (None: no answer) and the
    start of its body or why there is none; `final` when trying again cannot help."""

    status_code: int | None
    text: str
    final: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def attempt(config: Config, url: str, body: bytes, headers: Callable[[], dict[str, str]]) -> Outcome:
    """POSTs under the farm's rule and bound. `headers` is called right before sending: it may
    read a secret, and its ConfigError (no secrets key on this worker) means not sent, for good."""
    try:
        answer = post(
            OutboundRule(config.outbound_networks),
            url,
            body,
            {"Content-Type": "application/json", "User-Agent": "buildfarm", **headers()},
            config.integration_timeout_s,
        )
    except (OutboundRefused, ConfigError) as e:
        return Outcome(None, f"Not sent: {e}", final=True)
    except httpx.HTTPError as e:
        return Outcome(None, f"No answer: {type(e).__name__}: {e}")
    return Outcome(answer.status_code, answer.text)


def decrypted(config: Config, token: str) -> str:
    """A secret of an integration (a signing secret, a provider's token), for one request."""
    cipher = SecretCipher.from_config(config)
    if cipher is None:
        raise ConfigError("BUILDFARM_SECRETS_KEY is not set on the worker")
    return cipher.decrypt(token)
