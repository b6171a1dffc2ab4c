"""Read an image from a registry over the Registry HTTP API v2, with `requests`.

requests is imported here and only here (the audit is not on the entrypoint's
start path).  One Session; manifests and configs are small, bounded reads;
layer blobs stream (`stream=True`) into the layer walker with their digest
checked at the end.  Redirects to blob storage are followed (requests drops
the Authorization header when the host changes).  Auth: basic, or the
Bearer-token challenge of the Docker Registry token spec, with credentials
from --creds, REGISTRY_AUTH_FILE or ~/.docker/config.json (credentials.py,
credential helpers included).  429/5xx and
connection failures are retried with tenacity.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

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

TIMEOUT = (10, 60)  # connect, read (per chunk): a stalled registry fails, a slow big layer does not
ATTEMPTS = 4
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class _RetryableError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
    ) -> None:
        self.host = host
        self.repo = repo
        self.scope = scope or f"repository:{repo}:pull"
        self.progress = progress
        self.loopback = is_loopback(host)
        if not tls_verify and not self.loopback:
            raise AuditUsageError("--tls-verify=false is only allowed for a loopback registry")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "stronghold-init-audit"
        if not tls_verify:
            self.session.verify = False
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
        response = self._send("GET", f"{base}/v2/", allow_ssl_error=True)
        if response.status_code == 401:
            self._authenticate(response, base)
            response = self._send("GET", f"{base}/v2/")
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
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryUnavailableError(f"{self.host}: the token challenge has no usable realm")
        if realm.startswith("http://") and not is_loopback(realm.split("/")[2]):
            raise RegistryUnavailableError(f"{self.host}: refusing a plain-http token realm off loopback")
        query = {"scope": self.scope}
        if params.get("service"):
            query["service"] = params["service"]
        auth = self.basic if self.basic else None
        answer = self._send("GET", realm, params=query, auth=auth, with_auth=False)
        if answer.status_code in (401, 403):
            raise RegistryRefusedError(f"{self.host}: the token service refused the credentials")
        if answer.status_code != 200:
            raise RegistryUnavailableError(f"{self.host}: the token service answered {answer.status_code}")
        body = _bounded_json(answer, "the token answer")
        bearer = body.get("token") or body.get("access_token")
        if not isinstance(bearer, str) or not bearer:
            raise RegistryUnavailableError(f"{self.host}: the token service sent no token")
        self.auth_header = f"Bearer {bearer}"

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
        headers = dict(headers or {})
        if with_auth and self.auth_header:
            headers["Authorization"] = self.auth_header
        if self.session.verify is False:
            kwargs["verify"] = False  # else REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE in the environment would win
        try:
            response = self.session.request(method, url, headers=headers, stream=stream, timeout=TIMEOUT, **kwargs)
        except requests.exceptions.SSLError:
            if allow_ssl_error:
                raise
            raise RegistryUnavailableError(f"{self.host}: TLS failed") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            raise _RetryableError(f"{self.host}: unreachable") from None
        if response.status_code == 429 or response.status_code >= 500:
            response.close()
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
        data = _bounded_read(response, MAX_JSON, "a manifest")
        if reference.startswith("sha256:") and "sha256:" + hashlib.sha256(data).hexdigest() != reference:
            raise BadImageError(f"{self.host}/{self.repo}: manifest {reference} does not match its digest")
        return parse_json(data, f"manifest {reference}")

    def _small_blob(self, digest: str, what: str) -> bytes:
        if what.startswith("manifest "):
            return json.dumps(self._manifest(digest)).encode()
        response = self._get(f"{self.base}/v2/{self.repo}/blobs/{digest}", stream=True)
        self._check(response, what)
        data = _bounded_read(response, MAX_JSON, what)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise BadImageError(f"{self.host}/{self.repo}: {what} does not match its digest {digest}")
        return data

    def _open_layer(self, digest: str) -> Callable[[], ByteStream]:
        def opener() -> ByteStream:
            response = self._get(f"{self.base}/v2/{self.repo}/blobs/{check_digest(digest, 'a layer')}", stream=True)
            self._check(response, f"layer {digest}")
            return _ResponseStream(response, self.host)

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

    def __init__(self, response: requests.Response, host: str) -> None:
        self.response = response
        self.raw = response.raw
        self.host = host

    def read(self, n: int = -1) -> bytes:
        try:
            return self.raw.read(n if n and n > 0 else 1024 * 1024, decode_content=True)
        except Exception as exc:  # urllib3's errors: the registry dropped the stream mid-layer
            raise RegistryUnavailableError(f"{self.host}: the layer download broke ({type(exc).__name__})") from None

    def close(self) -> None:
        self.response.close()


def _bounded_read(response: requests.Response, limit: int, what: str) -> bytes:
    chunks = []
    total = 0
    for chunk in response.iter_content(65536):
        total += len(chunk)
        if total > limit:
            response.close()
            raise BadImageError(f"{what} is implausibly large (over {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _bounded_json(response: requests.Response, what: str) -> dict:
    data = _bounded_read(response, 1024 * 1024, what)
    try:
        value = json.loads(data)
    except ValueError:
        raise RegistryUnavailableError(f"{what} is not JSON") from None
    return value if isinstance(value, dict) else {}
