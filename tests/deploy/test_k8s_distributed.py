"""docker/k8s (both setups: distributed and carla), validated offline: the API schemas of Kubernetes
1.28 (the first with the pod-index label) and of the newest release kubernetes-validate ships, strict
(unknown fields fail); kinds and apiVersions; selectors against template labels; volume mounts, claims,
ConfigMaps and Services that exist in the set; the workers' env ids per pod ordinal; one ROS_DOMAIN_ID;
the discovery server reachable through its Service. Each check is also shown to catch a broken copy."""

from __future__ import annotations

import pytest
import yaml

from deploy_checks import (
    DISTRIBUTED,
    K8S,
    REPO,
    check_dds,
    check_env_ids,
    check_kinds,
    check_references,
    check_selectors,
    containers,
    k8s_commands,
    k8s_discovery_hosts,
    load_kustomization,
    mutated,
    flag,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in requirements.txt")

SETUPS = ("distributed", "carla")
SCHEMA_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def dist():
    return load_kustomization(DISTRIBUTED)


@pytest.fixture(scope="module", params=SETUPS)
def setup(request):
    return load_kustomization(K8S / request.param)


def test_every_yaml_file_belongs_to_a_setup():
    read = set()
    for name in SETUPS:
        read |= load_kustomization(K8S / name).files
    on_disk = {p.resolve() for p in K8S.rglob("*.yaml")}
    assert on_disk - read == set(), "files no kustomization applies"
    assert not (K8S / "kustomization.yaml").exists(), "two setups: kubectl apply -k docker/k8s/<setup>"


def test_kinds_and_api_versions(setup):
    assert check_kinds(setup) == []


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_manifests_match_the_kubernetes_api_schema(setup, version):
    problems = []
    for res in setup.resources:
        try:
            kubernetes_validate.validate(res.doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path) if hasattr(exc, "path") else ""
            problems.append(f"{res!r} at {where}: {exc.message}")
    assert problems == []


def test_schema_validation_catches_a_misspelt_field(dist):
    broken = mutated(dist, "StatefulSet", "carla-rl-worker",
                     lambda d: d["spec"]["template"]["spec"]["containers"][0].update(volumeMount=[]))
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeMount"):
        kubernetes_validate.validate(broken.get("StatefulSet", "carla-rl-worker").doc, SCHEMA_VERSIONS[0], strict=True)


def test_selectors_match_template_labels_and_services_select_pods(setup):
    assert check_selectors(setup) == []


def test_mounts_claims_and_configmaps_exist_in_the_set(setup):
    assert check_references(setup) == []


def _first_container(d):
    return d["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("kind, name, edit, expected", [
    ("StatefulSet", "carla-rl-worker",
     lambda d: d["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "other"}), "selector"),
    ("Service", "carla-rl-discovery", lambda d: d["spec"]["ports"][0].update(protocol="TCP"), "targetPort"),
    ("StatefulSet", "carla-rl-worker", lambda d: d["spec"].update(serviceName="nowhere"), "serviceName"),
])
def test_selector_check_catches(dist, kind, name, edit, expected):
    assert any(expected in p for p in check_selectors(mutated(dist, kind, name, edit)))


@pytest.mark.parametrize("kind, name, edit, expected", [
    ("Job", "carla-rl-learner", lambda d: d["spec"]["template"]["spec"]["volumes"].pop(0), "undeclared volume runs"),
    ("Job", "carla-rl-learner", lambda d: d["spec"]["template"]["spec"]["volumes"][0].update(
        persistentVolumeClaim={"claimName": "elsewhere"}), "claims elsewhere"),
    ("StatefulSet", "carla-rl-worker", lambda d: _first_container(d)["envFrom"][0].update(
        configMapRef={"name": "missing"}), "ConfigMap missing"),
])
def test_reference_check_catches(dist, kind, name, edit, expected):
    assert any(expected in p for p in check_references(mutated(dist, kind, name, edit)))


# -- the distributed setup --------------------------------------------------------------------------------

def test_distributed_roles(dist):
    kinds = {(r.kind, r.name) for r in dist.resources}
    assert {("Deployment", "carla-rl-discovery"), ("Service", "carla-rl-discovery"), ("Job", "carla-rl-learner"),
            ("StatefulSet", "carla-rl-worker"), ("PersistentVolumeClaim", "carla-rl-runs"),
            ("Deployment", "carla-rl-tensorboard"), ("Service", "carla-rl-tensorboard"),
            ("ConfigMap", "carla-rl-dds")} <= kinds


def test_worker_index_comes_from_the_pod_ordinal(dist):
    worker = dist.get("StatefulSet", "carla-rl-worker")
    env = {e["name"]: e for e in containers(worker)[0]["env"]}
    index_var = flag(containers(worker)[0]["args"], "--worker-index")
    assert index_var.startswith("$(") and index_var.endswith(")"), index_var
    source = env[index_var[2:-1]]["valueFrom"]["fieldRef"]["fieldPath"]
    assert source == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert worker.doc["spec"]["replicas"] >= 2 and worker.doc["spec"]["podManagementPolicy"] == "Parallel"


def test_env_ids_are_unique_per_ordinal_and_cover_the_learner(dist):
    commands = k8s_commands(dist)
    workers = [c for c in commands if c.argv[:2] == ["carla-rl", "worker"]]
    replicas = dist.get("StatefulSet", "carla-rl-worker").doc["spec"]["replicas"]
    assert [c.ordinal for c in workers] == list(range(replicas))
    assert check_env_ids(commands) == []


@pytest.mark.parametrize("replicas, problem", [(3, "beyond it [8, 9, 10, 11]"), (1, "missing [4, 5, 6, 7]")])
def test_env_id_check_catches_a_replica_count_the_learner_does_not_expect(dist, replicas, problem):
    broken = mutated(dist, "StatefulSet", "carla-rl-worker", lambda d: d["spec"].update(replicas=replicas))
    assert any(problem in p for p in check_env_ids(k8s_commands(broken)))


def test_env_id_check_catches_a_fixed_worker_index(dist):
    def fixed(d):
        args = _first_container(d)["args"]
        args[args.index("--worker-index") + 1] = "0"
    problems = check_env_ids(k8s_commands(mutated(dist, "StatefulSet", "carla-rl-worker", fixed)))
    assert any("runs twice" in p for p in problems) and any("not the pod ordinal" in p for p in problems)


def test_one_domain_and_the_discovery_server_behind_its_service(dist):
    hosts = k8s_discovery_hosts(dist)
    assert hosts == {"carla-rl-discovery": {(11811, "UDP")}}
    assert check_dds(k8s_commands(dist), hosts) == []


@pytest.mark.parametrize("kind, name, edit, expected", [
    ("ConfigMap", "carla-rl-dds", lambda d: d["data"].update(ROS_DISCOVERY_SERVER="discovery:11811"),
     "does not reach"),
    ("ConfigMap", "carla-rl-dds", lambda d: d["data"].update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"),
     "ROS_AUTOMATIC_DISCOVERY_RANGE"),
    ("ConfigMap", "carla-rl-dds", lambda d: d["data"].update(FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA"),
     "exchanged nothing"),
    ("Deployment", "carla-rl-discovery",
     lambda d: _first_container(d).update(env=[{"name": "ROS_DOMAIN_ID", "value": "7"}]), "ROS_DOMAIN_ID differs"),
    ("Deployment", "carla-rl-discovery",
     lambda d: d["spec"]["template"]["spec"]["containers"][0]["args"].__setitem__(5, "11812"), "does not reach"),
])
def test_dds_check_catches(dist, kind, name, edit, expected):
    broken = mutated(dist, kind, name, edit)
    assert any(expected in p for p in check_dds(k8s_commands(broken), k8s_discovery_hosts(broken)))


def test_learner_has_the_gpu_and_the_runs_volume_tensorboard_reads(dist):
    learner = dist.get("Job", "carla-rl-learner")
    (c,) = containers(learner)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["resources"]["requests"]["nvidia.com/gpu"] == 1
    for name in ("carla-rl-worker",):
        (w,) = containers(dist.get("StatefulSet", name))
        assert "nvidia.com/gpu" not in str(w.get("resources")), "env workers need no GPU"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in learner.doc["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    save_dir = flag(c["args"], "--save-dir")
    (runs_volume,) = [n for n in claims if save_dir.startswith(mounts[n] + "/")]
    tensorboard = dist.get("Deployment", "carla-rl-tensorboard")
    (tb,) = containers(tensorboard)
    tb_claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                 for v in tensorboard.doc["spec"]["template"]["spec"]["volumes"]}
    tb_mount = next(m for m in tb["volumeMounts"] if tb_claims[m["name"]] == claims[runs_volume])
    logdir = flag(tb["args"], "--logdir")
    assert logdir.rstrip("/") == tb_mount["mountPath"].rstrip("/") and tb_mount.get("readOnly") is True
    pvc = dist.get("PersistentVolumeClaim", claims[runs_volume])
    assert "ReadWriteMany" in pvc.doc["spec"]["accessModes"]


def test_the_docs_describe_the_shipped_numbers(dist):
    text = (REPO / "docs" / "KUBERNETES.md").read_text()
    replicas = dist.get("StatefulSet", "carla-rl-worker").doc["spec"]["replicas"]
    (learner,) = containers(dist.get("Job", "carla-rl-learner"))
    assert f"--parallel-envs {flag(learner['args'], '--parallel-envs')}" in text
    assert f"{replicas} workers" in text
    config = yaml.safe_load((DISTRIBUTED / "dds-config.yaml").read_text())["data"]
    assert config["ROS_DISCOVERY_SERVER"] in text
