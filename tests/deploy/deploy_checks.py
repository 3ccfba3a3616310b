"""Offline model of the deployment files: a kustomization resolved as ``kubectl apply -k`` would read it
(plain resources, no generators or patches), each pod's environment as the kubelet builds it (the image's
ENV, envFrom ConfigMaps, explicit env, downward-API fields of a StatefulSet pod with a given ordinal), ``$(VAR)``
expansion of command/args, and the consistency checks the tests apply to both the Kubernetes manifests
and the compose files. Every check returns a list of problems (empty = fine), so the tests can show
that a broken copy of a manifest is caught."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
DISTRIBUTED = K8S / "distributed"
COMPOSE_DISTRIBUTED = DOCKER / "compose.distributed.yaml"

KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
# apiVersion -> kinds the manifests may use
KNOWN_KINDS = {
    "v1": {"ConfigMap", "Service", "PersistentVolumeClaim"},
    "apps/v1": {"Deployment", "StatefulSet"},
    "batch/v1": {"Job"},
}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # set on StatefulSet pods from Kubernetes 1.28
ROS_DOMAIN_RANGE = range(0, 102)  # the ROS 2 domain ids whose ports never collide with ephemeral ones on Linux
CLIENT_DISCOVERY_RANGES = {"SUBNET", "SYSTEM_DEFAULT"}  # the ROS 2 ranges meant for reaching other hosts
# carried messages between pods emulated by network namespaces (tests/deploy/dds_variants.py); the
# image's LARGE_DATA did not
POD_TRANSPORTS = {"UDPv4", "DEFAULT"}


DDS_ENV_KEYS = ("ROS_DOMAIN_ID", "ROS_DISCOVERY_SERVER", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_BUILTIN_TRANSPORTS")


def image_env(dockerfile: Path = DOCKER / "Dockerfile") -> dict[str, str]:
    """The DDS variables the runtime image sets with ENV (a pod's or service's env overrides them)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    out = {}
    for line in re.findall(r"^ENV\s+(.+)$", text, flags=re.M):
        for key, value in re.findall(r"(\w+)=(\S+)", line):
            if key in DDS_ENV_KEYS:
                out[key] = value
    return out


@dataclass
class Resource:
    path: Path
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc.get("kind", "")

    @property
    def name(self) -> str:
        return self.doc.get("metadata", {}).get("name", "")

    def __repr__(self) -> str:
        return f"{self.kind}/{self.name} ({self.path.relative_to(REPO)})"


@dataclass
class Kustomization:
    root: Path
    resources: list[Resource] = field(default_factory=list)
    files: set[Path] = field(default_factory=set)  # every file read, kustomization.yaml included

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]

    def get(self, kind: str, name: str) -> Resource | None:
        return next((r for r in self.resources if r.kind == kind and r.name == name), None)


class KustomizeError(AssertionError):
    pass


def load_kustomization(root: Path) -> Kustomization:
    """The resources ``kubectl apply -k root`` applies: files and directories (with their own
    kustomization.yaml) under ``resources``, recursively; anything else in the file is refused."""
    out = Kustomization(root=root)
    _load_into(root.resolve(), out, seen=set())
    return out


def _load_into(root: Path, out: Kustomization, seen: set[Path]) -> None:
    if root in seen:
        raise KustomizeError(f"{root}: kustomization cycle")
    seen.add(root)
    kfile = root / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{root}: no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text()) or {}
    out.files.add(kfile)
    if spec.get("apiVersion") != KUSTOMIZE_API or spec.get("kind") != "Kustomization":
        raise KustomizeError(f"{kfile}: apiVersion/kind must be {KUSTOMIZE_API}/Kustomization")
    unsupported = set(spec) - {"apiVersion", "kind", "resources", "images", "namespace", "labels"}
    if unsupported:
        raise KustomizeError(f"{kfile}: {sorted(unsupported)} not modelled by the offline checks")
    for entry in spec.get("resources", []):
        target = (root / entry).resolve()
        if target.is_dir():
            _load_into(target, out, seen)
        elif target.is_file():
            out.files.add(target)
            for doc in yaml.safe_load_all(target.read_text()):
                if doc:
                    out.resources.append(Resource(target, doc))
        else:
            raise KustomizeError(f"{kfile}: resource {entry} does not exist")


