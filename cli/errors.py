"""What can go wrong in a CLI command, each with its exit status; `main` prints the message
on stderr (never a traceback) and exits with it."""

from __future__ import annotations

import httpx

EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130


class CliError(Exception):
    exit_code = EXIT_USAGE


class ApiError(CliError):
    """The API answered with an error: its {"error", "message"} body, or what came instead."""

    exit_code = EXIT_API_ERROR

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        hint = " (check BUILDFARM_TOKEN or --token)" if status == 401 else ""
        super().__init__(f"{message}{hint} [HTTP {status} {code}]")

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
            return cls(response.status_code, str(body["error"]), str(body["message"]))
        except (ValueError, KeyError, TypeError):
            text = " ".join(response.text.split())[:200] or response.reason_phrase
            return cls(response.status_code, "http_error", text)


class NotFound(CliError):
    exit_code = EXIT_API_ERROR


class Unreachable(CliError):
    """The API could not be reached (refused, timed out, DNS, TLS)."""

    exit_code = EXIT_UNREACHABLE


class Interrupted(CliError):
    exit_code = EXIT_INTERRUPTED
