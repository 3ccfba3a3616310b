"""docker/compose.distributed.yaml, checked by parsing (no Docker engine here): the roles, the runs volume,
env ids per worker, one ROS_DOMAIN_ID and the discovery server reached by service name; the same checks
as the Kubernetes manifests (deploy_checks)."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from deploy_checks import (
    COMPOSE_DISTRIBUTED,
    DOCKER,
    check_dds,
    check_env_ids,
    compose_commands,
    compose_discovery_hosts,
    flag,
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_DISTRIBUTED.read_text())


def _gpu_reserved(service: dict) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_roles_and_gpu(compose):
    services = compose["services"]
    workers = sorted(n for n in services if n.startswith("worker-"))
    assert {"discovery", "learner", "tensorboard"} <= set(services) and len(workers) >= 2
    assert _gpu_reserved(services["learner"])
    assert not any(_gpu_reserved(services[n]) for n in workers + ["discovery", "tensorboard"])
    for name in ["learner", *workers]:
        assert "discovery" in services[name]["depends_on"], name


def test_volumes_are_declared_and_tensorboard_reads_the_learners_save_dir(compose):
    declared = set(compose.get("volumes", {}))
    mounts: dict[str, dict[str, str]] = {}
    for name, svc in compose["services"].items():
        for spec in svc.get("volumes", []):
            source, target = spec.split(":")[:2]
            assert source in declared, f"{name}: volume {source} is not declared"
            mounts.setdefault(name, {})[source] = target
    learner = compose["services"]["learner"]["command"]
    save_dir = flag(learner, "--save-dir")
    (volume,) = [v for v, target in mounts["learner"].items() if save_dir.startswith(target + "/")]
    assert flag(compose["services"]["tensorboard"]["command"], "--logdir") == mounts["tensorboard"][volume]


def test_builds_reference_the_dockerfile_and_its_stage(compose):
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (DOCKER / "Dockerfile").read_text(), flags=re.M | re.I))
    for name, svc in compose["services"].items():
        build = svc["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file(), name
        assert build["target"] in stages, name


def test_env_ids_unique_per_worker_and_cover_the_learner(compose):
    assert check_env_ids(compose_commands(compose)) == []


def test_env_id_check_catches_a_copied_worker(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["worker-2"] = copy.deepcopy(broken["services"]["worker-1"])
    assert any("runs twice" in p for p in check_env_ids(compose_commands(broken)))


def test_one_domain_and_the_discovery_server_by_service_name(compose):
    hosts = compose_discovery_hosts(compose)
    assert hosts == {"discovery": {(11811, "UDP")}}
    assert check_dds(compose_commands(compose), hosts) == []


@pytest.mark.parametrize("service, key, value, expected", [
    ("worker-1", "ROS_DOMAIN_ID", "22", "ROS_DOMAIN_ID differs"),
    ("learner", "ROS_DISCOVERY_SERVER", "discovery:11812", "does not reach"),
    ("worker-0", "FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA", "exchanged nothing"),
])
def test_dds_check_catches(compose, service, key, value, expected):
    broken = copy.deepcopy(compose)
    broken["services"][service]["environment"] = {**broken["services"][service]["environment"], key: value}
    assert any(expected in p for p in check_dds(compose_commands(broken), compose_discovery_hosts(broken)))


def test_kubernetes_and_compose_run_the_same_roles(compose):
    from deploy_checks import DISTRIBUTED, k8s_commands, load_kustomization

    def shape(argv):  # the command without its per-worker index
        return [a for i, a in enumerate(argv) if i == 0 or argv[i - 1] != "--worker-index"]

    k8s = {tuple(shape(c.argv)) for c in k8s_commands(load_kustomization(DISTRIBUTED))}
    local = {tuple(shape(c.argv)) for c in compose_commands(compose)}
    assert k8s == local
