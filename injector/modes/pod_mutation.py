"""SPEC 14's pod mutation, as a pure function: (pod, settings, image commands) -> decision.

No I/O here, so every case is a table test.  The webhook (injector/modes/webhook.py)
asks `commands_needed()` which images it must read from a registry, reads them
within its time budget, and hands what it found to `mutate()`; whatever could not
be read is simply absent, and a container that needs it is refused with a message
that says what to set (never a guessed command).

The patch is RFC 6902 JSONPatch over the pod as the API server sent it: an `add`
of a whole list where the pod has none (a JSON pointer cannot append to a missing
list), `-` appends otherwise, and init containers go in front of the pod's own
(so the bundle is in place before anything else starts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DOMAIN = "stronghold.dev/"
INJECT_LABEL = DOMAIN + "inject"
STATUS = DOMAIN + "status"
CONTAINERS = DOMAIN + "containers"
MODE = DOMAIN + "mode"
COMMAND_PREFIX = DOMAIN + "command."
# annotation -> the variable it sets in each stronghold-init container (SPEC 14)
SETTINGS = {
    DOMAIN + "proxy-url": "STRONGHOLD_PROXY_URL",
    DOMAIN + "auth": "STRONGHOLD_AUTH",
    DOMAIN + "role": "STRONGHOLD_ROLE",
}
MODES = ("wrap", "sidecar", "fetch")

BIN_VOLUME, RUN_VOLUME = "stronghold-bin", "stronghold-run"
BIN_DIR, RUN_DIR = "/stronghold/bin", "/run/stronghold"
BINARY = BIN_DIR + "/stronghold-init"
# Where examples/sidecar.Dockerfile (and stronghold-init.Dockerfile) put the bundle in the init image.
IMAGE_BINARY = "/opt/stronghold/stronghold-init"
# An emptyDir's root is world-writable (0777), which stronghold-init refuses for --dir
# (SPEC 3); tokens go one level down, in a directory it creates 0700.
TOKEN_DIR = RUN_DIR + "/tokens"
INSTALL, SIDECAR, FETCH = "stronghold-install", "stronghold", "stronghold-fetch"
REFERENCE_SCHEMES = ("stronghold://", "vault://", "vault-token://", "aws-sm://", "aws-ssm://", "aws-sts://")
MAX_CONTAINERS = 100  # of all three lists: far above any real pod, bounds the work per review
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
MAX_WARNING = 256  # the API server may cut longer warnings


class Refused(Exception):  # noqa: N818 - an answer, not a failure of ours
    """The pod must not be admitted as it is; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    init_image: str


