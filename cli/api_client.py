"""The build farm's HTTP API, as the CLI uses it (httpx). Every call returns parsed JSON or
raises ApiError (the server's {"error", "message"}) or Unreachable."""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from cli.errors import ApiError, CliError, NotFound, Unreachable

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PAGE = 100
TIMEOUT = httpx.Timeout(30.0)
# The API reads the whole upload, checks it and stores it before it answers.
UPLOAD_TIMEOUT = httpx.Timeout(30.0, read=900.0)


class ApiClient:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "buildfarm-cli"}
        # Loading the CA bundle costs 50-85 ms of every command's start-up: only an https:// API,
        # the one a client can reach over TLS (redirects are not followed), needs it.
        self.http = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers=headers,
            timeout=TIMEOUT,
            verify=self.url.startswith("https://"),
        )

    @classmethod
    def from_settings(cls, url: str | None, token: str | None) -> ApiClient:
        url = url or os.environ.get("BUILDFARM_URL")
        token = token or os.environ.get("BUILDFARM_TOKEN")
        if not url:
            raise CliError("no API URL: set BUILDFARM_URL or pass --url (e.g. http://127.0.0.1:8000)")
        if not url.startswith(("http://", "https://")):
            raise CliError(f"the API URL must start with http:// or https://, not {url!r}")
        if not token:
            raise CliError("no API token: set BUILDFARM_TOKEN or pass --token")
        return cls(url, token)

    def close(self) -> None:
        self.http.close()

    def _unreachable(self, error: httpx.TransportError) -> Unreachable:
        return Unreachable(f"cannot reach the API at {self.url}: {error or type(error).__name__}")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        if response.is_error:
            raise ApiError.from_response(response)
        return response

    def _listing(self, path: str, limit: float, params: dict[str, Any]) -> Iterator[dict]:
        """Up to `limit` items of a listing, newest first, following its Link: rel=next pages."""
        fetched = 0
        while fetched < limit:
            params["limit"] = min(PAGE, limit - fetched)
            response = self.request("GET", path, params=params)
            page = response.json()
            yield from page
            fetched += len(page)
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            params = {k: v[-1] for k, v in parse_qs(urlsplit(following).query).items()}

    def find_by_subdomain(self, subdomain: str) -> dict | None:
        deployments = self._listing("/deployments", math.inf, {})
        return next((d for d in deployments if d["subdomain"] == subdomain), None)

    def resolve_deployment(self, id_or_subdomain: str) -> dict:
        if UUID.match(id_or_subdomain):
            try:
                return self.request("GET", f"/deployments/{_seg(id_or_subdomain)}").json()
            except ApiError as e:
                if e.status != 404:
                    raise
        found = self.find_by_subdomain(id_or_subdomain)
        if found is None:
            raise NotFound(f"No deployment of yours has the id or subdomain {id_or_subdomain!r}")
        return found

    def usage(self) -> dict:
        return self.request("GET", "/usage").json()

    def create_deployment(self, fields: dict) -> dict:
        return self.request("POST", "/deployments", json=fields).json()

    def upload(self, deployment_id: str, archive: IO[bytes]) -> dict:
        """Streams `archive` (a file object, read chunk by chunk) as the multipart 'archive'."""
        files = {"archive": ("source.tar.gz", archive, "application/gzip")}
        path = f"/deployments/{_seg(deployment_id)}/upload"
        return self.request("POST", path, files=files, timeout=UPLOAD_TIMEOUT).json()

    def deploy(self, deployment_id: str, body: dict | None = None) -> dict:
        return self.request("POST", f"/deployments/{_seg(deployment_id)}/deploy", json=body or None).json()

    def _secret_path(self, deployment_id: str, name: str) -> str:
        return f"/deployments/{_seg(deployment_id)}/secrets/{_seg(name)}"

    def set_secret(self, deployment_id: str, name: str, value: str) -> None:
        self.request("PUT", self._secret_path(deployment_id, name), json={"value": value})

    def delete_secret(self, deployment_id: str, name: str) -> None:
        self.request("DELETE", self._secret_path(deployment_id, name))

    def secret_names(self, deployment_id: str) -> list[str]:
        return self.request("GET", f"/deployments/{_seg(deployment_id)}/secrets").json()["names"]

    def add_notification(self, deployment_id: str, fields: dict) -> dict:
        return self.request("POST", f"/deployments/{_seg(deployment_id)}/notifications", json=fields).json()

    def notifications(self, deployment_id: str) -> list[dict]:
        return self.request("GET", f"/deployments/{_seg(deployment_id)}/notifications").json()

    def delete_notification(self, deployment_id: str, notification_id: str) -> None:
        path = f"/deployments/{_seg(deployment_id)}/notifications/{_seg(notification_id)}"
        self.request("DELETE", path)

    def set_commit_status(self, deployment_id: str, fields: dict) -> dict:
        return self.request("PUT", f"/deployments/{_seg(deployment_id)}/commit-status", json=fields).json()

    def builds(self, deployment_id: str, limit: int, status: str | None = None) -> list[dict]:
        path = f"/deployments/{_seg(deployment_id)}/builds"
        params = {"status": status} if status else {}
        return list(itertools.islice(self._listing(path, limit, params), limit))

    def build_path(self, deployment_id: str, build_id: str) -> str:
        return f"/deployments/{_seg(deployment_id)}/builds/{_seg(build_id)}"

    def get_build(self, deployment_id: str, build_id: str) -> dict:
        return self.request("GET", self.build_path(deployment_id, build_id)).json()

    def cancel_build(self, deployment_id: str, build_id: str) -> tuple[int, dict]:
        """(200: cancelled, or 202: the worker was asked to stop it; the build)."""
        response = self.request("POST", self.build_path(deployment_id, build_id) + "/cancel")
        return response.status_code, response.json()

    def log_chunks(self, deployment_id: str, build_id: str) -> Iterator[bytes]:
        path = self.build_path(deployment_id, build_id) + "/logs"
        try:
            with self.http.stream("GET", path) as response:
                if response.is_error:
                    response.read()
                    raise ApiError.from_response(response)
                yield from response.iter_bytes()
        except httpx.TransportError as e:
            raise self._unreachable(e) from None

    def log_stream_url(self, deployment_id: str, build_id: str, after: int = 0) -> str:
        ws = "wss://" + self.url[8:] if self.url.startswith("https://") else "ws://" + self.url[7:]
        url = f"{ws}/api/v1{self.build_path(deployment_id, build_id)}/logs/stream"
        return f"{url}?after={after}" if after else url


def run_deployment_action(args: Any, actions: dict[str, Callable[[ApiClient, dict, Any], int]]) -> int:
    """Runs the subcommand `args.action` on the deployment `args.deployment` names (an id or a
    subdomain); its exit status."""
    api = ApiClient.from_settings(args.api_url, args.api_token)
    try:
        return actions[args.action](api, api.resolve_deployment(args.deployment), args)
    finally:
        api.close()


def _seg(value: str) -> str:
    """A path segment: ids come from the command line, so never let them change the path."""
    return quote(value, safe="")
