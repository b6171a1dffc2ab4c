"""Decide what is a credential: the only module that ever holds a secret value.

Token formats (AWS, Stripe, GitHub, GitLab, npm, PyPI, Slack, SendGrid, JWT,
basic auth in URLs, secret-sounding assignments...) come from detect-secrets
(Yelp), called plugin by plugin behind `Detector.scan_line`; see docs/audit.md
for why that library and which of its plugins.  What is ours: the structure of
images (which variable, which file, which build arg), the known credential
files, PEM private-key blocks whole, and the judgement of what is *not* a
finding: references, placeholders, paths, checksums, UUIDs.

Every function returns `(rule, key, value)` triples; `Finding.of()` turns them
into redacted findings and the value goes no further.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import time
from collections.abc import Iterator
from functools import cached_property

from injector.audit.errors import BadImageError

Hit = tuple[str, str | None, str]  # (rule, key, exact value)

REFERENCE = re.compile(r"^\s*(stronghold|vault|vault-token)://")
PLACEHOLDER_WORDS = {
    "changeme", "change_me", "change-me", "changeit", "change_it", "password", "passwd", "secret", "token",
    "example", "placeholder", "dummy", "sample", "redacted", "none", "null", "nil", "undefined", "todo", "tbd",
    "fixme", "test", "testing", "empty", "default", "foo", "bar", "foobar", "baz", "secretkey", "mysecret",
    "mypassword", "yourpassword", "apikey", "api_key", "true", "false", "yes", "no", "on", "off", "disabled",
    "notset", "not_set", "unset", "insecure", "required", "optional", "string", "value", "xxx", "abc123",
}  # fmt: skip
PLACEHOLDER_SHAPES = re.compile(
    r"""^(?:
        [xX*._#-]{3,}                       # xxx, ***, ...
      | \$\{[^}]*\}  | \$\([^)]*\) | \$[A-Za-z_][A-Za-z0-9_]*   # ${VAR}, $(cmd), $VAR
      | \{\{.*\}\}   | <[^<>]+>   | %\([^)]*\)s | %[A-Za-z_]+% | @[A-Za-z_]+@   # templates
      | (?:your|my|insert|enter|replace|put)[-_ ].*    # your-api-key, insert_token_here
    )$""",
    re.VERBOSE | re.IGNORECASE,
)
PLACEHOLDER_INSIDE = re.compile(r"example|placeholder|changeme|change[-_]me|dummy|xxxxx|\$\{|\{\{", re.IGNORECASE)
HEXDIGEST = re.compile(r"^(?:sha\d*[:=-]|md5[:=-])?[0-9a-fA-F]{32,128}$")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SRI_HASH = re.compile(r"^sha(?:256|384|512)-[A-Za-z0-9+/]{40,}={0,2}$")

# A name is secret-sounding when one of its words is, unless its last word says
# the value is *about* a secret (where it is, how long, which one), not the secret.
SECRET_WORDS = {
    "password", "passwd", "pass", "pwd", "passphrase", "secret", "secrets", "token", "tokens", "apikey",
    "credential", "credentials", "creds", "privatekey", "auth", "authtoken", "accesstoken", "secretkey",
}  # fmt: skip
KEY_QUALIFIERS = {
    "api", "access", "private", "secret", "account", "signing", "encryption", "master", "license", "service",
    "client", "storage", "app", "auth", "db", "database", "priv", "session", "admin", "root", "ssh",
}  # fmt: skip
NOT_THE_SECRET = {
    "id", "ids", "file", "path", "dir", "directory", "url", "uri", "host", "hostname", "port", "user", "username",
    "name", "type", "version", "length", "len", "size", "min", "max", "expiry", "expires", "expiration", "ttl",
    "timeout", "public", "pub", "policy", "header", "algorithm", "algo", "mode", "method", "env", "prefix",
    "suffix", "format", "field", "endpoint", "location", "hash", "hashed", "sha", "sha1", "sha256", "sha512",
    "md5", "checksum", "digest", "fingerprint", "gpg", "pgp", "enabled", "required", "rotation", "count",
    "command", "cmd", "helper", "provider", "store", "keyring", "salt", "rounds", "hint", "regex", "pattern",
    "template", "reset", "mount", "source",
}  # fmt: skip
NOT_SECRET_KEYS = {
    "cache", "sort", "primary", "partition", "foreign", "hot", "map", "lookup", "routing", "idempotency", "dedup",
    "unique", "composite", "object", "s3", "bucket", "index", "hash", "group", "shard", "row", "column", "table",
    "redis", "kv", "registry", "release",
}  # fmt: skip
ABOUT_NOT_SECRET = {"gpg", "pgp", "fingerprint", "checksum", "sha256", "sha512", "sha1", "md5", "hash", "public", "pub"}
WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def name_words(name: str) -> list[str]:
    return [w.lower() for w in WORD_SPLIT.split(name) if w]


def is_secret_name(name: str) -> bool:
    words = name_words(name)
    if not words or words[-1] in NOT_THE_SECRET or ABOUT_NOT_SECRET.intersection(words):
        return False
    for index, word in enumerate(words):
        if word in SECRET_WORDS:
            return True
        if word in ("key", "keys") and index > 0 and words[index - 1] in KEY_QUALIFIERS:
            return True
        if word == "key" and index == len(words) - 1 and index > 0 and words[index - 1] not in NOT_SECRET_KEYS:
            return True  # STRIPE_KEY, SENDGRID_KEY: a service's key
    return False


def is_reference(value: str) -> bool:
    return bool(REFERENCE.match(value))


def is_placeholder(value: str) -> bool:
    """`changeme`, `${VAR}`, `xxx`, `<your-token>`: documentation, not a credential."""
    stripped = value.strip().strip("'\"`")
    if stripped.lower() in PLACEHOLDER_WORDS or PLACEHOLDER_SHAPES.match(stripped):
        return True
    return bool(PLACEHOLDER_INSIDE.search(stripped)) or len(set(stripped.lower())) <= 2


def is_not_a_value(value: str) -> bool:
    """Empty, tiny, a path, a number or a boolean: never a credential, even with --strict."""
    stripped = value.strip().strip("'\"`")
    if len(stripped) < 4 or (stripped.isdigit() and len(stripped) < 8):
        return True
    return stripped.startswith(("/", "./", "~/", "file:")) and " " not in stripped


def is_checksum_or_id(value: str) -> bool:
    stripped = value.strip().strip("'\"`")
    return bool(HEXDIGEST.match(stripped) or UUID.match(stripped) or SRI_HASH.match(stripped))


def entropy(value: str) -> float:
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()) if value else 0.0


def unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"`":
        return value[1:-1]
    return value


# THE table of trigger literals (the only one): for each detect-secrets plugin we use, and for our own
# rules, literals of which every one of its patterns holds at least one, as (literal, case-insensitive?).
# It does two jobs, so they cannot disagree: in a file, only the lines holding one of these literals are
# looked at at all (the pre-filter below searches the joined text for exactly these); on a line, a plugin
# none of whose literals is there is not run.  A plugin missing here (Discord: its pattern has no literal)
# runs on every line that reaches `scan_line` (every config and history line, and file lines another
# trigger picked).  tests/test_audit_detect_gates.py checks every literal against the plugins' patterns.
TRIGGERS: dict[str, tuple[tuple[str, bool], ...]] = {
    "AWSKeyDetector": (("A3T", False), ("ABIA", False), ("ACCA", False), ("AKIA", False), ("ASIA", False),
                       ("aws", True)),
    "AzureStorageKeyDetector": (("AccountKey=", False),),
    "BasicAuthDetector": (("://", False),),
    "GitHubTokenDetector": (("ghp_", False), ("gho_", False), ("ghu_", False), ("ghs_", False), ("ghr_", False)),
    "GitLabTokenDetector": (("glpat-", False), ("gldt-", False), ("glft-", False), ("glsoat-", False),
                            ("glrt-", False), ("glcbt-", False), ("glimt-", False), ("glptt-", False),
                            ("glagent-", False), ("gloas-", False), ("GR1348941", False)),
    "JwtTokenDetector": (("eyJ", False),),
    "MailchimpDetector": (("-us", False),),
    "NpmDetector": (("_authToken", False),),
    "OpenAIDetector": (("T3BlbkFJ", False),),
    "PypiTokenDetector": (("pypi-", False),),
    "SendGridDetector": (("SG.", False),),
    "SlackDetector": (("xox", True), ("hooks.slack.com", True)),
    "SquareOAuthDetector": (("sq0csp-", False),),
    "StripeDetector": (("k_live_", False),),
    "TwilioKeyDetector": (("AC", False), ("SK", False)),
    # KeywordDetector's words (its DENYLIST, checked below) and our own rules on a line
    "KeywordDetector": (("key", True), ("pass", True), ("pwd", True), ("secret", True), ("contrase", True)),
    "authorization-header": (("authorization", True),),
}  # fmt: skip
# What a trigger line must also hold before detect-secrets sees it (cheap, and a superset of the plugin's
# own match); None: a keyword line, which must look like an assignment (KEYWORD_LINE).
TOKEN_RUN = r"[A-Za-z0-9_-]{8}"
CONFIRM: dict[str, str | None] = {
    "BasicAuthDetector": r"://[^\s/@:]{1,64}:[^\s/@]{1,128}@",  # most URL lines hold no credential
    "MailchimpDetector": r"[0-9a-z]{32}-us[0-9]",
    "TwilioKeyDetector": r"(?:AC|SK)[a-z0-9]{32}",  # "AC" and "SK" are in every other word
    "KeywordDetector": None,
    "authorization-header": None,
}
OUR_RULES = ("authorization-header",)


def _trigger_patterns(folded: bool) -> list[tuple[re.Pattern[bytes], re.Pattern[str] | None]]:
    """The pre-filter: one pattern per (first byte, confirmation) of the table's literals.

    Python's `re` scans for a pattern with a literal prefix at memory speed but tries an
    alternation of different first characters byte by byte (~30x slower); literals sharing a first
    byte share a prefix, which `re` factors out.
    """
    groups: dict[tuple[bytes, str | None], set[bytes]] = {}
    for rule, literals in TRIGGERS.items():
        confirm = CONFIRM.get(rule, TOKEN_RUN)
        for literal, insensitive in literals:
            if insensitive == folded:
                text = literal.lower().encode() if folded else literal.encode()
                groups.setdefault((text[:1], confirm), set()).add(text)
    return [
        (re.compile(b"|".join(re.escape(t) for t in sorted(texts))), re.compile(confirm) if confirm else None)
        for (_, confirm), texts in sorted(groups.items(), key=lambda item: item[0][0])
    ]


_FOLDED_RES = _trigger_patterns(folded=True)  # searched in the lower-cased text
_EXACT_RES = _trigger_patterns(folded=False)
# A keyword line is worth detect-secrets only if the keyword is followed by an assignment of something.
KEYWORD_LINE = re.compile(
    r"""(?i)(?:pass|pwd|secret|key|auth|priv|token|bearer|contrase)[^\n]{0,60}?"""
    r"""(?:["'`][^"'`\s]{4,}|(?::=|=>|[:=])\s*[^\s(){}\[\];,"'`]{6,}(?:\s|$))"""
)
VENDOR_DIRS = (
    "/usr/share/", "/usr/lib/", "/usr/lib64/", "/usr/include/", "/usr/libexec/", "/lib/", "/lib64/",
    "/var/lib/dpkg/", "/var/lib/apt/", "/var/lib/apk/", "/var/lib/rpm/", "/usr/local/lib/", "/usr/local/share/",
    "/usr/local/include/", "/opt/conda/pkgs/",
)  # fmt: skip


def is_vendor_path(path: str) -> bool:
    """Files a package manager installed: only token formats are looked for there, not keywords."""
    return path.startswith(VENDOR_DIRS) or "/node_modules/" in path or "/site-packages/" in path


# PEM blocks are matched in two linear passes (every BEGIN, every END, then paired in order), not with
# `BEGIN.*?END\1`: that backtracks quadratically over a window of BEGIN lines (issue #20).
PEM_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]{1,20} ){0,6})PRIVATE KEY(?: BLOCK)?-----")
PEM_END = re.compile(r"-----END ((?:[A-Z0-9]{1,20} ){0,6})PRIVATE KEY(?: BLOCK)?-----")
WINDOW_SECONDS = 60.0  # one window (4 MiB) of one file may take this long to scan; then the target is refused
AUTH_HEADER = re.compile(r"(?i)authorization:\s*(?:bearer|token|basic)\s+([A-Za-z0-9._~+/=-]{12,})")
WORDLIKE = re.compile(r"^[A-Za-z_]{1,15}$")
ASSIGNMENT_KEY = re.compile(r"""([A-Za-z_][A-Za-z0-9_.\-]*)["'\]]*\s*(?::=|=>|==|[:=]|\s)\s*["'`]?\s*$""")
PLUGINS = (  # the detect-secrets plugins used; the rest guess from entropy alone or match too widely
    "AWSKeyDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "JwtTokenDetector",
    "KeywordDetector",
    "MailchimpDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TwilioKeyDetector",
)


# KeywordDetector's word list (its DENYLIST) and the literals each of its words holds.
KEYWORD_DENYLIST = (
    "api_?key", "auth_?key", "service_?key", "account_?key", "db_?key", "database_?key", "priv_?key",
    "private_?key", "client_?key", "db_?pass", "database_?pass", "key_?pass", "password", "passwd", "pwd",
    "secret", "contraseña", "contrasena",
)  # fmt: skip
# A pattern's group 1 is the secret (AWS's keyword form, the password of basic auth, the npm token);
# every other plugin's secret is its whole match (GitHub's and GitLab's groups are only the prefix).
SECRET_IS_GROUP = {"AWSKeyDetector", "BasicAuthDetector", "NpmDetector"}
JWT_TAIL = re.compile(r"[A-Za-z0-9_.+/=-]*")
NOT_TOKEN = re.compile(r"""[\s'"`]""")


def _may_match(plugin: str, line: str, lower: str, keyword_gate: bool) -> bool:
    if plugin == "KeywordDetector" and not keyword_gate:
        return True  # its word list is not the one TRIGGERS was read from: no gate
    needs = TRIGGERS.get(plugin, ())
    return not needs or any(literal in (lower if folded else line) for literal, folded in needs)


class Detector:
    """The one entry point to detection.  `strict` makes placeholders findings."""

    def __init__(self, *, strict: bool = False, window_seconds: float = WINDOW_SECONDS) -> None:
        self.strict = strict
        self.window_seconds = window_seconds

    @cached_property
    def _plugins(self) -> list[tuple[str, object]]:
        # Imported here: detect-secrets costs ~100 ms and only the audit uses it.
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

        known: dict[str, type] = get_mapping_from_secret_type_to_class()  # secret type -> plugin class
        classes = {plugin.__name__: plugin for plugin in known.values()}
        return [(name, classes[name]()) for name in PLUGINS if name in classes]

    @cached_property
    def _keyword_gate(self) -> bool:
        """Gate KeywordDetector on KEYWORD_NEEDS only while its word list is the one they were read from."""
        from detect_secrets.plugins import keyword

        return tuple(keyword.DENYLIST) == KEYWORD_DENYLIST

    @cached_property
    def _keyword_regexes(self):  # type: ignore[no-untyped-def]
        from detect_secrets.plugins import keyword

        return keyword

    # -- values with a name: Env, Labels, build args, dotenv lines ---------------------------------

    def check_assignment(self, key: str, value: str) -> Iterator[Hit]:
        value = unquote(value)
        if not value or is_reference(value) or is_not_a_value(value):
            return
        found = False
        for rule, hit_key, hit in self.scan_line(f"{key}={value}", filename="", assignment_key=key):
            found = True
            yield rule, hit_key or key, hit
        if not found and is_secret_name(key) and self._counts(value):
            yield "secret-named-variable", key, value

    def _counts(self, value: str) -> bool:
        if is_not_a_value(value) or is_reference(value):
            return False
        return self.strict or not is_placeholder(value)

    # -- free text: a file's lines, a RUN line, a command ---------------------------------------

    def scan_line(
        self, line: str, *, filename: str, assignment_key: str | None = None, in_file: bool = False
    ) -> Iterator[Hit]:
        if len(line) > 4096:
            line = line[:4096]
        seen: set[str] = set()
        for match in AUTH_HEADER.finditer(line):
            value = match.group(1)
            if value not in seen and self._counts(value) and not is_checksum_or_id(value):
                seen.add(value)
                yield "authorization-header", "Authorization", value
        lower = line.lower()
        for name, plugin in self._plugins:
            if not _may_match(name, line, lower, self._keyword_gate):
                continue  # a literal every one of the plugin's patterns needs is absent: skip its regexes
            for raw in self._plugin_values(name, plugin, line, filename):
                value = unquote(raw)
                if value in seen or not self._plugin_hit_counts(name, value, line, in_file):
                    continue
                key = assignment_key or key_before(line, raw)
                if name == "KeywordDetector" and key and not is_secret_name(key):
                    continue
                seen.add(value)
                yield f"detect-secrets/{name}", key, value

    def _plugin_values(self, name: str, plugin: object, line: str, filename: str) -> Iterator[str]:
        """What the plugin matches on the line: the whole secret, never just the prefix its group captures."""
        if name == "KeywordDetector":
            module = self._keyword_regexes
            regexes = module.REGEX_BY_FILETYPE.get(
                module.determine_file_type(filename or "x.txt"), module.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
            )
            yield from plugin.analyze_string(line, regexes)  # type: ignore[attr-defined]
            return
        for regex in plugin.denylist:  # type: ignore[attr-defined]
            for match in regex.finditer(line):
                value = match.group(1) if regex.groups and name in SECRET_IS_GROUP else match.group(0)
                if name == "AzureStorageKeyDetector":
                    value = value.removeprefix("AccountKey=")  # the key, not the name of its field
                if name == "NpmDetector":
                    value = NOT_TOKEN.split(value.strip(), 1)[0]  # its `npm_.+` runs to the end of the line
                if not value:
                    continue
                if name == "JwtTokenDetector":
                    # its pattern ends in a lazy `[...]*?`, so its match stops before the signature: take it all
                    whole = line[match.start() : JWT_TAIL.match(line, match.end()).end()]  # type: ignore[union-attr]
                    valid = plugin.is_formally_valid  # type: ignore[attr-defined]
                    value = whole if valid(whole) else value
                    if not valid(value):
                        continue
                yield value

    def _plugin_hit_counts(self, plugin: str, value: str, line: str, in_file: bool) -> bool:
        if not self._counts(value):
            return False
        if plugin in ("KeywordDetector", "BasicAuthDetector"):
            if in_file and not self.strict and (WORDLIKE.match(value) or any(c.isspace() for c in value)):
                return False  # prose, a variable name or a prompt, not a credential
            from detect_secrets.filters import heuristic

            if (
                is_checksum_or_id(value)
                or heuristic.is_templated_secret(value)
                or heuristic.is_prefixed_with_dollar_sign(value)
                or heuristic.is_sequential_string(value)
                or (plugin == "KeywordDetector" and heuristic.is_indirect_reference(line))
                or (plugin == "KeywordDetector" and not self.strict and entropy(value) < 2.5)
            ):
                return False
        return True

    # -- files ------------------------------------------------------------------------------------

    def scan_texts(self, items: list[tuple[str, bytes]]) -> list[list[Hit]]:
        """`scan_text` over many (path, content) pairs at once: the hits of each, in order.

        The trigger search runs once over all the contents joined (one `re` call per
        trigger group for a batch, not per small file: on an OS image most text files
        are a few KiB and the per-call cost would dominate); only the lines it marks
        are handed back to each file's own scan.
        """
        results: list[list[Hit]] = [[] for _ in items]
        for keywords in (True, False):
            chosen = [i for i, (path, _) in enumerate(items) if is_vendor_path(path) != keywords]
            if not chosen:
                continue
            joined = b"\n".join(items[i][1] for i in chosen)  # a newline apart: no line spans two files
            bounds: list[int] = []
            offset = 0
            for i in chosen:
                bounds.append(offset)
                offset += len(items[i][1]) + 1
            per_item: list[dict[int, list[re.Pattern[str]] | None]] = [{} for _ in chosen]
            for start, confirms in _line_starts(joined, keywords=keywords).items():
                which = bisect.bisect_right(bounds, start) - 1
                per_item[which][start - bounds[which]] = confirms
            any_pem = b"PRIVATE KEY" in joined
            del joined
            for which, i in enumerate(chosen):
                path, data = items[i]
                # Most files of an image have no trigger line, no key block and a plain name: nothing to do.
                if (
                    per_item[which]
                    or (any_pem and b"PRIVATE KEY" in data)
                    or is_known_credential_file(path)
                    or (len(data) <= BARE_MAX and may_name_a_secret(path))
                ):
                    results[i] = list(self.scan_text(data, path=path, starts=per_item[which]))
        return results

    def scan_text(
        self, data: bytes, *, path: str, starts: dict[int, list[re.Pattern[str]] | None] | None = None
    ) -> Iterator[Hit]:
        """Every credential in a text file's content (a window of it, for a large file).

        `starts`: the trigger lines already found by `scan_texts`; searched here when not given.
        """
        seen: set[str] = set()
        name = path.rsplit("/", 1)[-1]
        if is_known_credential_file(path):
            for hit in self._known_file(data.decode("utf-8", "replace"), path):
                if hit[2] not in seen:
                    seen.add(hit[2])
                    yield hit
        if len(data) <= BARE_MAX and may_name_a_secret(path):
            bare = self._bare_value(data, path)
            if bare is not None:
                seen.add(bare[2])
                yield bare
        if b"PRIVATE KEY" in data:
            for block in pem_blocks(data.decode("utf-8", "replace")):
                body = block.split("-----")[2] if block.count("-----") >= 4 else ""
                if block not in seen and (self.strict or len(body.strip()) >= 64):
                    seen.add(block)
                    yield "private-key", None, block
        if starts is None:
            starts = _line_starts(data, keywords=not is_vendor_path(path))
        deadline = time.monotonic() + self.window_seconds
        for line in _candidate_lines(data, starts, keywords=not is_vendor_path(path)):
            if time.monotonic() > deadline:
                # Not scanned is not clean: the whole target is refused rather than vouched for.
                raise BadImageError(
                    f"{path}: scanning one {len(data)}-byte window took over {self.window_seconds:.0f} s; "
                    "refusing to call it clean"
                )
            for rule, key, value in self.scan_line(line, filename=name, in_file=True):
                if value not in seen and not any(value in block for block in seen if block.startswith("-----")):
                    seen.add(value)
                    yield rule, key, value

    def _bare_value(self, data: bytes, path: str) -> Hit | None:
        """A file that holds one high-entropy value and nothing else, named for what it is (`aws_secret`).

        Nothing in the content says "secret": the name does.  Checksums, UUIDs,
        lock files and public keys are not findings (names that say *about* a
        secret, like `token.sha256` or `id_rsa.pub`, are not secret names).
        """
        name = path.rsplit("/", 1)[-1]
        if is_vendor_path(path) or not is_secret_file_name(name):
            return None
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None
        if "-----" in text:
            return None  # armoured: a PEM block, the private-key rule's (whole block, or not a key)
        if KEY_FILE_NAME.match(name) and "\n" in text:
            text = "".join(text.split())  # a key's base64 body, wrapped, without its armour
        if not BARE_TOKEN.match(text) or not self._counts(text):
            return None
        if UUID.match(text) or SRI_HASH.match(text) or not any(c.isdigit() for c in text):
            return None
        if not any(c.isalpha() for c in text) or entropy(text) < (3.0 if HEX.match(text) else 3.5):
            return None
        return "secret-named-file", None, text

    def _known_file(self, text: str, path: str) -> Iterator[Hit]:
        name = path.rsplit("/", 1)[-1]
        lower = path.lower()
        if name in (".npmrc", "npmrc"):
            for match in re.finditer(r"(?m)(?:^|:)(_authToken|_auth|_password)\s*=\s*(\S+)", text):
                if self._counts(unquote(match.group(2))):
                    yield "npmrc-credential", match.group(1), unquote(match.group(2))
        elif name == ".pypirc":
            for match in re.finditer(r"(?mi)^\s*password\s*[:=]\s*(\S.*?)\s*$", text):
                if self._counts(match.group(1)):
                    yield "pypirc-password", "password", match.group(1)
        elif name in (".netrc", "_netrc"):
            for match in re.finditer(r"(?:^|\s)password\s+(\S+)", text):
                if self._counts(match.group(1)):
                    yield "netrc-password", "password", match.group(1)
        elif name == ".git-credentials":
            for match in re.finditer(r"://([^:/\s@]+):([^@\s]+)@", text):
                if self._counts(match.group(2)):
                    yield "git-credentials", match.group(1), match.group(2)
        elif lower.endswith((".docker/config.json", "containers/auth.json")):
            yield from self._docker_config(text)
        elif lower.endswith((".aws/credentials", ".aws/config")):
            for match in re.finditer(r"(?mi)^\s*(aws_secret_access_key|aws_session_token)\s*=\s*(\S+)", text):
                if self._counts(match.group(2)):
                    yield "aws-credentials", match.group(1), match.group(2)
        elif lower.endswith(".kube/config") or ("kind: Config" in text and "users:" in text and "clusters:" in text):
            pattern = r"(?m)^\s*(token|client-key-data|password|id-token|refresh-token)\s*:\s*[\"']?([^\s\"']+)"
            for match in re.finditer(pattern, text):
                if self._counts(match.group(2)):
                    yield "kubeconfig-credential", match.group(1), match.group(2)
        if is_dotenv_name(name):
            for key, value in parse_dotenv(text):
                for rule, hit_key, hit in self.check_assignment(key, value):
                    yield ("dotenv-" + rule if rule == "secret-named-variable" else rule), hit_key, hit

    def _docker_config(self, text: str) -> Iterator[Hit]:
        try:
            config = json.loads(text)
        except ValueError:
            return
        auths = config.get("auths") if isinstance(config, dict) else None
        if not isinstance(auths, dict):
            return
        for host, entry in auths.items():
            if not isinstance(entry, dict):
                continue
            for field in ("auth", "password", "identitytoken", "registrytoken"):
                value = entry.get(field)
                if isinstance(value, str) and self._counts(value):
                    yield "docker-config-auth", f"auths.{host}.{field}", value


KNOWN_NAMES = {".npmrc", "npmrc", ".pypirc", ".netrc", "_netrc", ".git-credentials"}
KNOWN_SUFFIXES = (".docker/config.json", "containers/auth.json", ".aws/credentials", ".aws/config", ".kube/config")


BARE_MAX = 4096  # a credential in a file of its own is short; a larger file is not "only a value"
BARE_TOKEN = re.compile(r"^[A-Za-z0-9+/=_.~:-]{16,4096}$")
HEX = re.compile(r"^[0-9a-fA-F]+$")
KEY_FILE_NAME = re.compile(r"^(?:id_(?:rsa|dsa|ecdsa|ed25519)(?:\.(?!pub$)[^.]+)*|[^/]*\.(?:pem|key))$", re.I)
NAME_HINTS = ("secret", "token", "key", "pass", "pwd", "cred", "auth", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")
NOT_SECRET_SUFFIXES = (
    ".lock", ".sum", ".sums", ".sig", ".asc", ".pub", ".crt", ".cer", ".csr", ".md5", ".sha1", ".sha256", ".sha512",
    ".json", ".yaml", ".yml", ".toml", ".xml", ".html", ".md", ".txt.sig",
)  # fmt: skip


def may_name_a_secret(path: str) -> bool:
    """A cheap first look at a file's name (every small file of an image passes here)."""
    name = path[path.rfind("/") + 1 :].lower()
    return any(hint in name for hint in NAME_HINTS) and not name.endswith(NOT_SECRET_SUFFIXES)


def is_secret_file_name(name: str) -> bool:
    """`aws_secret`, `api-token`, `.db_password`, `id_rsa.bak`, `master.key`: the name says it holds a credential."""
    if name.lower().endswith(NOT_SECRET_SUFFIXES):
        return False
    if KEY_FILE_NAME.match(name):
        return True
    stem = name.lstrip(".")
    for suffix in (".txt", ".bak", ".old", ".orig", ".save", ".tmp", ".env"):
        stem = stem.removesuffix(suffix)
    return is_secret_name(stem)


def is_known_credential_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    lower = path.lower()
    return (
        name in KNOWN_NAMES
        or lower.endswith(KNOWN_SUFFIXES)
        or is_dotenv_name(name)
        or (name in ("kubeconfig", "config") and "/.kube/" in "/" + lower)
        or name.endswith((".kubeconfig", "kubeconfig.yaml", "kubeconfig.yml"))
    )


def is_dotenv_name(name: str) -> bool:
    return name == ".env" or name.startswith(".env.") or (name.endswith(".env") and len(name) > 4)


def parse_dotenv(text: str) -> Iterator[tuple[str, str]]:
    """A dotenv file's variables, read by python-dotenv: the parser `--env-file` and the dev proxy use too,
    so the audit sees exactly the values those would load (quotes, `export`, comments, multi-line values)."""
    import io
    import logging

    from dotenv import dotenv_values

    # python-dotenv warns about each line it cannot parse through `logging`; an image's hostile .env
    # must not write to our terminal (nothing configures logging, so the warning would reach stderr).
    logging.getLogger("dotenv.main").disabled = True
    for key, value in dotenv_values(stream=io.StringIO(text), interpolate=False).items():
        if value is not None and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", key):
            yield key, value


def key_before(line: str, value: str) -> str | None:
    index = line.find(value)
    if index <= 0:
        return None
    match = ASSIGNMENT_KEY.search(line[:index])
    return match.group(1) if match else None


def _mark_lines(
    pattern: re.Pattern[bytes], haystack: bytes, starts: dict[int, list[re.Pattern[str]] | None], confirm: object
) -> None:
    """Record the start of every line holding `pattern`; one step per line, not per occurrence."""
    search = pattern.search
    position = 0
    while match := search(haystack, position):
        start = haystack.rfind(b"\n", 0, match.start()) + 1
        if confirm is None:
            starts.setdefault(start, None)
        else:
            confirms = starts.get(start)
            if confirms is None:
                starts[start] = [confirm]  # type: ignore[list-item]
            else:
                confirms.append(confirm)  # type: ignore[arg-type]
        end = haystack.find(b"\n", match.end())
        if end < 0:
            return
        position = end + 1


def _line_starts(data: bytes, *, keywords: bool) -> dict[int, list[re.Pattern[str]] | None]:
    """line start -> None (only a keyword there) or the confirming patterns of its format triggers."""
    starts: dict[int, list[re.Pattern[str]] | None] = {}
    lower = data.lower()
    for pattern, confirm in _FOLDED_RES:
        if confirm is not None or keywords:
            _mark_lines(pattern, lower, starts, confirm)
    for pattern, confirm in _EXACT_RES:
        _mark_lines(pattern, data, starts, confirm)
    return starts


def _candidate_lines(data: bytes, starts: dict[int, list[re.Pattern[str]] | None], *, keywords: bool) -> Iterator[str]:
    """Each distinct line of `data` around a trigger that passes its line gate, decoded."""
    scanned: set[bytes] = set()
    for start in sorted(starts):
        end = data.find(b"\n", start)
        raw = data[start : (len(data) if end < 0 else end)][:4096]
        if raw in scanned:  # generated and vendored text repeats itself
            continue
        scanned.add(raw)
        line = raw.decode("utf-8", "replace")
        confirms = starts[start]
        if confirms is None:
            if KEYWORD_LINE.search(line):
                yield line
        elif any(confirm.search(line) for confirm in confirms) or (keywords and KEYWORD_LINE.search(line)):
            yield line


def pem_blocks(text: str) -> Iterator[str]:
    """Each `-----BEGIN X PRIVATE KEY-----` ... `-----END X PRIVATE KEY-----` block, as the non-greedy
    `BEGIN (X)...END \\1` would find them left to right, in linear time."""
    ends: dict[str, list[int]] = {}  # label ("RSA ", "" ...) -> where each END with it starts
    for match in PEM_END.finditer(text):
        ends.setdefault(match.group(1), []).append(match.start())
    if not ends:
        return
    end_of_last = 0
    for begin in PEM_BEGIN.finditer(text):
        if begin.start() < end_of_last:
            continue
        label = begin.group(1)
        candidates = ends.get(label, [])
        at = bisect.bisect_left(candidates, begin.end())
        if at == len(candidates):
            continue
        end = PEM_END.match(text, candidates[at])
        assert end is not None
        end_of_last = end.end()
        yield text[begin.start() : end.end()]
