"""What the rendered overlays promise about the worker and the migrate Job:
restricted security, health probes, shutdown timing, secrets by reference only,
settings the worker accepts, and autoscaling that fits the consumer."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    Manifest,
    of_kind,
    one,
    overlay_path,
    pod_specs,
    render,
    settings,
    worker_container,
)
from worker.errors import FatalError
from worker.settings import Settings, load_settings

# Settings that hold secrets (worker/settings.py): never a literal in a manifest.
SECRET_SETTINGS = frozenset(
    {"MEMSCORE_DATABASE_URL", "MEMSCORE_VLLM_API_KEY", "MEMSCORE_SASL_PASSWORD"}
)
# The mount path under test, not a temporary file of ours.
TMP = "/tmp"  # noqa: S108
# scheme://user:password@host — credentials inside a URL.
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")


def _setting(manifests: list[Manifest], name: str, default: object) -> str:
    return settings(manifests).get(name, str(default))


def _effective(pod: Manifest, container: Manifest, key: str) -> Any:
    """A securityContext field as Kubernetes applies it: the container's over the pod's."""
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


def _containers(manifests: list[Manifest]) -> list[tuple[str, Manifest, Manifest]]:
    return [
        (f"{workload}/{c['name']}", pod, c)
        for workload, pod in pod_specs(manifests)
        for c in pod.get("initContainers", []) + pod["containers"]
    ]


# --- security ----------------------------------------------------------------


def test_every_container_runs_as_a_non_root_uid(manifests: list[Manifest]) -> None:
    offenders = [
        name
        for name, pod, c in _containers(manifests)
        if _effective(pod, c, "runAsNonRoot") is not True
        or not isinstance(_effective(pod, c, "runAsUser"), int)
        or _effective(pod, c, "runAsUser") == 0
    ]
    assert offenders == []


def test_every_container_has_a_read_only_root_filesystem(manifests: list[Manifest]) -> None:
    offenders = [
        name
        for name, _, c in _containers(manifests)
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True
    ]
    assert offenders == []


def test_no_container_can_escalate_or_keeps_capabilities(manifests: list[Manifest]) -> None:
    offenders = [
        name
        for name, _, c in _containers(manifests)
        if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False
        or c.get("securityContext", {}).get("capabilities", {}).get("drop") != ["ALL"]
    ]
    assert offenders == []


def test_every_container_uses_the_runtime_default_seccomp_profile(
    manifests: list[Manifest],
) -> None:
    offenders = [
        name
        for name, pod, c in _containers(manifests)
        if (_effective(pod, c, "seccompProfile") or {}).get("type") != "RuntimeDefault"
    ]
    assert offenders == []


def test_every_container_gets_a_writable_tmp_from_an_empty_dir(manifests: list[Manifest]) -> None:
    offenders = []
    for name, pod, c in _containers(manifests):
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == TMP]
        if len(tmp) != 1 or tmp[0]["name"] not in empty_dirs:
            offenders.append(name)
    assert offenders == []


def test_no_pod_mounts_a_service_account_token(manifests: list[Manifest]) -> None:
    offenders = [
        name for name, pod in pod_specs(manifests) if pod.get("automountServiceAccountToken")
    ]
    assert offenders == []


# --- probes, ports and shutdown -------------------------------------------------


def test_liveness_probe_asks_healthz_on_the_metrics_port(manifests: list[Manifest]) -> None:
    probe = worker_container(manifests)["livenessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/healthz", "metrics")


def test_readiness_probe_asks_readyz_on_the_metrics_port(manifests: list[Manifest]) -> None:
    probe = worker_container(manifests)["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/readyz", "metrics")


def test_metrics_port_is_the_http_port_setting(manifests: list[Manifest]) -> None:
    ports = {p["name"]: p["containerPort"] for p in worker_container(manifests)["ports"]}
    assert ports.get("metrics") == int(_setting(manifests, "MEMSCORE_HTTP_PORT", 9400))


def test_termination_grace_outlasts_the_workers_shutdown_grace(
    manifests: list[Manifest],
) -> None:
    pod = one(manifests, "Deployment", "memscore")["spec"]["template"]["spec"]
    shutdown_grace = float(_setting(manifests, "MEMSCORE_SHUTDOWN_GRACE_SECONDS", 25))
    # Kubernetes' default is 30 s when the field is absent.
    assert pod.get("terminationGracePeriodSeconds", 30) > shutdown_grace


def test_worker_runs_memscore_run(manifests: list[Manifest]) -> None:
    assert worker_container(manifests).get("args") == ["run"]


def test_migrate_job_runs_memscore_migrate(manifests: list[Manifest]) -> None:
    job = one(manifests, "Job", "memscore-migrate")
    assert [c.get("args") for c in job["spec"]["template"]["spec"]["containers"]] == [["migrate"]]


def test_migrate_job_is_a_pre_sync_hook(manifests: list[Manifest]) -> None:
    annotations = one(manifests, "Job", "memscore-migrate")["metadata"].get("annotations", {})
    assert annotations.get("argocd.argoproj.io/hook") == "PreSync"


def test_migrate_job_needs_nothing_the_overlay_creates(manifests: list[Manifest]) -> None:
    """The Job is applied before the rest (README), so it may not use the generated ConfigMap
    or the overlay's ServiceAccount: only Secrets made beforehand."""
    pod = one(manifests, "Job", "memscore-migrate")["spec"]["template"]["spec"]
    rendered = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    needs = (
        {("ServiceAccount", pod["serviceAccountName"])} if "serviceAccountName" in pod else set()
    )
    for c in pod["containers"]:
        needs |= {("ConfigMap", s["configMapRef"]["name"]) for s in c.get("envFrom", [])}
    assert needs & rendered == set()