@dataclass(frozen=True)
class ImageCommand:
    """An image's ENTRYPOINT and CMD as read from its config (by digest)."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    digest: str = ""  # the manifest digest it was read by, for the warning


@dataclass
class Decision:
    allowed: bool
    patch: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: str = ""  # why it was refused

    def warn(self, text: str) -> None:
        self.warnings.append(short_warning(text))


def short_warning(text: str) -> str:
    return text if len(text) <= MAX_WARNING else text[: MAX_WARNING - 1] + "…"


def is_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith(REFERENCE_SCHEMES)


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _strings(value: object) -> list[str] | None:
    """A command or args list as Kubernetes reads it: absent or empty means "not set"."""
    items = _list(value)
    return [str(item) for item in items] if items else None


def applies(review_request: Mapping[str, object]) -> str | None:
    """None when this pod is ours to change, else why it is admitted untouched (for the log)."""
    if review_request.get("operation") != "CREATE":
        return "not a CREATE"
    metadata = _dict(_dict(review_request.get("object")).get("metadata"))
    if _dict(metadata.get("labels")).get(INJECT_LABEL) != "true":
        return "not labelled " + INJECT_LABEL + "=true"
    if _dict(metadata.get("annotations")).get(STATUS) == "injected":
        return "already injected"
    return None


def _mode(annotations: Mapping[str, object]) -> str:
    mode = annotations.get(MODE, "wrap") or "wrap"
    if mode not in MODES:
        raise Refused(f"annotation {MODE}={mode!r}: use wrap (the default), sidecar or fetch")
    return str(mode)


def _chosen(pod: Mapping[str, object], annotations: Mapping[str, object]) -> tuple[list[int], list[str]]:
    """Indexes of spec.containers to inject, and the warnings for those left alone."""
    containers = _list(_dict(pod.get("spec")).get("containers"))
    names = [str(_dict(c).get("name", "")) for c in containers]
    named = annotations.get(CONTAINERS)
    if isinstance(named, str) and named.strip():
        wanted = [n.strip() for n in named.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise Refused(
                f"annotation {CONTAINERS} names {', '.join(unknown)}, not among the pod's containers "
                f"({', '.join(names)})"
            )
        chosen = [i for i, n in enumerate(names) if n in wanted]
    else:
        chosen = [i for i, c in enumerate(containers) if any(is_reference(e.get("value")) for e in _env(c))]
    skipped = [names[i] for i in range(len(names)) if i not in chosen]
    warnings = [f"container {name}: no reference in its env and not in {CONTAINERS}; left as it is" for name in skipped]
    return chosen, warnings


def _env(container: object) -> list[dict]:
    return [e for e in _list(_dict(container).get("env")) if isinstance(e, dict)]


def commands_needed(pod: Mapping[str, object]) -> list[str]:
    """Images whose ENTRYPOINT/CMD `mutate` needs from a registry (wrapped containers with no
    `command` and no command annotation), in pod order, each once.  [] when nothing is needed
    or the pod will be refused anyway."""
    annotations = _dict(_dict(pod.get("metadata")).get("annotations"))
    try:
        if _mode(annotations) != "wrap":
            return []
        chosen, _ = _chosen(pod, annotations)
    except Refused:
        return []
    containers = _list(_dict(pod.get("spec")).get("containers"))
    images: list[str] = []
    for index in chosen:
        container = _dict(containers[index])
        name = str(container.get("name", ""))
        if _strings(container.get("command")) is None and COMMAND_PREFIX + name not in annotations:
            image = container.get("image")
            if isinstance(image, str) and image and image not in images:
                images.append(image)
    return images


def images_of(pod: Mapping[str, object]) -> list[str]:
    """Every image the pod runs (init containers first), each once: what `--audit` looks at."""
    spec = _dict(pod.get("spec"))
    images: dict[str, None] = {}  # ordered, and a set's lookup: a list's would be quadratic
    for key in CONTAINER_LISTS:
        for container in _list(spec.get(key)):
            image = _dict(container).get("image")
            if isinstance(image, str) and image:
                images[image] = None
    return list(images)


def mutate(
    pod: Mapping[str, object],
    settings: Settings,
    commands: Mapping[str, ImageCommand | str] | None = None,
) -> Decision:
    """The decision for an opted-in pod under CREATE (`applies()` said so).

    `commands` maps an image to what its registry said: an ImageCommand, or the
    one-line reason it could not be read.  Raises nothing: a refusal is a Decision."""
    try:
        return _mutate(pod, settings, commands or {})
    except Refused as refusal:
        return Decision(allowed=False, message=str(refusal))


def _mutate(pod: Mapping[str, object], settings: Settings, commands: Mapping[str, ImageCommand | str]) -> Decision:
    metadata = _dict(pod.get("metadata"))
    annotations = _dict(metadata.get("annotations"))
    spec = _dict(pod.get("spec"))
    containers = _list(spec.get("containers"))
    init_containers = _list(spec.get("initContainers"))
    if not containers:
        raise Refused("the pod has no containers")
    if len(containers) + len(init_containers) > MAX_CONTAINERS:
        raise Refused(f"the pod has {len(containers) + len(init_containers)} containers; at most {MAX_CONTAINERS}")
    mode = _mode(annotations)
    chosen, warnings = _chosen(pod, annotations)
    decision = Decision(allowed=True)
    for text in warnings:
        decision.warn(text)
    if not chosen:
        decision.warn(f"no container has a reference in its env; nothing injected (or name them in {CONTAINERS})")
        return decision
    ours = {INSTALL, SIDECAR, FETCH}
    taken = {str(_dict(c).get("name")) for c in [*containers, *init_containers]} & ours
    if taken:
        raise Refused(f"the pod already has a container named {', '.join(sorted(taken))}; rename it")
    volume_names = {str(_dict(v).get("name")) for v in _list(spec.get("volumes"))}
    if volume_names & {BIN_VOLUME, RUN_VOLUME}:
        raise Refused(f"the pod already has a volume named {BIN_VOLUME} or {RUN_VOLUME}; rename it")

    settings_env = [
        {"name": var, "value": str(annotations[key])} for key, var in SETTINGS.items() if key in annotations
    ]
    patch: list[dict] = []
    new_init: list[dict] = [_install_container(settings)]
    if mode == "wrap":
        for index in chosen:
            patch += _wrap(index, _dict(containers[index]), annotations, commands, settings_env, decision)
    else:
        references = _move_references(containers, chosen, patch)
        helper = _helper_container(mode, settings, [*settings_env, *references])
        new_init.append(helper)
        for index, container in enumerate(containers):
            patch += _mounts(index, _dict(container), [{"name": RUN_VOLUME, "mountPath": RUN_DIR, "readOnly": True}])
    patch += _prepend_init(init_containers, new_init)
    patch += _volumes(spec)
    patch += _annotate(metadata)
    decision.patch = patch
    return decision


def _install_container(settings: Settings) -> dict:
    return {
        "name": INSTALL,
        "image": settings.init_image,
        "command": [IMAGE_BINARY, "install", BIN_DIR],
        "volumeMounts": [{"name": BIN_VOLUME, "mountPath": BIN_DIR}],
        "securityContext": _tight(),
    }


def _tight() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _helper_container(mode: str, settings: Settings, env: list[dict]) -> dict:
    """The native sidecar (restartPolicy: Always; the app waits for its startup probe) or the one-shot fetch."""
    container: dict = {
        "name": SIDECAR if mode == "sidecar" else FETCH,
        "image": settings.init_image,
        "command": [BINARY, mode],
        "env": [{"name": "STRONGHOLD_DIR", "value": TOKEN_DIR}, *env],
        "volumeMounts": [
            {"name": BIN_VOLUME, "mountPath": BIN_DIR, "readOnly": True},
            {"name": RUN_VOLUME, "mountPath": RUN_DIR},
        ],
        "securityContext": _tight(),
    }
    if mode == "sidecar":
        container["restartPolicy"] = "Always"
        container["startupProbe"] = {
            "exec": {"command": [BINARY, "install", "--ready", TOKEN_DIR]},
            "periodSeconds": 1,
            "failureThreshold": 120,
        }
    return container


def _move_references(containers: Sequence[object], chosen: Sequence[int], patch: list[dict]) -> list[dict]:
    """Sidecar and fetch modes: each chosen container's `_FILE` references go to the helper, and
    the container's variable becomes the file's path (where the helper writes it)."""
    moved: dict[str, str] = {}
    for index in chosen:
        container = _dict(containers[index])
        for position, entry in enumerate(_list(container.get("env"))):
            value = _dict(entry).get("value")
            if not is_reference(value):
                continue
            name = str(_dict(entry).get("name", ""))
            where = f"container {container.get('name')}: {name}"
            if not name.endswith("_FILE") or len(name) <= len("_FILE"):
                raise Refused(
                    f"{where} is delivered in the environment, which a sidecar or fetch container cannot do; "
                    f"name it {name}_FILE (the app reads the file) or use mode wrap"
                )
            if moved.get(name, value) != value:
                raise Refused(f"{where}: two containers give {name} different references; rename one")
            moved[name] = str(value)
            path = f"{TOKEN_DIR}/{name.removesuffix('_FILE')}"
            patch.append({"op": "replace", "path": f"/spec/containers/{index}/env/{position}/value", "value": path})
    return [{"name": name, "value": value} for name, value in moved.items()]


def _argv(
    container: Mapping[str, object],
    annotations: Mapping[str, object],
    commands: Mapping[str, ImageCommand | str],
    decision: Decision,
) -> list[str]:
    """What the container runs today: command + args as Kubernetes combines them with the image's."""
    name = str(container.get("name", ""))
    command = _strings(container.get("command"))
    args = _strings(container.get("args"))
    if command is not None:
        return command + (args or [])
    key = COMMAND_PREFIX + name
    if key in annotations:
        try:
            given = json.loads(str(annotations[key]))
        except ValueError:
            given = None
        if not (isinstance(given, list) and given and all(isinstance(a, str) for a in given)):
            raise Refused(f'annotation {key} must be a JSON array of strings, e.g. ["node", "server.js"]')
        # The annotation stands for the image's ENTRYPOINT + CMD; `args` replaces CMD as in Kubernetes,
        # so with args set the annotation is read as the ENTRYPOINT alone.
        return given + (args or [])
    image = str(container.get("image", ""))
    found = commands.get(image)
    hint = f"set its command, or the annotation {key} to the image's ENTRYPOINT and CMD as a JSON array"
    if not isinstance(found, ImageCommand):
        why = found if isinstance(found, str) and found else "its image config could not be read"
        raise Refused(f"container {name} has no command and {why}; {hint}")
    argv = list(found.entrypoint) + (args if args is not None else list(found.cmd))
    if not argv:
        raise Refused(f"container {name}: image {image} has neither ENTRYPOINT nor CMD; {hint}")
    decision.warn(f"container {name}: command read from the registry, image {image} ({found.digest or 'by digest'})")
    return argv


