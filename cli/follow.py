"""Follows a build's log live over the API's WebSocket: one message per line, from the first.
A dropped connection is resumed with `?after=N` (N the lines already printed), so no line is
lost or repeated; the stream ends when the server closes it and the build has ended."""

from __future__ import annotations

import time

from websockets.exceptions import ConnectionClosedError, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from cli import output
from cli.api_client import ApiClient
from cli.errors import ApiError, Interrupted, Unreachable
from common.models import TERMINAL_STATUSES

FIRST_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 5.0
GIVE_UP_AFTER_S = 120.0
CONNECT_OPTIONS = {"open_timeout": 10, "close_timeout": 5, "max_size": None}


def follow_log(api: ApiClient, deployment_id: str, build_id: str) -> dict:
    """Prints each log line on stdout and reconnection notices on stderr; returns the build
    once it has ended. Gives up (Unreachable) after GIVE_UP_AFTER_S of failed attempts."""
    seen = 0
    failing_since: float | None = None
    delay = FIRST_RETRY_DELAY_S
    headers = {"Authorization": f"Bearer {api.token}"}
    while True:
        try:
            url = api.log_stream_url(deployment_id, build_id, after=seen)
            with connect(url, additional_headers=headers, **CONNECT_OPTIONS) as ws:
                failing_since = None
                for message in ws:  # ends when the server closes the stream cleanly
                    output.line(message if isinstance(message, str) else message.decode("utf-8", "replace"))
                    seen += 1
                    delay = FIRST_RETRY_DELAY_S
            build = api.get_build(deployment_id, build_id)
            if build["status"] in TERMINAL_STATUSES:
                return build
            reason = "the server closed the stream before the build ended"
        except InvalidStatus as e:
            status = e.response.status_code
            if 400 <= status < 500 and status not in (408, 429):
                api.get_build(deployment_id, build_id)  # raises the API's own error, if it has one
                raise ApiError(
                    status, "forbidden", f"the API refused the log stream (HTTP {status})"
                ) from None
            reason = f"HTTP {status} on connect"
        except ConnectionClosedError:
            reason = "connection dropped"
        except (InvalidHandshake, OSError, Unreachable) as e:
            reason = str(e) or type(e).__name__
        now = time.monotonic()
        failing_since = failing_since or now
        if now - failing_since > GIVE_UP_AFTER_S:
            raise Unreachable(f"the log stream failed for {GIVE_UP_AFTER_S:.0f} s, giving up: {reason}")
        output.note(f"log stream interrupted ({reason}); resuming after line {seen}")
        time.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_DELAY_S)


def follow_and_report(api: ApiClient, deployment: dict, build: dict) -> int:
    """Prints the log on stdout as it comes, then the outcome on stderr; 0 if it succeeded."""
    try:
        final = follow_log(api, deployment["id"], build["id"])
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped following; the build goes on (cancel it with: buildfarm builds cancel "
            f"{build['id']} --deployment {deployment['subdomain']})"
        ) from None
    return output.final_status(final)