# --- secrets ---------------------------------------------------------------------


def test_no_secret_objects_are_rendered(manifests: list[Manifest]) -> None:
    assert of_kind(manifests, "Secret") == []


def test_secret_settings_are_never_literal_values(manifests: list[Manifest]) -> None:
    literal = [
        f"{name}: {env['name']}"
        for name, _, c in _containers(manifests)
        for env in c.get("env", [])
        if env["name"] in SECRET_SETTINGS and "valueFrom" not in env
    ]
    assert literal == []


def test_settings_configmaps_hold_no_secret_settings(manifests: list[Manifest]) -> None:
    leaked = [
        f"{m['metadata']['name']}: {key}"
        for m in of_kind(manifests, "ConfigMap")
        for key in m.get("data", {})
        if key in SECRET_SETTINGS
    ]
    assert leaked == []


def test_no_url_carries_a_password(manifests: list[Manifest]) -> None:
    assert _URL_WITH_PASSWORD.findall(yaml.safe_dump_all(manifests)) == []


def test_database_url_comes_from_a_secret(manifests: list[Manifest]) -> None:
    sources = {
        next(iter(env["valueFrom"])) if "valueFrom" in env else "value"
        for _, _, c in _containers(manifests)
        for env in c.get("env", [])
        if env["name"] == "MEMSCORE_DATABASE_URL"
    }
    assert sources == {"secretKeyRef"}


