"""A finding identifies a secret without holding it: a redacted prefix and a fingerprint.

`Finding.of()` is the only way to make one, and it drops the value once the
two identifiers are computed, so nothing downstream (reports, logs) can print
a whole secret even by mistake.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

WHERE = ("env", "label", "command", "history", "file", "deleted-file", "dockerfile")

# The one table of advice, for image findings and Dockerfile findings alike; `{key}` is the variable's name,
# `{key_lower}` the same in lower case (a BuildKit secret id).
FIX = {
    "env": "remove it from the image; declare {key}=stronghold://<secret> and run the app under stronghold-init",
    "dockerfile-env": "do not bake it in: set {key}=stronghold://<secret> at run time and run the app under "
    "stronghold-init",
    "label": "remove the label; a label is public metadata, never a place for a credential",
    "command": "take it out of Entrypoint/Cmd; pass it at run time with a stronghold:// reference",
    "build-arg": "a build arg stays in the image history: use RUN --mount=type=secret,id={key_lower} and "
    "`build --secret id={key_lower},src=FILE`",
    "build-arg-used": "RUN uses the build arg ${key}, which history records: "
    "use RUN --mount=type=secret,id={key_lower} instead",
    "history": "take it out of the RUN line: RUN --mount=type=secret,id=... reads it from a file at build time "
    "only; rotate the credential",
    "file": "do not copy it into the image: mount it at build time (--mount=type=secret) or deliver it at run time "
    "as a stronghold://..._FILE reference; rotate it",
    "deleted-file": "deleting it in a later layer does not remove it from the image: rebuild without it "
    "(--mount=type=secret) and rotate it",
}


def fix_for(kind: str, key: str | None) -> str:
    """The advice of row `kind`, for the variable `key` (or a placeholder when there is none)."""
    return FIX[kind].replace("{key}", key or "NAME").replace("{key_lower}", (key or "secret").lower())


def fingerprint(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def redact(value: str) -> str:
    """At most 4 leading characters, and fewer for a short value (a quarter of it)."""
    shown = min(4, len(value) // 4)
    return f"{value[:shown]}…({len(value)})"


@dataclass(frozen=True)
class Finding:
    where: str
    layer: int | None
    path: str | None
    key: str | None
    rule: str
    redacted: str | None  # None: the finding is a name (a build arg, a copied file), not a value
    fingerprint: str | None
    fix: str
    context: str | None = None  # e.g. the layer's history line, already free of the value

    @classmethod
    def of(
        cls,
        value: str,
        *,
        where: str,
        rule: str,
        layer: int | None = None,
        path: str | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> Finding:
        assert where in WHERE, where
        text = fix if fix is not None else fix_for(where if where in FIX else "file", key)
        return cls(
            where=where,
            layer=layer,
            path=path,
            key=key,
            rule=rule,
            redacted=redact(value),
            fingerprint=fingerprint(value),
            fix=text,
        )

    @classmethod
    def named(cls, *, where: str, rule: str, key: str, path: str | None = None, fix: str) -> Finding:
        """A finding about a name (`ARG NPM_TOKEN`, `COPY app.env`): the name is the key, and nothing is a secret.

        A name is not a credential: redacting it would hide what to fix, and its
        fingerprint would identify nothing worth rotating.
        """
        assert where in WHERE, where
        return cls(where=where, layer=None, path=path, key=key, rule=rule, redacted=None, fingerprint=None, fix=fix)

    def moved(self, **changes: object) -> Finding:
        from dataclasses import replace

        return replace(self, **changes)  # type: ignore[arg-type]

    def as_json(self) -> dict[str, object]:
        return {
            "where": self.where,
            "layer": self.layer,
            "path": self.path,
            "key": self.key,
            "rule": self.rule,
            "redacted": self.redacted,
            "fingerprint": self.fingerprint,
            "fix": self.fix,
        }