def _wrap(
    index: int,
    container: dict,
    annotations: Mapping[str, object],
    commands: Mapping[str, ImageCommand | str],
    settings_env: list[dict],
    decision: Decision,
) -> list[dict]:
    argv = _argv(container, annotations, commands, decision)
    base = f"/spec/containers/{index}"
    patch: list[dict] = [
        {"op": "add", "path": f"{base}/command", "value": [BINARY, "--"]},
        {"op": "add", "path": f"{base}/args", "value": argv},
    ]
    own = {str(e.get("name")) for e in _env(container)}
    added = [e for e in settings_env if e["name"] not in own]
    if "STRONGHOLD_DIR" not in own:
        # one directory per container: two wrapped containers must not remove each other's files
        added.append({"name": "STRONGHOLD_DIR", "value": f"{TOKEN_DIR}/{container.get('name')}"})
    for entry in settings_env:
        if entry["name"] in own:
            decision.warn(f"container {container.get('name')}: its own {entry['name']} wins over the annotation")
    if added:
        patch += _append(container, "env", base, added)
    patch += _mounts(
        index,
        container,
        [{"name": BIN_VOLUME, "mountPath": BIN_DIR, "readOnly": True}, {"name": RUN_VOLUME, "mountPath": RUN_DIR}],
    )
    return patch