def test_vllm_api_key_file_lies_in_a_mounted_secret(manifests: list[Manifest]) -> None:
    pod = one(manifests, "Deployment", "memscore")["spec"]["template"]["spec"]
    container = worker_container(manifests)
    key_file = next(
        e["value"] for e in container["env"] if e["name"] == "MEMSCORE_VLLM_API_KEY_FILE"
    )
    secret_volumes = {v["name"] for v in pod["volumes"] if "secret" in v}
    mounts = [
        m
        for m in container["volumeMounts"]
        if m["name"] in secret_volumes and key_file.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert len(mounts) == 1


# --- settings ----------------------------------------------------------------------


def test_every_settings_key_is_a_worker_setting(manifests: list[Manifest]) -> None:
    """A misspelt key would be ignored silently (Settings has extra="ignore")."""
    keys = set(settings(manifests)) | {
        e["name"] for e in worker_container(manifests).get("env", [])
    }
    unknown = sorted(
        k for k in keys if k.removeprefix("MEMSCORE_").lower() not in Settings.model_fields
    )
    assert unknown == []


def test_worker_accepts_the_rendered_settings(
    manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("MEMSCORE_")]:
        monkeypatch.delenv(name)
    for name, value in settings(manifests).items():
        monkeypatch.setenv(name, value)
    # Secrets are references; stand-ins prove only that the rest is valid.
    monkeypatch.setenv("MEMSCORE_DATABASE_URL", "postgresql://memscore@db.invalid/memscore")
    monkeypatch.setenv("MEMSCORE_SASL_PASSWORD", "stand-in")
    try:
        load_settings()
    except FatalError as exc:
        pytest.fail(str(exc))


# --- selection and autoscaling ------------------------------------------------------


def test_service_and_budget_select_worker_pods_only(manifests: list[Manifest]) -> None:
    worker_labels = one(manifests, "Deployment", "memscore")["spec"]["template"]["metadata"]
    job_labels = one(manifests, "Job", "memscore-migrate")["spec"]["template"]["metadata"]
    selectors = [
        one(manifests, "Service", "memscore")["spec"]["selector"],
        one(manifests, "PodDisruptionBudget", "memscore")["spec"]["selector"]["matchLabels"],
    ]
    assert [
        (s.items() <= worker_labels["labels"].items(), s.items() <= job_labels["labels"].items())
        for s in selectors
    ] == [(True, False), (True, False)]


def test_network_policy_admits_scrapes_on_the_metrics_port(manifests: list[Manifest]) -> None:
    policy = one(manifests, "NetworkPolicy", "memscore")
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])]
    assert ports == ["metrics"]


def test_network_policy_covers_the_worker_and_the_migrate_job(manifests: list[Manifest]) -> None:
    selector = one(manifests, "NetworkPolicy", "memscore")["spec"]["podSelector"]["matchLabels"]
    templates = [
        one(manifests, kind, name)["spec"]["template"]["metadata"]["labels"]
        for kind, name in (("Deployment", "memscore"), ("Job", "memscore-migrate"))
    ]
    assert [selector.items() <= labels.items() for labels in templates] == [True, True]


def test_replicas_are_set_only_where_keda_does_not_scale(manifests: list[Manifest]) -> None:
    """A replica count in the manifest would fight the autoscaler on every apply."""
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(manifests, "ScaledObject")}
    deployment = one(manifests, "Deployment", "memscore")
    assert ("replicas" in deployment["spec"]) == ("memscore" not in scaled)


def test_keda_reads_the_workers_own_kafka_settings(manifests: list[Manifest]) -> None:
    names = {
        value
        for s in of_kind(manifests, "ScaledObject")
        for trigger in s["spec"]["triggers"]
        for key, value in trigger["metadata"].items()
        if key.endswith("FromEnv")
    }
    assert names <= set(settings(manifests))


def test_keda_lag_threshold_exceeds_what_one_replica_holds_in_flight(
    manifests: list[Manifest],
) -> None:
    """Committed offsets count in-flight conversations as lag; a threshold at or below the
    in-flight limit would scale out a replica that is keeping up."""
    inflight = int(_setting(manifests, "MEMSCORE_MAX_INFLIGHT_CONVERSATIONS", 16))
    thresholds = [
        int(trigger["metadata"]["lagThreshold"])
        for s in of_kind(manifests, "ScaledObject")
        for trigger in s["spec"]["triggers"]
        if trigger["type"] == "kafka"
    ]
    assert all(threshold > inflight for threshold in thresholds), (thresholds, inflight)


def test_prod_autoscales_and_dev_does_not(overlay: str, manifests: list[Manifest]) -> None:
    assert bool(of_kind(manifests, "ScaledObject")) == (overlay == "prod")


def test_prod_has_higher_limits_than_dev() -> None:
    limits = {
        name: worker_container(render(overlay_path(name)))["resources"]["limits"]
        for name in ("dev", "prod")
    }
    assert [
        _quantity(limits["prod"][resource]) > _quantity(limits["dev"][resource])
        for resource in ("cpu", "memory")
    ] == [True, True]


def _quantity(value: str | int) -> float:
    """A Kubernetes quantity (500m, 2, 512Mi, 2Gi) as a number."""
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    text = str(value)
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)