# -- pods and their environment ------------------------------------------------------------------------

def pod_template(res: Resource) -> dict:
    return res.doc["spec"]["template"]


def containers(res: Resource, init: bool = True) -> list[dict]:
    spec = pod_template(res)["spec"]
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def ordinals(res: Resource) -> list[int | None]:
    """StatefulSet pods have ordinals 0..replicas-1; other workloads' pods have none."""
    if res.kind == "StatefulSet":
        return list(range(int(res.doc["spec"].get("replicas", 1))))
    return [None]


def pod_labels(res: Resource, ordinal: int | None) -> dict[str, str]:
    labels = dict(pod_template(res)["metadata"].get("labels", {}))
    if ordinal is not None:
        labels[POD_INDEX_LABEL] = str(ordinal)
        labels["statefulset.kubernetes.io/pod-name"] = f"{res.name}-{ordinal}"
    return labels


_FIELD_LABEL = re.compile(r"^metadata\.labels\['([^']+)'\]$")


def container_env(kust: Kustomization, res: Resource, container: dict, ordinal: int | None) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps first, then ``env``
    in order (later entries see earlier ones in ``$(VAR)``). Raises KeyError naming what is missing."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" not in source:
            raise KeyError(f"{res!r}: envFrom {source} is not modelled")
        env.update(configmap_data(kust, source["configMapRef"]["name"], res))
    labels = pod_labels(res, ordinal)
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        ref = item.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            data = configmap_data(kust, ref["configMapKeyRef"]["name"], res)
            key = ref["configMapKeyRef"]["key"]
            if key not in data:
                raise KeyError(f"{res!r}: ConfigMap {ref['configMapKeyRef']['name']} has no key {key}")
            env[name] = data[key]
        elif "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            match = _FIELD_LABEL.match(path)
            if match:
                if match.group(1) not in labels:
                    raise KeyError(f"{res!r}: env {name} reads label {match.group(1)}, which the pod does not have")
                env[name] = labels[match.group(1)]
            elif path == "metadata.name":
                env[name] = res.name if ordinal is None else f"{res.name}-{ordinal}"
            else:
                raise KeyError(f"{res!r}: env {name}: fieldRef {path} is not modelled")
        else:
            raise KeyError(f"{res!r}: env {name}: {ref} is not modelled")
    return env


def configmap_data(kust: Kustomization, name: str, res: Resource) -> dict[str, str]:
    cm = kust.get("ConfigMap", name)
    if cm is None:
        raise KeyError(f"{res!r}: ConfigMap {name} is not in {kust.root.relative_to(REPO)}")
    return {k: str(v) for k, v in cm.doc.get("data", {}).items()}


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of command, args and env values: ``$$`` is a literal ``$``; a
    reference to an undefined variable stays as written."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, text)


@dataclass
class PodCommand:
    """One pod's (or compose service's) container command after expansion, with its environment."""
    owner: str
    ordinal: int | None
    argv: list[str]
    env: dict[str, str]


def k8s_commands(kust: Kustomization) -> list[PodCommand]:
    out = []
    for kind in WORKLOADS:
        for res in kust.of_kind(kind):
            for ordinal in ordinals(res):
                for c in containers(res, init=False):
                    env = container_env(kust, res, c, ordinal)
                    argv = [expand(a, env) for a in list(c.get("command", [])) + list(c.get("args", []))]
                    out.append(PodCommand(f"{res.kind}/{res.name}/{c['name']}", ordinal, argv,
                                          {**image_env(), **env}))
    return out


def compose_commands(compose: dict) -> list[PodCommand]:
    out = []
    for name, svc in compose["services"].items():
        env = {**image_env(), **{k: str(v) for k, v in (svc.get("environment") or {}).items()}}
        argv = list(svc.get("entrypoint") or []) + list(svc.get("command") or [])
        out.append(PodCommand(f"service/{name}", None, argv, env))
    return out


