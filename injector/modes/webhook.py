"""`stronghold-init webhook`: SPEC 14's mutating admission webhook over HTTPS (docs/kubernetes.md).

One accept loop; each connection gets its own handler thread, at most
MAX_CONNECTIONS at once.  Every phase of a connection has a deadline that a
reaper thread enforces by shutting the socket down, so a slowloris client (a
byte every few seconds, in the handshake, the head or the body) holds a thread
for REQUEST_SECONDS at most, whatever the per-read timeout.  HTTP/1.1
keep-alive, because the API server keeps its connections and a TLS handshake
per review would dominate the latency.

A connection past the cap evicts the one that has waited longest for its
handshake or its next request (or, a slowloris, sent its request slowest), so
a flood of idle or slow connections cannot keep a real review out: the
attacker's own oldest connection goes first, a real request is read in
milliseconds.  Only when every slot is answering a review is a connection
closed at once (the API server retries; a queue would only hide the overload).
On SIGTERM the listener closes, idle connections are closed, and reviews under
way are answered (within their deadline) before the process ends: a rolling
update must not fail the pod creations it was reviewing.

TLS is the standard library's ssl, 1.2 or later.  Before each accepted
connection is wrapped, the certificate's and key's inode, mtime and size are
compared with what was loaded; on a change a new context is built (cert-manager
replaces the files by rename) and used for new connections only.  A pair that
does not load (the two files caught mid-rotation) keeps the old context until
the next change.

The server holds no state between reviews but caches keyed by digest, so any
number of replicas can sit behind one Service.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass

from injector.errors import ConfigError
from injector.log import log
from injector.modes import pod_mutation

MAX_BODY = 3 * 1024 * 1024  # SPEC 14: a bigger AdmissionReview is bad input
MAX_HEAD = 16 * 1024
MAX_CONNECTIONS = 64
IDLE_SECONDS = 30.0  # a kept-alive connection may wait this long for its next request (the client reconnects)
REQUEST_SECONDS = 10.0  # the handshake, or reading one request (the API server's cap); its answer gets the budget more
READ_TIMEOUT = 5.0  # one read; the deadline above bounds the total
REAP_EVERY = 0.5
EVICT_SECONDS = 2.0  # for an evicted handler to wake and free its slot (a loaded machine is slow to schedule it)


@dataclass(frozen=True)
class WebhookOptions:
    host: str
    port: int
    cert: str
    key: str
    init_image: str
    audit: str = "off"
    tls_verify: bool = True
    creds: str | None = None
    budget: float = 5.0


class Certificates:
    """The TLS context for new connections, rebuilt when the certificate or key file changes."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self._lock = threading.Lock()
        self._seen = self._stamp()
        self.context = self._load()  # at start a bad pair is a configuration error (78)

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.cert, self.key):
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
                continue
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            # No pass phrase: without one OpenSSL would prompt on the terminal, and wait there holding the lock
            context.load_cert_chain(self.cert, self.key, password=lambda: b"")
        except (OSError, ssl.SSLError) as exc:  # SSLError first: it is an OSError whose strerror says little
            if isinstance(exc, ssl.SSLError):
                reason = (exc.reason or "not a PEM chain and the unencrypted key that matches it").lower()
                reason = reason.replace("_", " ")
            else:
                reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"--tls-cert {self.cert} / --tls-key {self.key}: cannot load them ({reason})") from None
        return context

    def current(self) -> ssl.SSLContext:
        stamp = self._stamp()
        if stamp == self._seen:
            return self.context
        with self._lock:
            if stamp != self._seen:
                self._seen = stamp
                try:
                    self.context = self._load()
                    log.info("TLS certificate reloaded", cert=self.cert)
                except ConfigError as exc:  # mid-rotation: keep serving the old pair
                    log.warning(f"{exc.message}; still serving the previous certificate")
        return self.context


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + REQUEST_SECONDS
        self.since = time.monotonic()  # when it began what it is waiting for (handshake, next request, its bytes)
        self.answering = False  # a whole request read, its answer under way: never evicted, waited for at a stop

    def reap(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # unblocks the handler's read; it then closes
        except OSError:
            pass


class BadRequest(Exception):  # noqa: N818 - an answer (400), not a failure of ours
    """Answered 400 with this one line, and the connection closed."""


class Server:
    def __init__(self, options: WebhookOptions) -> None:
        from injector.modes.webhook_images import ImageLookup  # the registry client: this mode only

        self.options = options
        self.settings = pod_mutation.Settings(init_image=options.init_image)
        self.certificates = Certificates(options.cert, options.key)
        self.images = ImageLookup(
            tls_verify=options.tls_verify, creds=options.creds, audit=options.audit, budget=options.budget
        )
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._live: set[_Connection] = set()
        self._live_lock = threading.Condition()  # notified when a connection ends (the drain at a stop waits)
        family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((options.host, options.port))
        except OSError as exc:
            self.listener.close()
            raise ConfigError(f"--listen {options.host}:{options.port}: {exc.strerror or exc}") from None
        self.listener.listen(128)
        self.address = self.listener.getsockname()[:2]

    # -- connections --------------------------------------------------------------------------

    def serve_forever(self) -> None:
        threading.Thread(target=self._reaper, name="reaper", daemon=True).start()
        self.listener.settimeout(REAP_EVERY)  # so a stop is seen without a connection arriving
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                continue
            if not self._slots.acquire(blocking=False) and not self._evict():
                sock.close()  # every slot is answering a review: refuse now rather than queue (the API server retries)
                continue
            connection = _Connection(sock)
            with self._live_lock:
                self._live.add(connection)
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()
        self.listener.close()
        self._drain()

    def _evict(self) -> bool:
        """Close the connection that has waited longest without a whole request; True once its slot is free."""
        with self._live_lock:
            waiting = [c for c in self._live if not c.answering]
        if not waiting:
            return False
        min(waiting, key=lambda c: c.since).reap()
        return self._slots.acquire(timeout=EVICT_SECONDS)  # its handler wakes from the read and releases at once

    def _drain(self) -> None:
        """At a stop: close what waits, answer what is under way (each within its deadline)."""
        deadline = time.monotonic() + self.options.budget + REQUEST_SECONDS  # as an answer's own deadline
        with self._live_lock:
            while self._live and time.monotonic() < deadline:
                for connection in self._live:
                    if not connection.answering:
                        connection.reap()
                self._live_lock.wait(REAP_EVERY)

    def stop(self) -> None:
        self.stopping.set()

    def _reaper(self) -> None:
        while not self.stopping.wait(REAP_EVERY):
            now = time.monotonic()
            with self._live_lock:
                late = [c for c in self._live if c.deadline < now]
            for connection in late:
                connection.reap()

    def _handle(self, connection: _Connection) -> None:
        sock = connection.sock
        try:
            sock.settimeout(READ_TIMEOUT)
            # The wrap detaches `sock`: the reaper and an eviction must see the TLS socket before the
            # handshake starts, or their shutdown hits a dead descriptor and the handshake runs on.
            tls = self.certificates.current().wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            connection.sock = tls
            tls.do_handshake()
            self._requests(connection, tls)
        except (OSError, ssl.SSLError, ValueError):
            pass  # a client that went away, a failed handshake, a reaped slowloris: nothing to answer
        finally:
            try:
                connection.sock.close()
            except OSError:
                pass
            with self._live_lock:
                self._live.discard(connection)
                self._live_lock.notify_all()
            self._slots.release()

    def _requests(self, connection: _Connection, tls: ssl.SSLSocket) -> None:
        buffer = b""
        while not self.stopping.is_set():
            connection.answering = False
            connection.since = time.monotonic()
            connection.deadline = connection.since + IDLE_SECONDS
            if not buffer:
                tls.settimeout(IDLE_SECONDS)  # waiting for the next request is not a slow read
                try:
                    first = tls.recv(65536)
                finally:
                    tls.settimeout(READ_TIMEOUT)
                if not first:
                    return
                buffer = first
            connection.since = time.monotonic()
            connection.deadline = connection.since + REQUEST_SECONDS
            try:
                method, path, headers, buffer = _read_head(tls, buffer)
                body, buffer = _read_body(tls, headers, buffer)
                connection.answering = True
                # the deadline is for slow clients: the answer itself may wait out the registry budget
                connection.deadline = time.monotonic() + self.options.budget + REQUEST_SECONDS
                status, payload, ctype = self._route(method, path, body)
            except BadRequest as bad:
                log.warning("bad request", reason=str(bad))
                _send(tls, 400, (str(bad) + "\n").encode(), "text/plain; charset=utf-8", close=True)
                return
            close = headers.get("connection", "").lower() == "close" or self.stopping.is_set()
            _send(tls, status, payload, ctype, close=close)
            if close:
                return

    # -- requests -----------------------------------------------------------------------------

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        path = path.split("?", 1)[0]
        if path == "/healthz":
            if method != "GET":
                return 405, b"GET only\n", "text/plain"
            return 200, b"ok\n", "text/plain"
        if path == "/mutate":
            if method != "POST":
                return 405, b"POST only\n", "text/plain"
            return 200, json.dumps(self.review(body)).encode(), "application/json"
        return 404, b"POST /mutate or GET /healthz\n", "text/plain"

    def review(self, body: bytes) -> dict:
        """An AdmissionReview in, one out (SPEC 14).  Raises BadRequest for what is not one."""
        try:
            review = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the C parser goes
            raise BadRequest("the body is not JSON (or nested too deep)") from None
        if not (
            isinstance(review, dict)
            and review.get("apiVersion") == "admission.k8s.io/v1"
            and review.get("kind") == "AdmissionReview"
            and isinstance(review.get("request"), dict)
            and isinstance(review["request"].get("uid"), str)
        ):
            raise BadRequest("not an admission.k8s.io/v1 AdmissionReview with a request and its uid")
        request = review["request"]
        kind = request.get("kind")
        if not (isinstance(kind, dict) and kind.get("kind") == "Pod" and kind.get("group", "") == ""):
            raise BadRequest("the AdmissionReview is not about a Pod")
        response: dict = {"uid": request["uid"], "allowed": True}
        pod = request.get("object")
        if request.get("operation") == "CREATE" and not isinstance(pod, dict):
            raise BadRequest("the AdmissionReview has no Pod object")
        if pod_mutation.applies(request) is None and isinstance(pod, dict):
            _check_size(pod)
            response.update(self._decide(pod, request))
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}

    def _decide(self, pod: dict, request: dict) -> dict:
        where = f"{request.get('namespace') or '?'}/{_pod_name(pod)}"
        lookup = self.images.review(
            pod_mutation.commands_needed(pod), pod_mutation.images_of(pod) if self.options.audit != "off" else []
        )
        decision = pod_mutation.mutate(pod, self.settings, lookup.commands)
        warnings = [*map(pod_mutation.short_warning, lookup.warnings), *decision.warnings]
        if decision.allowed and lookup.refusal:
            decision = pod_mutation.Decision(allowed=False, message=lookup.refusal)
        out: dict = {}
        if warnings:
            out["warnings"] = warnings[:20]
        if not decision.allowed:
            log.info("pod refused", pod=where, reason=decision.message)
            out["allowed"] = False
            out["status"] = {"code": 403, "reason": "Forbidden", "message": "stronghold-init: " + decision.message}
            return out
        if decision.patch:
            out["patchType"] = "JSONPatch"
            out["patch"] = base64.b64encode(json.dumps(decision.patch).encode()).decode()
            log.debug("pod injected", pod=where)
        return out