def _append(parent: Mapping[str, object], key: str, base: str, items: list[dict]) -> list[dict]:
    if _list(parent.get(key)):
        return [{"op": "add", "path": f"{base}/{key}/-", "value": item} for item in items]
    return [{"op": "add", "path": f"{base}/{key}", "value": items}]


def _mounts(index: int, container: Mapping[str, object], mounts: list[dict]) -> list[dict]:
    taken = {str(_dict(m).get("mountPath")) for m in _list(container.get("volumeMounts"))}
    clash = [m["mountPath"] for m in mounts if m["mountPath"] in taken]
    if clash:
        raise Refused(f"container {container.get('name')} already mounts something at {', '.join(clash)}")
    return _append(container, "volumeMounts", f"/spec/containers/{index}", mounts)


def _prepend_init(existing: Sequence[object], new: list[dict]) -> list[dict]:
    if not existing:
        return [{"op": "add", "path": "/spec/initContainers", "value": new}]
    return [{"op": "add", "path": f"/spec/initContainers/{i}", "value": c} for i, c in enumerate(new)]


def _volumes(spec: Mapping[str, object]) -> list[dict]:
    volumes = [
        {"name": BIN_VOLUME, "emptyDir": {"medium": "Memory"}},
        {"name": RUN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}},
    ]
    return _append(spec, "volumes", "/spec", volumes)


def _annotate(metadata: Mapping[str, object]) -> list[dict]:
    if _dict(metadata.get("annotations")):
        return [{"op": "add", "path": "/metadata/annotations/" + STATUS.replace("~", "~0").replace("/", "~1"),
                 "value": "injected"}]  # fmt: skip
    return [{"op": "add", "path": "/metadata/annotations", "value": {STATUS: "injected"}}]
