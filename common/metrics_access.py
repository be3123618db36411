"""Who may read /metrics, on the API and on every worker host's metrics port: anyone where
BUILDFARM_METRICS_TOKEN is not set (keep the ports off public networks then), else only a client
that sends `Authorization: Bearer <token>`. Build steps of tenants must not read the farm's
state (queue depth, build counts, timings) any more than its other services."""

from __future__ import annotations

import hmac

from common.contract import Error, encode

REFUSAL = "Missing or wrong metrics token: send 'Authorization: Bearer <BUILDFARM_METRICS_TOKEN>'"
CHALLENGE = 'Bearer realm="buildfarm-metrics"'


def may_read_metrics(token: str, authorization: str | None) -> bool:
    """Whether a request with this Authorization header may read metrics guarded by `token`."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def refusal_body() -> bytes:
    """The 401's body, in the shape of every error of the farm."""
    return encode(Error("unauthorized", REFUSAL))
