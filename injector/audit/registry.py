"""Read an image from a registry over the Registry HTTP API v2, with `requests`.

requests is imported here and only here (the audit is not on the entrypoint's
start path).  One Session, with `trust_env` off: nothing from the environment
is sent unasked (no ~/.netrc; proxies and REQUESTS_CA_BUNDLE are read here,
explicitly).  Manifests and configs are small, bounded reads; layer blobs
stream (`stream=True`) into the layer walker with their digest checked at the
end.  Redirects (to blob storage) are followed here, hop by hop: http(s)
only, plain http only to loopback, at most MAX_REDIRECTS, Authorization only
to the origin that asked for it, and `--tls-verify=false` only for the
loopback registry's own origin.  Every target has a total deadline
(--registry-timeout), so a registry that drips bytes fails.  Auth: basic, or the
Bearer-token challenge of the Docker Registry token spec, with credentials
from --creds, REGISTRY_AUTH_FILE or ~/.docker/config.json (credentials.py,
credential helpers included).  429/5xx and
connection failures are retried with tenacity.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from injector.audit.credentials import parse_creds, registry_credentials
from injector.audit.errors import (
    AuditUsageError,
    BadImageError,
    NoInputError,
    RegistryRefusedError,
    RegistryUnavailableError,
)
from injector.audit.image import (
    MANIFEST_ACCEPT,
    MAX_JSON,
    ByteStream,
    Image,
    check_digest,
    parse_json,
    resolve_manifest,
)
from injector.audit.progress import Progress
from injector.netaddr import authority_host
from injector.netaddr import is_loopback as _is_loopback_host

TIMEOUT = (10, 60)  # connect, read (per chunk): a stalled registry fails, a slow big layer does not
ATTEMPTS = 4
MAX_REDIRECTS = 5
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
TOKEN = re.compile(r"^[\x21-\x7e]{1,16384}$")  # a bearer token is visible ASCII: no CR/LF to split a header


class _RetryableError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def is_loopback(authority: str) -> bool:
    """`HOST[:PORT]` (or `[V6]:PORT`) of a registry: is it loopback?"""
    return _is_loopback_host(authority_host(authority))


def _retry():  # type: ignore[no-untyped-def]
    return retry(
        retry=retry_if_exception(lambda e: isinstance(e, _RetryableError)),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )


class RegistryClient:
    def __init__(
        self,
        host: str,
        repo: str,
        *,
        tls_verify: bool = True,
        creds: str | None = None,
        progress: Progress | None = None,
        scope: str | None = None,  # the token scope to ask for; default: pull from `repo` (walk.py: the catalog)
        deadline: float = 1800.0,  # seconds this target may take in all (--registry-timeout)
    ) -> None:
        self.host = host
        self.repo = repo
        self.scope = scope or f"repository:{repo}:pull"
        self.progress = progress
        self.loopback = is_loopback(host)
        self.deadline = time.monotonic() + deadline
        self.seconds = deadline
        if not tls_verify and not self.loopback:
            raise AuditUsageError("--tls-verify=false is only allowed for a loopback registry")
        self.tls_verify = tls_verify
        self.session = requests.Session()
        self.session.trust_env = False  # no ~/.netrc sent unasked, on the first request or after a redirect
        self.session.headers["User-Agent"] = "stronghold-init-audit"
        self.ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        if not tls_verify:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._creds = parse_creds(creds) if creds else None  # a malformed --creds is a usage error up front
        self._looked_up = self._creds is not None
        self.auth_header: str | None = None
        self.base = self._pick_scheme()

    def close(self) -> None:
        self.session.close()

    @property
    def basic(self) -> tuple[str, str] | None:
        """The credentials, looked up the first time the registry asks (a helper runs only then)."""
        if not self._looked_up:
            self._creds = registry_credentials(self.host, None)
            self._looked_up = True
        return self._creds

    # -- connection and auth ------------------------------------------------------------------

    def _pick_scheme(self) -> str:
        """https; plain http only for a loopback registry that does not speak TLS."""
        try:
            try:
                self._ping(f"https://{self.host}")
                return f"https://{self.host}"
            except requests.exceptions.SSLError as exc:
                text = str(exc).lower()
                if not (
                    self.loopback
                    and (
                        "wrong_version_number" in text
                        or "wrong version number" in text
                        or "record layer failure" in text
                    )
                ):
                    raise
            self._ping(f"http://{self.host}")
            return f"http://{self.host}"
        except _RetryableError as exc:
            raise RegistryUnavailableError(f"{exc}; is the registry running?") from None
        except requests.exceptions.SSLError:
            raise RegistryUnavailableError(
                f"{self.host}: TLS failed (certificate not trusted?); "
                "set REQUESTS_CA_BUNDLE, or --tls-verify=false for a loopback registry"
            ) from None

    def _ping(self, base: str) -> None:
        # stream=True and closed unread: the body of /v2/ says nothing, and a hostile one is endless
        response = self._send("GET", f"{base}/v2/", allow_ssl_error=True, stream=True)
        response.close()
        if response.status_code == 401:
            self._authenticate(response, base)
            response = self._send("GET", f"{base}/v2/", stream=True)
            response.close()
            if response.status_code in (401, 403):
                raise RegistryRefusedError(f"{self.host}: the registry refused the credentials")
        if response.status_code != 200:
            raise RegistryUnavailableError(f"{self.host}: /v2/ answered {response.status_code}; not a v2 registry")

    def _authenticate(self, response: requests.Response, base: str) -> None:
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self.basic:
                raise RegistryRefusedError(f"{self.host}: the registry wants credentials (--creds or an auth file)")
            token = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            self.auth_header = f"Basic {token}"
            return
        if scheme != "bearer":
            raise RegistryUnavailableError(f"{self.host}: unknown auth challenge {scheme or 'none'}")
        params = dict(CHALLENGE.findall(challenge))
        realm = self._checked_url(params.get("realm", ""), "the token realm")
        query = {"scope": self.scope}
        if params.get("service"):
            query["service"] = params["service"]
        auth = self.basic if self.basic else None
        answer = self._send("GET", realm, params=query, auth=auth, with_auth=False, stream=True)  # bounded read
        if answer.status_code in (401, 403):
            raise RegistryRefusedError(f"{self.host}: the token service refused the credentials")
        if answer.status_code != 200:
            raise RegistryUnavailableError(f"{self.host}: the token service answered {answer.status_code}")
        body = _bounded_json(answer, "the token answer", self)
        bearer = body.get("token") or body.get("access_token")
        if not isinstance(bearer, str) or not bearer:
            raise RegistryUnavailableError(f"{self.host}: the token service sent no token")
        if not TOKEN.match(bearer):
            raise RegistryUnavailableError(f"{self.host}: the token service sent a malformed token")
        self.auth_header = f"Bearer {bearer}"

    def _checked_url(self, url: str, what: str) -> str:
        """An http(s) URL with a real host and no user:password@; plain http only to loopback."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise RegistryUnavailableError(f"{self.host}: {what} is not a usable URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryUnavailableError(f"{self.host}: {what} is not an http(s) URL with a host")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise RegistryUnavailableError(f"{self.host}: {what} carries a user name or password; refusing it")
        if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
            raise RegistryUnavailableError(
                f"{self.host}: refusing plain http to {parts.hostname} ({what}), off loopback"
            )
        return url

    def _verify_for(self, url: str) -> bool | str:
        """--tls-verify=false covers the loopback registry's own origin and nothing else."""
        if not self.tls_verify and urlsplit(url).netloc.lower() == self.host.lower():
            return False
        return self.ca_bundle

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RegistryUnavailableError(f"{self.host}: no answer within {self.seconds:.0f} s (--registry-timeout)")
        return left

    @_retry()
    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        allow_ssl_error: bool = False,
        with_auth: bool = True,
        **kwargs: Any,  # more of requests' own keyword arguments
    ) -> requests.Response:
        """One request, its redirects followed here hop by hop (module docstring)."""
        origin = urlsplit(url).netloc.lower()
        for _ in range(MAX_REDIRECTS + 1):
            hop_headers = dict(headers or {})
            if with_auth and self.auth_header and urlsplit(url).netloc.lower() == origin:
                hop_headers["Authorization"] = self.auth_header
            if urlsplit(url).netloc.lower() != origin:
                kwargs.pop("auth", None)  # credentials for the realm go to the realm only
            response = self._one(method, url, hop_headers, stream, allow_ssl_error, kwargs)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("Location", "")
            response.close()
            url = self._checked_url(urljoin(url, location), "a redirect")
            kwargs.pop("params", None)  # the Location is the whole next URL
        raise RegistryUnavailableError(f"{self.host}: more than {MAX_REDIRECTS} redirects")

    def _one(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        stream: bool,
        allow_ssl_error: bool,
        kwargs: dict[str, Any],
    ) -> requests.Response:
        timeout = (min(TIMEOUT[0], self._left()), min(TIMEOUT[1], self._left()))
        host = urlsplit(url).hostname
        proxies = {} if _is_loopback_host(host) else requests.utils.get_environ_proxies(url)
        try:
            response = self.session.request(
                method,
                url,
                headers=headers,
                stream=stream,
                timeout=timeout,
                allow_redirects=False,
                verify=self._verify_for(url),
                proxies=proxies,
                **kwargs,
            )
        except requests.exceptions.SSLError:
            if allow_ssl_error:
                raise
            raise RegistryUnavailableError(f"{self.host}: TLS failed ({host})") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            self._left()
            raise _RetryableError(f"{self.host}: unreachable") from None
        except requests.exceptions.RequestException as exc:  # an answer requests cannot follow
            raise RegistryUnavailableError(f"{self.host}: a request failed ({type(exc).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            response.close()
            self._left()
            raise _RetryableError(f"{self.host}: answered {response.status_code}")
        return response

    def _get(self, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self._send("GET", url, **kwargs)
        except _RetryableError as exc:
            raise RegistryUnavailableError(str(exc)) from None

    # -- content --------------------------------------------------------------------------------

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise RegistryRefusedError(f"{self.host}: refused access to {self.repo} ({what})")
        if response.status_code == 404:
            raise NoInputError(f"{self.host}/{self.repo}: no such {what}")
        if response.status_code != 200:
            raise RegistryUnavailableError(f"{self.host}: {what} answered {response.status_code}")

    def _manifest(self, reference: str) -> dict:
        url = f"{self.base}/v2/{self.repo}/manifests/{reference}"
        response = self._get(url, headers={"Accept": MANIFEST_ACCEPT}, stream=True)
        self._check(response, f"manifest {reference}")
        data = _bounded_read(response, MAX_JSON, "a manifest", self)
        if reference.startswith("sha256:") and "sha256:" + hashlib.sha256(data).hexdigest() != reference:
            raise BadImageError(f"{self.host}/{self.repo}: manifest {reference} does not match its digest")
        return parse_json(data, f"manifest {reference}")

    def _small_blob(self, digest: str, what: str) -> bytes:
        if what.startswith("manifest "):
            return json.dumps(self._manifest(digest)).encode()
        response = self._get(f"{self.base}/v2/{self.repo}/blobs/{digest}", stream=True)
        self._check(response, what)
        data = _bounded_read(response, MAX_JSON, what, self)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise BadImageError(f"{self.host}/{self.repo}: {what} does not match its digest {digest}")
        return data

    def _open_layer(self, digest: str) -> Callable[[], ByteStream]:
        def opener() -> ByteStream:
            response = self._get(f"{self.base}/v2/{self.repo}/blobs/{check_digest(digest, 'a layer')}", stream=True)
            self._check(response, f"layer {digest}")
            return _ResponseStream(response, self)

        return opener

    def image(self, reference: str, wanted_platform: str) -> Image:
        manifest = self._manifest(reference)
        image = resolve_manifest(
            manifest, self._small_blob, self._open_layer, wanted_platform, f"{self.host}/{self.repo}"
        )
        image.label = reference
        return image


class _ResponseStream:
    """A streaming body as a file: raw bytes as sent (content-encoding is not a layer's compression)."""

    def __init__(self, response: requests.Response, client: RegistryClient) -> None:
        self.response = response
        self.raw = response.raw
        self.client = client
        self.host = client.host

    def read(self, n: int = -1) -> bytes:
        self.client._left()  # a registry that drips bytes runs into the target's deadline
        try:
            # read1: at most one receive, so the deadline is checked between them (read() waits for all n)
            return self.raw.read1(n if n and n > 0 else 1024 * 1024, decode_content=True)
        except Exception as exc:  # urllib3's errors: the registry dropped the stream mid-layer
            raise RegistryUnavailableError(f"{self.host}: the layer download broke ({type(exc).__name__})") from None

    def close(self) -> None:
        self.response.close()


def _bounded_read(response: requests.Response, limit: int, what: str, client: RegistryClient | None = None) -> bytes:
    chunks = []
    total = 0
    for chunk in _chunks(response, what):
        if client is not None:
            client._left()
        total += len(chunk)
        if total > limit:
            response.close()
            raise BadImageError(f"{what} is implausibly large (over {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _chunks(response: requests.Response, what: str) -> Any:
    """The body a receive at a time (read1), so a dripping answer meets the deadline between them."""
    try:
        while chunk := response.raw.read1(65536, decode_content=True):
            yield chunk
    except Exception as exc:  # urllib3's and requests' errors: the answer broke off
        raise RegistryUnavailableError(f"{what}: the answer broke off ({type(exc).__name__})") from None
    finally:
        response.close()


def _bounded_json(response: requests.Response, what: str, client: RegistryClient | None = None) -> dict:
    data = _bounded_read(response, 1024 * 1024, what, client)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryUnavailableError(f"{what} is not JSON") from None
    return value if isinstance(value, dict) else {}
