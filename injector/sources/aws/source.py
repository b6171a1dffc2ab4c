"""aws-sm://, aws-ssm:// and aws-sts:// references behind the source interface (sources/__init__.py).

- Secrets Manager: references of one region go in BatchGetSecretValue calls of
  up to 20 ids; one with a version-stage or version-id (which the batch call
  cannot ask for), or an id the batch answer does not name, gets its own
  GetSecretValue.  Values are static (ttl None): re-read every --static-poll.
- SSM: GetParameters (decrypted) calls of up to 10 names per region.
- STS: one AssumeRole per distinct session (references equal but for
  #field), so the app's key id, secret key and session token belong together;
  its ttl is the DurationSeconds asked for, so the refresher re-issues it at
  60-75% of that, all three fields in one call.
- A server that does not know a batch action gets single calls from then on.

Nothing is revoked at exit: an STS session cannot be ended early (it expires).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from injector.errors import BrokenAnswerError, ConfigError, NotFoundError, RefusedError
from injector.log import log
from injector.settings.aws_references import region_of
from injector.settings.references import Credential, Reference, value_problem
from injector.sources.aws.client import AwsClient, UnknownActionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.sources.aws.client import Keys
    from injector.sources.aws.identity import Identity

SECRETS_PER_BATCH = 20  # BatchGetSecretValue's SecretIdList limit
PARAMETERS_PER_BATCH = 10  # GetParameters' Names limit
MAX_PAGES = 10  # NextToken pages followed for one batch, at most


class AwsSource:
    """The source interface over Secrets Manager, SSM Parameter Store and STS."""

    def __init__(
        self, client: AwsClient, identity: Identity, region: str | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._identity = identity
        self._region = region  # the default: AWS_REGION, else AWS_DEFAULT_REGION, else the profile's
        self._clock = clock
        self.batch_secrets = True  # False once a server did not know BatchGetSecretValue
        self.batch_parameters = True

    # -- the session is our own identity, renewed before each call when it is temporary --

    @property
    def session_ttl(self) -> float:
        return float("inf")

    @property
    def session_expires_at(self) -> float:
        return float("inf")

    def renew_session(self) -> None:
        """Nothing to do: temporary identity keys are fetched again before the call that needs them."""

    def revoke(self, lease_ids: Sequence[str]) -> int:
        """Nothing to revoke: no AWS credential handed out has a lease (STS sessions expire on their own)."""
        return 0

    def region(self, reference: Reference) -> str:
        found = region_of(reference) or self._region
        if not found:  # wiring checked this before the first request
            raise ConfigError(f"{reference.described}: no AWS region: set AWS_REGION (or use an ARN)")
        return found

    # -- issuing ---------------------------------------------------------------

    def issue(self, references: Sequence[Reference]) -> list[Credential]:
        """Every reference in the order asked, all or nothing."""
        try:
            return self._issue_once(references)
        except RefusedError as exc:
            # Temporary keys can expire early (a revoked session, a clock jump): fetch them again, once.
            if not self._identity.temporary or "ExpiredToken" not in exc.message:
                raise
            log.info("AWS said our identity's keys expired; fetching them again")
            self._identity.invalidate()
            return self._issue_once(references)

    def _keys(self) -> Keys:
        return self._identity.keys()

    def _issue_once(self, references: Sequence[Reference]) -> list[Credential]:
        sent_at = self._clock()
        values: dict[str, str] = {}
        values.update(self._secrets([r for r in references if r.scheme == "aws-sm"]))
        values.update(self._parameters([r for r in references if r.scheme == "aws-ssm"]))
        sts = [r for r in references if r.scheme == "aws-sts"]
        values.update(self._sessions(sts))
        issued = []
        for reference in references:
            value = values[reference.name]
            log.protect(value)
            ttl = float(reference.ttl) if reference.scheme == "aws-sts" else None
            issued.append(Credential(reference.name, value, ttl, sent_at, None))
        return issued

    # -- Secrets Manager ---------------------------------------------------------

    def _secrets(self, references: list[Reference]) -> dict[str, str]:
        values: dict[str, str] = {}
        by_region: dict[str, dict[str, list[Reference]]] = {}  # region -> secret id -> references
        for reference in references:
            if reference.extra:  # a version: only GetSecretValue can ask for one
                values[reference.name] = _pick(self._get_secret(reference), reference)
                continue
            by_region.setdefault(self.region(reference), {}).setdefault(reference.secret, []).append(reference)
        for region, by_id in by_region.items():
            answers = self._batch_secrets(region, by_id) if self.batch_secrets and len(by_id) > 1 else {}
            for secret_id, group in by_id.items():
                entry = answers.get(secret_id)
                if entry is None:
                    entry = self._get_secret(group[0])
                for reference in group:
                    values[reference.name] = _pick(entry, reference)
        return values

    def _get_secret(self, reference: Reference) -> dict:
        body: dict[str, object] = {"SecretId": reference.secret}
        for key, value in reference.extra:
            body["VersionStage" if key == "version-stage" else "VersionId"] = value
        return self._client.json_call(
            "secretsmanager", self.region(reference), "GetSecretValue", body, self._keys(), names=reference.described
        )

    def _batch_secrets(self, region: str, by_id: dict[str, list[Reference]]) -> dict[str, dict]:
        """secret id -> its answer entry, for the ids a batch answer named; the rest get single calls."""
        found: dict[str, dict] = {}
        ids = list(by_id)
        for start in range(0, len(ids), SECRETS_PER_BATCH):
            chunk = ids[start : start + SECRETS_PER_BATCH]
            names = ", ".join(r.described for i in chunk for r in by_id[i])
            token: str | None = None
            for _page in range(MAX_PAGES):
                body: dict[str, object] = {"SecretIdList": chunk}
                if token:
                    body["NextToken"] = token
                try:
                    data = self._client.json_call(
                        "secretsmanager", region, "BatchGetSecretValue", body, self._keys(), names=names
                    )
                except UnknownActionError:
                    log.info("Secrets Manager does not know BatchGetSecretValue; using single calls")
                    self.batch_secrets = False
                    return found
                except RefusedError as exc:
                    if "ExpiredToken" in exc.message:
                        raise
                    # The batch action needs its own IAM permission: without it, ask one by one
                    # (each single call then says exactly which secret is refused).
                    log.info("BatchGetSecretValue refused; using single calls")
                    self.batch_secrets = False
                    return found
                except BrokenAnswerError:
                    log.info("BatchGetSecretValue answer unusable (too large?); using single calls for it")
                    return found
                self._take_batch(data, chunk, by_id, found)
                token = data.get("NextToken") if isinstance(data.get("NextToken"), str) else None
                if not token:
                    break
        return found

    def _take_batch(
        self, data: dict, chunk: list[str], by_id: dict[str, list[Reference]], found: dict[str, dict]
    ) -> None:
        entries = data.get("SecretValues") or []
        errors = data.get("Errors") or []
        if not isinstance(entries, list) or not isinstance(errors, list):
            raise BrokenAnswerError("BatchGetSecretValue: SecretValues or Errors is not a list")
        for entry in entries:
            if not isinstance(entry, dict):
                raise BrokenAnswerError("BatchGetSecretValue: an entry is not an object")
            for secret_id in chunk:
                if secret_id in (entry.get("Name"), entry.get("ARN")):
                    found[secret_id] = entry
        for error in errors:
            if not isinstance(error, dict) or error.get("SecretId") not in by_id:
                continue
            code = str(error.get("ErrorCode") or "")
            names = ", ".join(r.described for r in by_id[str(error["SecretId"])])
            text = f"{names}: secretsmanager BatchGetSecretValue failed ({code})"
            if code.startswith("ResourceNotFound"):
                raise NotFoundError(text)
            if code.startswith(("AccessDenied", "DecryptionFailure")):
                raise RefusedError(text)
            # Anything else: the single call for this id says what it is.

    # -- SSM Parameter Store -----------------------------------------------------

    def _parameters(self, references: list[Reference]) -> dict[str, str]:
        by_region: dict[str, dict[str, list[Reference]]] = {}
        for reference in references:
            version = dict(reference.extra).get("version")
            key = f"{reference.secret}:{version}" if version else reference.secret
            by_region.setdefault(self.region(reference), {}).setdefault(key, []).append(reference)
        values: dict[str, str] = {}
        for region, by_key in by_region.items():
            keys = list(by_key)
            found: dict[str, str] = {}
            if self.batch_parameters:
                for start in range(0, len(keys), PARAMETERS_PER_BATCH):
                    if not self.batch_parameters:
                        break
                    found.update(self._get_parameters(region, keys[start : start + PARAMETERS_PER_BATCH], by_key))
            for key in keys:
                if key not in found:
                    found[key] = self._get_parameter(region, key, by_key[key])
            for key, group in by_key.items():
                for reference in group:
                    values[reference.name] = _checked(found[key], reference)
        return values

    def _get_parameters(self, region: str, keys: list[str], by_key: dict[str, list[Reference]]) -> dict[str, str]:
        names = ", ".join(r.described for k in keys for r in by_key[k])
        try:
            data = self._client.json_call(
                "ssm", region, "GetParameters", {"Names": keys, "WithDecryption": True}, self._keys(), names=names
            )
        except UnknownActionError:
            log.info("SSM does not know GetParameters; using single calls")
            self.batch_parameters = False
            return {}
        invalid = data.get("InvalidParameters") or []
        if not isinstance(invalid, list):
            raise BrokenAnswerError("GetParameters: InvalidParameters is not a list")
        for key in keys:
            if key in invalid:
                missing = ", ".join(r.described for r in by_key[key])
                raise NotFoundError(f"{missing}: no SSM parameter {by_key[key][0].secret} (or no such version)")
        entries = data.get("Parameters") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise BrokenAnswerError("GetParameters: Parameters is not a list of objects")
        found: dict[str, str] = {}
        for key in keys:
            reference = by_key[key][0]
            version = dict(reference.extra).get("version")
            matching = [e for e in entries if reference.secret in (e.get("Name"), e.get("ARN"))]
            if version:
                # AWS answers a selector with `Selector: ":3"`; moto with the plain name and Version 3.
                matching = [
                    e for e in matching if e.get("Selector") == f":{version}" or str(e.get("Version")) == version
                ]
            if matching:
                # Without a version, the newest: the same name may be in the answer at an older version too.
                newest = max(matching, key=lambda e: e.get("Version") if isinstance(e.get("Version"), int) else 0)
                found[key] = _parameter_value(newest, by_key[key])
        return found

    def _get_parameter(self, region: str, key: str, group: list[Reference]) -> str:
        names = ", ".join(r.described for r in group)
        data = self._client.json_call(
            "ssm", region, "GetParameter", {"Name": key, "WithDecryption": True}, self._keys(), names=names
        )
        entry = data.get("Parameter")
        if not isinstance(entry, dict):
            raise BrokenAnswerError(f"{names}: GetParameter: the answer has no Parameter")
        return _parameter_value(entry, group)

    # -- STS ---------------------------------------------------------------------

    def _sessions(self, references: list[Reference]) -> dict[str, str]:
        by_session: dict[tuple, list[Reference]] = {}
        for reference in references:
            by_session.setdefault((reference.secret, reference.ttl, reference.scopes, reference.extra), []).append(
                reference
            )
        values: dict[str, str] = {}
        fields = {
            "access-key-id": "AccessKeyId",
            "secret-access-key": "SecretAccessKey",
            "session-token": "SessionToken",
            "expiration": "Expiration",
        }
        for (role, ttl, policies, extra), group in by_session.items():
            params = [
                ("RoleArn", role),
                ("RoleSessionName", dict(extra)["session-name"]),
                ("DurationSeconds", str(ttl)),
            ]
            params += [(f"PolicyArns.member.{i}.arn", arn) for i, arn in enumerate(policies, 1)]
            if self._region is None:  # (wiring checked this: STS needs a region)
                raise ConfigError(f"{group[0].described}: no AWS region for STS: set AWS_REGION")
            credentials = self._client.query_call(
                self._region, "AssumeRole", params, self._keys(), names=", ".join(r.described for r in group)
            )
            for reference in group:
                values[reference.name] = credentials[fields[reference.field]]
        return values


def _parameter_value(entry: dict, group: list[Reference]) -> str:
    value = entry.get("Value")
    if not isinstance(value, str):
        raise BrokenAnswerError(f"{group[0].described}: the SSM answer has no Value")
    return value


def _pick(entry: dict, reference: Reference) -> str:
    """The value a Secrets Manager answer holds for `reference`: the string, the binary's text, or a JSON key."""
    text = entry.get("SecretString")
    if text is None and entry.get("SecretBinary") is not None:
        import base64
        import binascii

        try:
            raw = base64.b64decode(str(entry["SecretBinary"]), validate=True)
        except (binascii.Error, ValueError):
            raise BrokenAnswerError(f"{reference.described}: SecretBinary is not base64") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(
                f"{reference.described}: the secret is binary, not UTF-8 text: it cannot be delivered as a value"
            ) from None
    if not isinstance(text, str):
        raise BrokenAnswerError(f"{reference.described}: the answer has neither SecretString nor SecretBinary")
    if reference.field is not None:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ConfigError(f"{reference.described}: #{reference.field} asked, but the secret is not a JSON object")
        if reference.field not in data:
            raise ConfigError(f"{reference.described}: the secret has no key {reference.field!r}")
        value = data[reference.field]
        # Numbers, booleans, null, lists and objects as their JSON text.
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return _checked(text, reference)


def _checked(value: str, reference: Reference) -> str:
    problem = value_problem(value)
    if problem:
        raise ConfigError(f"{reference.described}: the value {problem}")
    return value
