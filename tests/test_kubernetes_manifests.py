"""examples/kubernetes/: valid against the Kubernetes schema, self-contained, and webhook.yaml as SPEC 14 lists.

Every document of every file is validated with `kubernetes-validate --strict`
(an unknown or misspelt field fails).  cert-manager's kinds have no schema
there, so their few fields are checked by hand.  "Self-contained" is what a
new user trips on: every ServiceAccount, ConfigMap and Secret a pod names is
defined in the same file (a Secret by a cert-manager Certificate), in a
Namespace the file creates.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "kubernetes"
FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
CERT_MANAGER = {"Issuer", "ClusterIssuer", "Certificate"}


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def test_the_examples_are_there() -> None:
    assert {"sidecar.yaml", "init-fetch.yaml", "webhook.yaml"} <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_every_document_is_valid_kubernetes(name: str) -> None:
    for document in documents(name):
        if document["kind"] in CERT_MANAGER:
            assert document["apiVersion"] == "cert-manager.io/v1"
            continue
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_an_invalid_document_would_fail() -> None:
    """The validation above can fail: a misspelt field is refused."""
    (deployment,) = [d for d in documents("webhook.yaml") if d["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def _pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for document in docs:
        if document["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            out.append((document["metadata"]["namespace"], document["spec"]["template"]["spec"]))
        elif document["kind"] == "Pod":
            out.append((document["metadata"]["namespace"], document["spec"]))
    return out


@pytest.mark.parametrize("name", FILES)
def test_every_example_defines_what_its_pods_name(name: str) -> None:
    docs = documents(name)
    defined = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs}
    for document in docs:
        if document["kind"] == "Certificate":
            defined.add(("Secret", document["metadata"]["namespace"], document["spec"]["secretName"]))
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    specs = _pod_specs(docs)
    assert specs, "each example runs something"
    for namespace, spec in specs:
        assert namespace in namespaces, f"{name}: namespace {namespace} is not created"
        assert ("ServiceAccount", namespace, spec["serviceAccountName"]) in defined, name
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", namespace, volume["configMap"]["name"]) in defined, (name, volume)
            if "secret" in volume:
                assert ("Secret", namespace, volume["secret"]["secretName"]) in defined, (name, volume)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
            if any(v.startswith("https://") for k, v in env.items() if k.endswith(("_ADDR", "_URL"))):
                mounted = [m["mountPath"] for m in container.get("volumeMounts", [])]
                bundle = env.get("STRONGHOLD_CA_BUNDLE", "")
                assert any(bundle.startswith(p + "/") for p in mounted), f"{name}: an https address, no CA bundle"


def _webhook_parts() -> dict[str, dict]:
    return {d["kind"]: d for d in documents("webhook.yaml")}


def test_webhook_yaml_deploys_two_replicas_a_service_and_a_pdb() -> None:
    parts = _webhook_parts()
    deployment, service, pdb = parts["Deployment"], parts["Service"], parts["PodDisruptionBudget"]
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() and pdb["spec"]["minAvailable"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "webhook"
    flags = dict(a.removeprefix("--").split("=", 1) for a in container["args"][1:])
    assert {"listen", "tls-cert", "tls-key", "init-image", "audit"} <= set(flags)
    tls = next(m for m in container["volumeMounts"] if m["name"] == "tls")["mountPath"]
    assert flags["tls-cert"].startswith(tls + "/") and flags["tls-key"].startswith(tls + "/")
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}


def test_the_webhook_configuration_blocks_only_opted_in_pods_and_trusts_cert_managers_ca() -> None:
    parts = _webhook_parts()
    configuration, certificate, service = (
        parts["MutatingWebhookConfiguration"],
        parts["Certificate"],
        parts["Service"],
    )
    (webhook,) = configuration["webhooks"]
    assert webhook["objectSelector"] == {"matchLabels": {"stronghold.dev/inject": "true"}}
    (excluded,) = webhook["namespaceSelector"]["matchExpressions"]
    assert excluded["key"] == "kubernetes.io/metadata.name" and excluded["operator"] == "NotIn"
    assert set(excluded["values"]) == {"kube-system", service["metadata"]["namespace"]}
    assert webhook["failurePolicy"] == "Fail" and webhook["sideEffects"] == "None"
    assert webhook["timeoutSeconds"] <= 10 and webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["rules"] == [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
         "scope": "Namespaced"}
    ]  # fmt: skip
    target = webhook["clientConfig"]["service"]
    assert target["name"] == service["metadata"]["name"] and target["path"] == "/mutate"
    ns, name = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    assert (ns, name) == (certificate["metadata"]["namespace"], certificate["metadata"]["name"])
    assert f"{service['metadata']['name']}.{ns}.svc" in certificate["spec"]["dnsNames"]
