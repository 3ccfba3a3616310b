"""docker/compose.yaml, docker/Dockerfile and docker/k8s/carla (with docker/k8s/base), checked by parsing (no Docker engine here):
required keys, referenced files exist, GPU requests, volumes / services / selectors consistent, and the
trainer commands parse with the real ``carla-rl`` CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
K8S = DOCKER / "k8s"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[str, list[dict]]:
    """The single-host CARLA setup (kubectl apply -k docker/k8s/carla): its files and the shared base."""
    out = {}
    for folder in ("carla", "base"):
        for path in sorted((K8S / folder).glob("*.yaml")):
            out[f"{folder}/{path.name}"] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def _dockerfile_stages(path: Path) -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", path.read_text(), flags=re.M | re.I))


def _gpu_reserved(service: dict) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


# -- compose ------------------------------------------------------------------------------------------

def test_compose_services_and_carla_server(compose):
    services = compose["services"]
    assert {"carla", "trainer", "tensorboard", "bridge"} <= set(services)
    carla = services["carla"]
    assert carla["image"] == "carlasim/carla:0.9.16"
    assert "-RenderOffScreen" in carla["command"]
    assert carla["healthcheck"]["test"] and carla["healthcheck"]["start_period"]
    assert _gpu_reserved(carla) and _gpu_reserved(services["trainer"])
    assert services["bridge"]["profiles"] == ["bridge"]


def test_compose_trainer_waits_for_a_healthy_server_and_shares_the_runs_volume(compose):
    services = compose["services"]
    trainer = services["trainer"]
    assert trainer["depends_on"]["carla"]["condition"] == "service_healthy"
    declared = set(compose.get("volumes", {}))
    used = {}
    for name, svc in services.items():
        for spec in svc.get("volumes", []):
            source, target = spec.split(":")[:2]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
                used.setdefault(source, set()).add((name, target))
    assert {n for n, _ in used["runs"]} >= {"trainer", "tensorboard"}
    save_dir = trainer["command"][trainer["command"].index("--save-dir") + 1]
    trainer_mount = next(t for n, t in used["runs"] if n == "trainer")
    assert save_dir.startswith(trainer_mount)
    assert trainer["environment"]["CARLA_HOST"] == "carla"


def test_compose_builds_reference_existing_files_and_stages(compose):
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if not build:
            continue
        context = (DOCKER / build["context"]).resolve()
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        assert build["target"] in _dockerfile_stages(dockerfile), f"{name}: no stage {build['target']}"


def test_dockerfile_copies_existing_paths_and_uses_a_ros_base():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM ros:(kilted|jazzy)-ros-base", text.replace("${ROS_DISTRO}", "kilted"), re.M)
    assert "ARG ROS_DISTRO=kilted" in text or "ARG ROS_DISTRO=jazzy" in text
    assert "colcon build" in text and "download.pytorch.org/whl/cu" in text
    # the Python requirements (carla client included) come from requirements.txt
    assert "requirements.txt" in text
    assert "carla==0.9.16" in (REPO / "requirements.txt").read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        for src in parts[:-1]:
            assert (REPO / src).exists(), f"COPY source {src} does not exist"
    entry = DOCKER / "entrypoint.sh"
    assert entry.is_file() and entry.stat().st_mode & 0o111


def test_entrypoint_host_rewrite_is_unambiguous():
    # the entrypoint rewrites `host:` / `port:` lines of config/carla.yaml for CARLA_HOST / CARLA_PORT
    text = (REPO / "config" / "carla.yaml").read_text()
    assert len(re.findall(r"^\s*host:", text, flags=re.M)) == 1
    assert len(re.findall(r"^\s*port:", text, flags=re.M)) == 1


def test_bridge_service_matches_our_config(compose):
    from carla_rl.carla.carla_config import load_bridge_adapter_config

    cmd = compose["services"]["bridge"]["command"]
    args = dict(a.split(":=", 1) for a in cmd if ":=" in a)
    cfg = load_bridge_adapter_config(REPO / "config" / "carla.yaml")
    assert float(args["fixed_delta_seconds"]) == pytest.approx(cfg.fixed_delta_seconds)
    assert args["synchronous_mode"] == "True"
    assert args["synchronous_mode_wait_for_vehicle_control_command"] == "True"
    assert "ego_vehicle" in args["ego_vehicle_role_name"]


def _trainer_commands(compose, manifests):
    cmds = [compose["services"][n]["command"] for n in ("trainer", "bridge-trainer")]
    for docs in manifests.values():
        for doc in docs:
            if doc["kind"] == "Job":
                cmds.append(doc["spec"]["template"]["spec"]["containers"][0]["args"])
    return cmds


def test_trainer_commands_parse_with_the_cli(compose, manifests):
    cli = pytest.importorskip("carla_rl.cli.main", reason="the carla-rl CLI is not importable")
    parser = cli.build_parser()
    for cmd in _trainer_commands(compose, manifests):
        assert cmd[0] == "carla-rl"
        args = parser.parse_args(cmd[1:])
        assert args.simulator in ("carla", "bridge"), shlex.join(cmd)


# -- kubernetes ---------------------------------------------------------------------------------------

def _by_kind(manifests, kind):  # noqa: D103
    return [d for docs in manifests.values() for d in docs if d["kind"] == kind]


def test_k8s_manifests_have_the_required_objects(manifests):
    for name, docs in manifests.items():
        for doc in docs:
            required = {"apiVersion", "kind"} | ({"metadata"} if doc["kind"] != "Kustomization" else set())
            assert required <= set(doc), name
    kinds = [(d["kind"], d["metadata"]["name"]) for docs in manifests.values() for d in docs
             if d["kind"] != "Kustomization"]
    assert ("Deployment", "carla-server") in kinds and ("Service", "carla-server") in kinds
    assert ("Job", "carla-rl-trainer") in kinds or ("Deployment", "carla-rl-trainer") in kinds
    assert ("Deployment", "carla-rl-tensorboard") in kinds and ("Service", "carla-rl-tensorboard") in kinds
    assert any(k == "PersistentVolumeClaim" for k, _ in kinds)
    resources = {f"carla/{r}" for r in manifests["carla/kustomization.yaml"][0]["resources"] if r != "../base"}
    resources |= {f"base/{r}" for r in manifests["base/kustomization.yaml"][0]["resources"]}
    assert "../base" in manifests["carla/kustomization.yaml"][0]["resources"]
    assert resources == set(manifests) - {"carla/kustomization.yaml", "base/kustomization.yaml"}


def _pod_specs(manifests):
    for doc in _by_kind(manifests, "Deployment") + _by_kind(manifests, "Job"):
        yield doc, doc["spec"]["template"]


def test_k8s_gpu_requests(manifests):
    gpu = {}
    for doc, template in _pod_specs(manifests):
        for c in template["spec"]["containers"]:
            res = c.get("resources", {})
            gpu[doc["metadata"]["name"]] = (res.get("limits", {}).get("nvidia.com/gpu"),
                                            res.get("requests", {}).get("nvidia.com/gpu"))
    assert gpu["carla-server"] == (1, 1)
    assert gpu["carla-rl-trainer"] == (1, 1)


def test_k8s_services_select_pods_and_ports(manifests):
    pods = {doc["metadata"]["name"]: t for doc, t in _pod_specs(manifests)}
    for svc in _by_kind(manifests, "Service"):
        selector = svc["spec"]["selector"]
        matching = [name for name, t in pods.items()
                    if selector.items() <= t["metadata"]["labels"].items()]
        assert matching, f"service {svc['metadata']['name']} selects no pod"
        port_names = {p.get("name") for name in matching for c in pods[name]["spec"]["containers"]
                      for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names
    for doc in _by_kind(manifests, "Deployment"):
        assert doc["spec"]["selector"]["matchLabels"].items() <= \
            doc["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_volumes_and_carla_host_are_consistent(manifests):
    claims = {d["metadata"]["name"] for d in _by_kind(manifests, "PersistentVolumeClaim")}
    services = {d["metadata"]["name"] for d in _by_kind(manifests, "Service")}
    for doc, template in _pod_specs(manifests):
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"] + spec.get("initContainers", []):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{doc['metadata']['name']}: mount {mount['name']} undefined"
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if "CARLA_HOST" in env:
                assert env["CARLA_HOST"] in services
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims
    trainer = next(t for d, t in _pod_specs(manifests) if d["metadata"]["name"] == "carla-rl-trainer")
    args = trainer["spec"]["containers"][0]["args"]
    mount = next(m["mountPath"] for m in trainer["spec"]["containers"][0]["volumeMounts"] if m["name"] == "runs")
    assert args[args.index("--save-dir") + 1].startswith(mount)
