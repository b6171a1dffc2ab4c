"""From checked settings to an AwsSource: region, endpoints and identity checked before the first request.

- Region: AWS_REGION, else AWS_DEFAULT_REGION, else the profile's `region`;
  an ARN's own region wins.  A reference with no region at all is 78.
- Endpoints: AWS_ENDPOINT_URL_SECRETS_MANAGER / _SSM / _STS, else
  AWS_ENDPOINT_URL, else https://<service>.<region>.amazonaws.com; plain
  http:// only to loopback (as the proxy URL, SPEC 3).
- A key from the real environment is never sent to an endpoint an --env-file set (SPEC 2).
"""

from __future__ import annotations

from injector.errors import ConfigError
from injector.settings.aws_references import region_of
from injector.settings.settings import check_proxy_url
from injector.sources.aws.client import AwsClient
from injector.sources.aws.identity import own, pick_identity, region_from_profile
from injector.sources.aws.source import AwsSource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from injector.settings.references import Reference
    from injector.settings.settings import Settings
    from injector.sources.transport import TLSOptions, Transport

ENDPOINT_VARIABLES = {
    "secretsmanager": "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "ssm": "AWS_ENDPOINT_URL_SSM",
    "sts": "AWS_ENDPOINT_URL_STS",
}
SERVICE_OF = {"aws-sm": "secretsmanager", "aws-ssm": "ssm", "aws-sts": "sts"}


def default_region(env: dict[str, str]) -> str | None:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or region_from_profile(env)


def open_aws_source(settings: Settings, references: Sequence[Reference], tls: TLSOptions) -> AwsSource:
    from injector.sources.transport import Transport, display_url

    env = settings.aws_env
    region = default_region(env)
    for reference in references:
        if reference.scheme.startswith("aws-") and not (region_of(reference) or region):
            raise ConfigError(
                f"{reference.described}: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, a profile's region, "
                "or use an ARN, whose region wins)"
            )
    overrides: dict[str, tuple[str, str]] = {}  # service -> (checked URL, the variable it came from)
    for service, variable in ENDPOINT_VARIABLES.items():
        chosen = variable if env.get(variable) else "AWS_ENDPOINT_URL" if env.get("AWS_ENDPOINT_URL") else None
        if chosen:
            url = check_proxy_url(env[chosen], insecure_http=settings.insecure_http, what=chosen)
            overrides[service] = (url, chosen)
    _check_env_file_endpoints(settings, references, overrides)
    transports: dict[str, Transport] = {}

    def transport(url: str, timeout: float, label: str | None = None) -> Transport:
        if url not in transports:
            transports[url] = Transport(url, tls=tls, timeout=timeout, label=label or display_url(url))
        return transports[url]

    def endpoint_for(service: str, for_region: str) -> Transport:
        if service in overrides:
            url, variable = overrides[service]
            return transport(url, 10.0, f"{display_url(url)} (from {variable})")
        suffix = "amazonaws.com.cn" if for_region.startswith("cn-") else "amazonaws.com"
        return transport(f"https://{service}.{for_region}.{suffix}", 10.0)

    client = AwsClient(endpoint_for)
    sts_region = region or "us-east-1"
    identity = pick_identity(env, client=client, sts_region=sts_region, make_transport=transport)
    return AwsSource(client, identity, region)


def _check_env_file_endpoints(
    settings: Settings, references: Sequence[Reference], overrides: dict[str, tuple[str, str]]
) -> None:
    """78 when keys from the real environment would go to an endpoint an --env-file set."""
    origins = settings.env_origins
    env = settings.aws_env
    if not own(env, "AWS_ACCESS_KEY_ID") or "AWS_ACCESS_KEY_ID" in origins:
        return
    used = {SERVICE_OF[r.scheme] for r in references if r.scheme in SERVICE_OF}
    for service in sorted(used):
        if service in overrides and overrides[service][1] in origins:
            variable = overrides[service][1]
            raise ConfigError(
                f"AWS_ACCESS_KEY_ID comes from the environment but {variable} from {origins[variable]}: "
                "a key is never sent to an address an env file set; set both in the same place"
            )