def flag(argv: list[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in argv (the last one wins, as in argparse)."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def is_carla_rl(argv: list[str], sub: str) -> bool:
    return len(argv) >= 2 and argv[0] == "carla-rl" and argv[1] == sub


def is_discovery_server(argv: list[str]) -> bool:
    return argv[:2] == ["fastdds", "discovery"] or argv[:2] == ["carla-rl", "discovery-server"]


# -- checks shared by Kubernetes and compose --------------------------------------------------------------

def check_env_ids(commands: list[PodCommand]) -> list[str]:
    """Workers' env ids (I*N .. I*N+N-1) are disjoint across workers and together are exactly the
    learner's 0 .. --parallel-envs - 1; a StatefulSet worker's index is its pod ordinal."""
    problems = []
    learners = [c for c in commands if is_carla_rl(c.argv, "train") and flag(c.argv, "--role") == "learner"]
    workers = [c for c in commands if is_carla_rl(c.argv, "worker")]
    if len(learners) != 1:
        return [f"expected one learner (carla-rl train --role learner), found {len(learners)}"]
    if not workers:
        return ["no env worker (carla-rl worker ...)"]
    try:
        total = int(flag(learners[0].argv, "--parallel-envs") or "")
    except ValueError:
        return [f"{learners[0].owner}: --parallel-envs is not an integer: {learners[0].argv}"]
    owner_of: dict[int, str] = {}
    for w in workers:
        where = w.owner if w.ordinal is None else f"{w.owner} (pod ordinal {w.ordinal})"
        try:
            index, envs = int(flag(w.argv, "--worker-index") or ""), int(flag(w.argv, "--envs") or "")
        except ValueError:
            problems.append(f"{where}: --worker-index / --envs are not integers after expansion: {w.argv}")
            continue
        if w.ordinal is not None and index != w.ordinal:
            problems.append(f"{where}: --worker-index {index} is not the pod ordinal")
        for env_id in range(index * envs, index * envs + envs):
            if env_id in owner_of:
                problems.append(f"env id {env_id} runs twice: {owner_of[env_id]} and {where}")
            owner_of[env_id] = where
    if not problems and set(owner_of) != set(range(total)):
        missing = sorted(set(range(total)) - set(owner_of))
        extra = sorted(set(owner_of) - set(range(total)))
        problems.append(f"workers' env ids vs the learner's --parallel-envs {total}: missing {missing}, "
                        f"beyond it {extra}")
    return problems


def ros_commands(commands: list[PodCommand]) -> list[PodCommand]:
    return [c for c in commands if c.argv[:1] == ["carla-rl"] or is_discovery_server(c.argv)]


def check_dds(commands: list[PodCommand], discovery_hosts: dict[str, set[tuple[int, str]]]) -> list[str]:
    """One ROS_DOMAIN_ID everywhere; the server on UDP transports; every carla-rl process a Discovery
    Server client of the one server (``host:port`` naming a Service / compose service that forwards that
    port over UDP to the server's ``--udp-port``), with a discovery range and transports that reach other
    pods.

    ``discovery_hosts``: host name -> {(port, protocol)} that reach the server's container."""
    problems = []
    ros = ros_commands(commands)
    domains = {c.owner: c.env.get("ROS_DOMAIN_ID") for c in ros}
    if len(set(domains.values())) != 1:
        problems.append(f"ROS_DOMAIN_ID differs or is missing: {domains}")
    for owner, value in domains.items():
        if value is not None and (not value.isdigit() or int(value) not in ROS_DOMAIN_RANGE):
            problems.append(f"{owner}: ROS_DOMAIN_ID {value!r} is not in 0..101")
    servers = [c for c in ros if is_discovery_server(c.argv)]
    if len(servers) != 1:
        return problems + [f"expected one discovery server, found {[c.owner for c in servers]}"]
    server = servers[0]
    if "ROS_DISCOVERY_SERVER" in server.env:
        problems.append(f"{server.owner}: the server itself must not be a client (ROS_DISCOVERY_SERVER set)")
    if server.env.get("FASTDDS_BUILTIN_TRANSPORTS") not in POD_TRANSPORTS:
        # with LARGE_DATA (the image's default) the server cannot open its UDP listening port
        problems.append(f"{server.owner}: FASTDDS_BUILTIN_TRANSPORTS {server.env.get('FASTDDS_BUILTIN_TRANSPORTS')!r}"
                        f" must be one of {sorted(POD_TRANSPORTS)}: with LARGE_DATA the server does not start")
    server_id = int(flag(server.argv, "--server-id") or 0)
    for c in ros:
        if c is server:
            continue
        address = c.env.get("ROS_DISCOVERY_SERVER", "")
        entries = address.split(";")
        if not address or server_id >= len(entries) or not entries[server_id]:
            problems.append(f"{c.owner}: ROS_DISCOVERY_SERVER {address!r} has no entry at position {server_id} "
                            f"(the server's --server-id)")
            continue
        host, _, port = entries[server_id].rpartition(":")
        if not port.isdigit():
            problems.append(f"{c.owner}: ROS_DISCOVERY_SERVER {address!r} is not host:port")
            continue
        if (int(port), "UDP") not in discovery_hosts.get(host, set()):
            problems.append(f"{c.owner}: ROS_DISCOVERY_SERVER {address!r}: {host}:{port}/UDP does not reach the "
                            f"discovery server (reachable: {discovery_hosts})")
        if c.env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") not in CLIENT_DISCOVERY_RANGES:
            problems.append(f"{c.owner}: ROS_AUTOMATIC_DISCOVERY_RANGE {c.env.get('ROS_AUTOMATIC_DISCOVERY_RANGE')!r}"
                            f" must be one of {sorted(CLIENT_DISCOVERY_RANGES)} (the image's default is LOCALHOST, "
                            "meant for one host)")
        if c.env.get("FASTDDS_BUILTIN_TRANSPORTS") not in POD_TRANSPORTS:
            problems.append(f"{c.owner}: FASTDDS_BUILTIN_TRANSPORTS {c.env.get('FASTDDS_BUILTIN_TRANSPORTS')!r} "
                            f"must be one of {sorted(POD_TRANSPORTS)} (with the image's default LARGE_DATA, "
                            "processes in separate network namespaces exchanged nothing)")
    return problems


# -- Kubernetes-only checks -----------------------------------------------------------------------------

def check_kinds(kust: Kustomization) -> list[str]:
    problems = []
    seen = set()
    for r in kust.resources:
        api = r.doc.get("apiVersion")
        if r.kind not in KNOWN_KINDS.get(api, set()):
            problems.append(f"{r!r}: apiVersion {api!r} / kind {r.kind!r} is not one of {KNOWN_KINDS}")
        if not r.name:
            problems.append(f"{r!r}: no metadata.name")
        if (r.kind, r.name) in seen:
            problems.append(f"{r!r}: defined twice")
        seen.add((r.kind, r.name))
    return problems


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def check_selectors(kust: Kustomization) -> list[str]:
    """Workload selectors match their pod template; every Service selects a pod of the set and its
    targetPorts exist on that pod with the Service port's protocol; a StatefulSet's serviceName is a
    headless Service of the set."""
    problems = []
    for kind in WORKLOADS:
        for r in kust.of_kind(kind):
            selector = r.doc["spec"].get("selector", {}).get("matchLabels")
            labels = pod_template(r)["metadata"].get("labels", {})
            if kind == "Job" and selector is None:
                continue  # the Job controller generates it
            if not _selects(selector or {}, labels):
                problems.append(f"{r!r}: selector {selector} does not match the template labels {labels}")
    pods = [(r, pod_labels(r, o)) for kind in WORKLOADS for r in kust.of_kind(kind) for o in ordinals(r)[:1]]
    for svc in kust.of_kind("Service"):
        selector = svc.doc["spec"].get("selector", {})
        matching = [r for r, labels in pods if _selects(selector, labels)]
        if not matching:
            problems.append(f"{svc!r}: selector {selector} selects no pod of the set")
            continue
        for port in svc.doc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            protocol = port.get("protocol", "TCP")
            found = [p for r in matching for c in containers(r, init=False) for p in c.get("ports", [])
                     if (p.get("name") == target or p.get("containerPort") == target)
                     and p.get("protocol", "TCP") == protocol]
            if not found:
                problems.append(f"{svc!r}: targetPort {target}/{protocol} is no container port of "
                                f"{[repr(r) for r in matching]}")
    for r in kust.of_kind("StatefulSet"):
        svc = kust.get("Service", r.doc["spec"].get("serviceName", ""))
        if svc is None or svc.doc["spec"].get("clusterIP") != "None":
            problems.append(f"{r!r}: serviceName {r.doc['spec'].get('serviceName')!r} is not a headless Service "
                            "of the set")
    return problems


def check_references(kust: Kustomization) -> list[str]:
    """Every volumeMount names a volume of its pod; every PVC / ConfigMap a pod uses is in the set."""
    problems = []
    claims = {r.name for r in kust.of_kind("PersistentVolumeClaim")}
    configmaps = {r.name for r in kust.of_kind("ConfigMap")}
    for kind in WORKLOADS:
        for r in kust.of_kind(kind):
            spec = pod_template(r)["spec"]
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for c in containers(r):
                for m in c.get("volumeMounts", []):
                    if m["name"] not in volumes:
                        problems.append(f"{r!r}: container {c['name']} mounts undeclared volume {m['name']}")
                for source in c.get("envFrom", []):
                    name = source.get("configMapRef", {}).get("name")
                    if name is not None and name not in configmaps:
                        problems.append(f"{r!r}: envFrom ConfigMap {name} is not in the set")
                for item in c.get("env", []):
                    ref = item.get("valueFrom", {}).get("configMapKeyRef")
                    if ref and ref["name"] not in configmaps:
                        problems.append(f"{r!r}: env {item['name']} reads ConfigMap {ref['name']}, not in the set")
            for v in volumes.values():
                claim = v.get("persistentVolumeClaim", {}).get("claimName")
                if claim is not None and claim not in claims:
                    problems.append(f"{r!r}: volume {v['name']} claims {claim}, not in the set")
                cm = v.get("configMap", {}).get("name")
                if cm is not None and cm not in configmaps:
                    problems.append(f"{r!r}: volume {v['name']} uses ConfigMap {cm}, not in the set")
    return problems


def k8s_discovery_hosts(kust: Kustomization) -> dict[str, set[tuple[int, str]]]:
    """Service names (the short form: the pods share the Service's namespace) -> (port, protocol) that the
    Service forwards to a container port of the discovery server's pod, that port being the server's
    listening port."""
    out: dict[str, set[tuple[int, str]]] = {}
    server_pods = []
    for kind in WORKLOADS:
        for r in kust.of_kind(kind):
            for c in containers(r, init=False):
                argv = list(c.get("command", [])) + list(c.get("args", []))
                if is_discovery_server(argv):
                    port = int(flag(argv, "--udp-port" if argv[0] == "fastdds" else "--port") or 11811)
                    server_pods.append((r, c, port))
    for svc in kust.of_kind("Service"):
        selector = svc.doc["spec"].get("selector", {})
        for r, c, listen in server_pods:
            if not _selects(selector, pod_labels(r, 0 if r.kind == "StatefulSet" else None)):
                continue
            for port in svc.doc["spec"].get("ports", []):
                protocol = port.get("protocol", "TCP")
                target = port.get("targetPort", port["port"])
                numbers = {p["containerPort"] for p in c.get("ports", [])
                           if (p.get("name") == target or p.get("containerPort") == target)
                           and p.get("protocol", "TCP") == protocol}
                if listen in numbers:
                    out.setdefault(svc.name, set()).add((int(port["port"]), protocol))
    return out


def compose_discovery_hosts(compose: dict) -> dict[str, set[tuple[int, str]]]:
    """Compose services reach each other by service name on the container ports themselves."""
    out: dict[str, set[tuple[int, str]]] = {}
    for name, svc in compose["services"].items():
        argv = list(svc.get("entrypoint") or []) + list(svc.get("command") or [])
        if is_discovery_server(argv):
            port = int(flag(argv, "--udp-port" if argv[0] == "fastdds" else "--port") or 11811)
            out.setdefault(name, set()).add((port, "UDP"))
    return out


def mutated(kust: Kustomization, kind: str, name: str, edit) -> Kustomization:
    """A deep copy of the set with ``edit(doc)`` applied to one resource (to show a check catches it)."""
    out = copy.deepcopy(kust)
    res = out.get(kind, name)
    assert res is not None, f"{kind}/{name} not in the set"
    edit(res.doc)
    return out