def _pod_name(pod: dict) -> str:
    metadata = pod.get("metadata")
    if isinstance(metadata, dict):
        return str(metadata.get("name") or (str(metadata.get("generateName") or "") + "*"))
    return "?"


def _check_size(pod: dict) -> None:
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise BadRequest("the Pod has no spec")
    # ephemeral containers too: --audit looks at their images (pod_mutation.images_of)
    count = sum(len(spec[k]) for k in pod_mutation.CONTAINER_LISTS if isinstance(spec.get(k), list))
    if count > pod_mutation.MAX_CONTAINERS:
        raise BadRequest(f"the Pod has {count} containers; at most {pod_mutation.MAX_CONTAINERS} are reviewed")


def _read_head(tls: ssl.SSLSocket, buffer: bytes) -> tuple[str, str, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise BadRequest(f"request head over {MAX_HEAD} bytes")
        more = tls.recv(65536)
        if not more:
            raise OSError("closed mid-request")
        buffer += more
    head, _, rest = buffer.partition(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise BadRequest(f"request head over {MAX_HEAD} bytes")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("not an HTTP/1.1 request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest("a malformed header line")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers, rest


def _read_body(tls: ssl.SSLSocket, headers: dict[str, str], buffer: bytes) -> tuple[bytes, bytes]:
    if "transfer-encoding" in headers:
        raise BadRequest("send the body with Content-Length, not Transfer-Encoding")
    length_text = headers.get("content-length", "0")
    # isdigit() alone takes "²" (which int() refuses) and int() refuses more than 4300 digits
    if not (length_text.isascii() and length_text.isdigit() and len(length_text) <= 12):
        raise BadRequest("Content-Length is not a number")
    length = int(length_text)
    if length > MAX_BODY:
        raise BadRequest(f"the body is {length} bytes; at most {MAX_BODY}")
    chunks = [buffer]
    have = len(buffer)
    while have < length:
        more = tls.recv(min(65536, length - have))
        if not more:
            raise OSError("closed mid-body")
        chunks.append(more)
        have += len(more)
    data = b"".join(chunks)
    return data[:length], data[length:]


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _send(tls: ssl.SSLSocket, status: int, payload: bytes, ctype: str, *, close: bool) -> None:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    tls.sendall(head.encode() + payload)


def serve(options: WebhookOptions) -> int:
    """Run until SIGTERM or SIGINT; the first stdout line is the URL (port 0 picks one)."""
    server = Server(options)
    # Reviews are short and many run at once: hand the GIL over more often than every 5 ms (the
    # default), so one review's tail is not another's whole time slice (bench/webhook.py's p99).
    sys.setswitchinterval(0.0005)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    host, port = server.address
    shown = f"[{host}]" if ":" in host else host
    print(f"https://{shown}:{port}", flush=True)
    log.info("webhook listening", address=f"{shown}:{port}", audit=options.audit)
    server.serve_forever()
    log.info("webhook stopped")
    return 0
