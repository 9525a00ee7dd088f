"""Every rendered pod template against the Pod Security Standards (baseline, restricted).

The checker is written from the published rules
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, policy version
latest): one function per rule, each returning what it found wrong. Its own tests below
show each rule catches a pod that breaks it, so a rendered pod passing means something.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sweepctl.render.kubernetes import render_trial
from sweepctl.runtime import KubernetesRuntime, PodSecurity, SecretEnv
from test_render_kubernetes import K8S_VERSION, RUNTIME, make_experiment, make_trial

Pod = dict[str, Any]
Rule = Callable[[Pod], list[str]]

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                         "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
                         "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t",
                 "container_engine_t"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def containers(pod: Pod) -> Iterator[dict[str, Any]]:
    for field in ("containers", "initContainers", "ephemeralContainers"):
        yield from pod["spec"].get(field) or ()


def contexts(pod: Pod) -> Iterator[dict[str, Any]]:
    """The pod's securityContext, then each container's (missing ones as {})."""
    yield pod["spec"].get("securityContext") or {}
    for box in containers(pod):
        yield box.get("securityContext") or {}


# -- baseline ---------------------------------------------------------------------------------

def host_process(pod: Pod) -> list[str]:
    return ["hostProcess" for c in contexts(pod) if (c.get("windowsOptions") or {}).get(
        "hostProcess")]


def host_namespaces(pod: Pod) -> list[str]:
    return [f for f in ("hostNetwork", "hostPID", "hostIPC") if pod["spec"].get(f)]


def privileged(pod: Pod) -> list[str]:
    return ["privileged" for box in containers(pod)
            if (box.get("securityContext") or {}).get("privileged")]


def baseline_capabilities(pod: Pod) -> list[str]:
    return [f"adds {cap}" for box in containers(pod)
            for cap in ((box.get("securityContext") or {}).get("capabilities") or {}).get(
                "add") or () if cap not in BASELINE_CAPABILITIES]


def host_path(pod: Pod) -> list[str]:
    return [v["name"] for v in pod["spec"].get("volumes") or () if "hostPath" in v]


def host_ports(pod: Pod) -> list[str]:
    return [f"hostPort {p['hostPort']}" for box in containers(pod)
            for p in box.get("ports") or () if p.get("hostPort")]


def app_armor(pod: Pod) -> list[str]:
    found = [f"appArmor {c['appArmorProfile'].get('type')}" for c in contexts(pod)
             if c.get("appArmorProfile", {}).get("type") not in (None, "RuntimeDefault",
                                                                 "Localhost")]
    for key, value in (pod["metadata"].get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            found.append(f"{key}={value}")
    return found


def se_linux(pod: Pod) -> list[str]:
    found = []
    for c in contexts(pod):
        options = c.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES or options.get("user") \
                or options.get("role"):
            found.append(f"seLinuxOptions {options}")
    return found


def proc_mount(pod: Pod) -> list[str]:
    return ["procMount" for box in containers(pod)
            if (box.get("securityContext") or {}).get("procMount", "Default") != "Default"]


def seccomp_not_unconfined(pod: Pod) -> list[str]:
    return ["seccomp Unconfined" for c in contexts(pod)
            if (c.get("seccompProfile") or {}).get("type") == "Unconfined"]


def sysctls(pod: Pod) -> list[str]:
    return [s["name"] for s in (pod["spec"].get("securityContext") or {}).get("sysctls") or ()
            if s["name"] not in SAFE_SYSCTLS]


BASELINE: list[Rule] = [host_process, host_namespaces, privileged, baseline_capabilities,
                        host_path, host_ports, app_armor, se_linux, proc_mount,
                        seccomp_not_unconfined, sysctls]


# -- restricted (baseline plus these) ---------------------------------------------------------

def volume_types(pod: Pod) -> list[str]:
    return [v["name"] for v in pod["spec"].get("volumes") or ()
            if not set(v) - {"name"} <= RESTRICTED_VOLUMES]


def privilege_escalation(pod: Pod) -> list[str]:
    return [box["name"] for box in containers(pod)
            if (box.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False]


def run_as_non_root(pod: Pod) -> list[str]:
    pod_level = (pod["spec"].get("securityContext") or {}).get("runAsNonRoot")
    found = []
    for box in containers(pod):
        value = (box.get("securityContext") or {}).get("runAsNonRoot")
        if value is False or (value is None and pod_level is not True):
            found.append(box["name"])
    return found


def run_as_user(pod: Pod) -> list[str]:
    return ["runAsUser 0" for c in contexts(pod) if c.get("runAsUser") == 0]


def seccomp_required(pod: Pod) -> list[str]:
    pod_type = ((pod["spec"].get("securityContext") or {}).get("seccompProfile") or {}).get(
        "type")
    found = []
    for box in containers(pod):
        own = ((box.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        if (own or pod_type) not in ("RuntimeDefault", "Localhost"):
            found.append(box["name"])
    return found


def restricted_capabilities(pod: Pod) -> list[str]:
    found = []
    for box in containers(pod):
        caps = (box.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or ()):
            found.append(f"{box['name']} does not drop ALL")
        found += [f"adds {c}" for c in caps.get("add") or () if c != "NET_BIND_SERVICE"]
    return found


RESTRICTED: list[Rule] = [*BASELINE, volume_types, privilege_escalation, run_as_non_root,
                          run_as_user, seccomp_required, restricted_capabilities]


def violations(pod: Pod, rules: list[Rule]) -> dict[str, list[str]]:
    return {rule.__name__: found for rule in rules if (found := rule(pod))}


def pod_templates(runtime: KubernetesRuntime) -> list[Pod]:
    objects = render_trial(make_experiment(), make_trial(), runtime, git_sha="a" * 40, pr=1,
                           spec_hash=None, parent_run_id=None, tracking_uri="http://mlflow:5000")
    for obj in objects:  # the hardening must not cost schema validity
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    return [obj["spec"]["template"] for obj in objects if obj["kind"] == "Job"]


# -- the rendered pods ------------------------------------------------------------------------

runtimes = st.builds(
    KubernetesRuntime,
    gpus_per_trial=st.integers(0, 8),
    nodes_per_trial=st.integers(1, 4),
    storage_pvc=st.sampled_from([None, "llm-storage"]),
    queue=st.sampled_from([None, "gpu-a100"]),
    service_account=st.sampled_from([None, "llm-trainer"]),
    secret_env=st.sampled_from([(), (SecretEnv("hf-token", "HF_TOKEN", "token"),),
                                (SecretEnv("mlflow-credentials"),)]),
    shm_size=st.sampled_from(["1Gi", "16Gi", "64Gi"]),
    ephemeral_storage=st.sampled_from([None, "50Gi"]),
    security=st.builds(PodSecurity, run_as_user=st.integers(1, 2**31 - 1),
                       run_as_group=st.integers(0, 2**31 - 1),
                       read_only_root_filesystem=st.booleans()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runtime=runtimes)
def test_every_rendered_pod_passes_the_restricted_profile(runtime: KubernetesRuntime) -> None:
    for pod in pod_templates(runtime):
        assert violations(pod, RESTRICTED) == {}
        context = pod["spec"]["securityContext"]
        assert context["runAsUser"] == runtime.security.run_as_user
        assert pod["spec"]["automountServiceAccountToken"] is False


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runtime=runtimes)
def test_run_as_root_keeps_baseline_and_gives_up_only_the_user_rules(
        runtime: KubernetesRuntime) -> None:
    root = dataclasses.replace(runtime, security=PodSecurity(run_as_root=True))
    for pod in pod_templates(root):
        assert violations(pod, BASELINE) == {}
        assert set(violations(pod, RESTRICTED)) == {"run_as_non_root"}


def test_the_defaults_are_hardened() -> None:
    [pod] = pod_templates(RUNTIME)
    box = pod["spec"]["containers"][0]["securityContext"]
    assert box == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                   "privileged": False, "readOnlyRootFilesystem": True,
                   "seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True,
                   "runAsUser": 1000, "runAsGroup": 1000}
    assert pod["spec"]["securityContext"]["fsGroup"] == 1000


def test_uid_zero_is_refused_unless_run_as_root() -> None:
    from sweepctl.render.kubernetes import RenderError
    with pytest.raises(RenderError, match="run_as_user"):
        pod_templates(dataclasses.replace(RUNTIME, security=PodSecurity(run_as_user=0)))


# -- the checker catches what it claims to --------------------------------------------------

BREAKS: list[tuple[str, Callable[[Pod], None]]] = [
    ("host_process", lambda p: p["spec"]["securityContext"].update(
        windowsOptions={"hostProcess": True})),
    ("host_namespaces", lambda p: p["spec"].update(hostPID=True)),
    ("privileged", lambda p: p["spec"]["containers"][0]["securityContext"].update(
        privileged=True)),
    ("baseline_capabilities", lambda p: p["spec"]["containers"][0]["securityContext"][
        "capabilities"].update(add=["SYS_ADMIN"])),
    ("host_path", lambda p: p["spec"]["volumes"].append(
        {"name": "h", "hostPath": {"path": "/"}})),
    ("host_ports", lambda p: p["spec"]["containers"][0].update(
        ports=[{"containerPort": 80, "hostPort": 80}])),
    ("app_armor", lambda p: p["spec"]["securityContext"].update(
        appArmorProfile={"type": "Unconfined"})),
    ("se_linux", lambda p: p["spec"]["securityContext"].update(
        seLinuxOptions={"type": "spc_t"})),
    ("proc_mount", lambda p: p["spec"]["containers"][0]["securityContext"].update(
        procMount="Unmasked")),
    ("seccomp_not_unconfined", lambda p: p["spec"]["containers"][0]["securityContext"].update(
        seccompProfile={"type": "Unconfined"})),
    ("sysctls", lambda p: p["spec"]["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}])),
    ("volume_types", lambda p: p["spec"]["volumes"].append(
        {"name": "n", "nfs": {"server": "x", "path": "/"}})),
    ("privilege_escalation", lambda p: p["spec"]["containers"][0]["securityContext"].pop(
        "allowPrivilegeEscalation")),
    ("run_as_non_root", lambda p: p["spec"]["containers"][0]["securityContext"].update(
        runAsNonRoot=False)),
    ("run_as_user", lambda p: p["spec"]["containers"][0]["securityContext"].update(
        runAsUser=0)),
    ("restricted_capabilities", lambda p: p["spec"]["containers"][0]["securityContext"].update(
        capabilities={"drop": ["NET_RAW"]})),
]


@pytest.mark.parametrize(("rule", "breaks"), BREAKS, ids=[rule for rule, _ in BREAKS])
def test_each_rule_catches_a_pod_that_breaks_it(rule: str, breaks: Callable[[Pod], None]) -> None:
    [pod] = pod_templates(RUNTIME)
    broken = copy.deepcopy(pod)
    breaks(broken)
    assert rule in violations(broken, RESTRICTED)


def test_seccomp_is_required_at_one_level() -> None:
    [pod] = pod_templates(RUNTIME)
    broken = copy.deepcopy(pod)
    broken["spec"]["securityContext"].pop("seccompProfile")
    assert violations(broken, RESTRICTED) == {}  # the container's own profile suffices
    broken["spec"]["containers"][0]["securityContext"].pop("seccompProfile")
    assert "seccomp_required" in violations(broken, RESTRICTED)
    assert violations(broken, BASELINE) == {}
