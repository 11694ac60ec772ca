"""A small client of the API server (stdlib only) and kubeconfig files.

`Api` is what the harness and the node agent use for reads, status writes and bindings;
scenarios drive the cluster the way users do, with `kubectl` (see conftest's `kubectl`).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml


class ApiError(RuntimeError):
    """An API answer other than 2xx: `status` is the HTTP status, `body` its text."""

    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path} answered {status}: {body[:500]}")
        self.status = status
        self.body = body


def write_kubeconfig(path: Path, server: str, ca: Path, token: str,
                     namespace: str = "default", user: str = "admin") -> Path:
    """A kubeconfig with one cluster, one token user and one context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {
            "cluster": "local", "user": user, "namespace": namespace}}],
        "current-context": "local",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class Api:
    """JSON over HTTPS to one API server with a bearer token."""

    def __init__(self, server: str, ca: Path, token: str, timeout_s: float = 10.0):
        self.server = server.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.ssl = ssl.create_default_context(cafile=str(ca))

    @classmethod
    def from_kubeconfig(cls, path: Path) -> "Api":
        config = yaml.safe_load(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        return cls(cluster["server"], Path(cluster["certificate-authority"]), user["token"])

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json", query: dict | None = None) -> Any:
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "Content-Type": content_type,
        })
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self.ssl) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise ApiError(method, path, e.code, e.read().decode(errors="replace")) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")  # /readyz and friends answer text

    def get(self, path: str, **query) -> Any:
        return self.request("GET", path, query=query or None)

    def get_or_none(self, path: str) -> Any:
        try:
            return self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, body)

    def events(self, namespace: str, kind: str, name: str) -> list[dict]:
        """Events about the object `kind`/`name` in `namespace`, oldest first."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        items = self.get(f"/api/v1/namespaces/{namespace}/events",
                         fieldSelector=selector)["items"]
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def wait_for(what: str, check: Callable[[], Any], timeout_s: float,
             interval_s: float = 0.25, details: Callable[[], str] | None = None) -> Any:
    """Polls `check` until it returns something truthy; fails after `timeout_s` saying
    what it waited for (and `details()`, when given). Exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the last one is reported on timeout
            last_error = e
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout_s:.0f}s waiting for {what}"
            if last_error is not None:
                message += f" (last error: {last_error})"
            if details is not None:
                message += "\n" + details()
            raise TimeoutError(message)
        time.sleep(interval_s)


def condition(obj: dict | None, type_: str) -> dict | None:
    """The status condition `type_` of `obj`, if any."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None
