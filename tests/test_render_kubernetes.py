"""render/kubernetes.py and `sweepctl render`: schema-valid objects, hostile values inert."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sweepctl.cli.main import main
from sweepctl.render.kubernetes import (
    COMMAND,
    EXIT_BAD_CONFIG,
    META_FILE,
    RUNNER_FILE,
    TRAIN_FILE,
    VERIFY_AND_RUN,
    RenderError,
    config_data_hash,
    label_value,
    owned_by,
    render_stream,
    render_trial,
)
from sweepctl.render.labels import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_SPEC_HASH,
    LABEL_EXPERIMENT,
    LABEL_JOB_NAME,
    LABEL_QUEUE,
)
from sweepctl.runtime import KubernetesRuntime, SecretEnv
from sweepctl.spec.model import OWNED_KEYS, Budget, Dataset, Experiment, Objective
from sweepctl.sweep.trial import Trial

REPO_ROOT = Path(__file__).resolve().parent.parent

K8S_VERSION = kubernetes_validate.utils.latest_version()
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
HOSTILE = [
    '"; rm -rf / #',
    "line one\nline two: injected",
    "$(touch /tmp/pwned)",
    "`id`",
    "---\napiVersion: v1\nkind: Secret\n",
    "x" * 10_000,
    "ünïcödé ✓ 日本語 \u2028 \U0001f600",
    "'single' \"double\" \\back",
    "{{ .Values.x }} ${HOME} $$",
    " \t\r\n ",
]
SECRET_VALUE = "s3cr3t-token-value-never-rendered"
RUNTIME = KubernetesRuntime(
    namespace="llm-training", image="ghcr.io/example/train:0.9.5", gpus_per_trial=2,
    cpu="8", memory="64Gi", service_account="llm-trainer",
    node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    storage_pvc="llm-storage", storage_mount_path="/storage",
    secret_env=(SecretEnv("mlflow-credentials"), SecretEnv("hf-token", "HF_TOKEN", "token")),
)


def make_experiment(**changes: Any) -> Experiment:
    experiment = Experiment(
        path=Path("experiments/lora-rank-sweep"), name="lora-rank-sweep", title="t",
        owner="anna@example.com", hypothesis="h", phase="hyperparameter_search",
        objective=Objective("eval_loss", "minimize", 0.4),
        budget=Budget(max_trials=10, gpu_hours=40, hours_per_trial=3.0),
        dataset=Dataset("support-chat", "v2.1.0", "3f1c" * 16),
        mlflow_experiment="llama-finetuning", tags={"model.base": "llama-3-8b"},
        runtime={}, baseline={}, sweep={}, checklist={},
    )
    return dataclasses.replace(experiment, **changes)


def make_trial(**config: Any) -> Trial:
    full = {"model_name_or_path": "/storage/models/base", "lora_rank": 16, "seed": 42, **config}
    return Trial(index=1, slug="r16", params=config, config=full, trial_id="7c1e2a9f00",
                 name="lora-rank-sweep-r16-7c1e2a9f00")


def render(experiment: Experiment | None = None, trial: Trial | None = None,
           runtime: KubernetesRuntime = RUNTIME, **options: Any) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"git_sha": "a" * 40, "pr": 12, "spec_hash": "cfbf8792f057afce",
                              "parent_run_id": "0123abcd", "tracking_uri": "http://mlflow:5000"}
    kwargs.update(options)
    return render_trial(experiment or make_experiment(), trial or make_trial(), runtime, **kwargs)


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    job = objects[-1]
    result: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return result


def assert_valid_and_inert(objects: list[dict[str, Any]], *hostile: str) -> None:
    """Schema-valid, round-trips through the stream, and no value reaches argv or env names."""
    assert [o["kind"] for o in objects] in (["ConfigMap", "Job"],
                                            ["ConfigMap", "Service", "Job"])
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        for key, value in obj["metadata"].get("labels", {}).items():
            assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
    assert list(yaml.safe_load_all(render_stream(objects))) == objects
    box = container(objects)
    assert box["command"] == COMMAND
    assert "args" not in box
    assert all(ENV_NAME.match(item["name"]) for item in box["env"])
    for text in hostile:
        assert all(text not in part for part in box["command"])
        assert all(text != item["name"] for item in box["env"])


def test_objects_follow_the_design_and_validate() -> None:
    objects = render()
    assert_valid_and_inert(objects)
    config_map, job = objects
    assert config_map["metadata"]["name"] == job["metadata"]["name"] == make_trial().name
    spec = job["spec"]
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == int(3.0 * 3600 * 1.5)
    assert spec["ttlSecondsAfterFinished"] == 86400
    assert "suspend" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["serviceAccountName"] == "llm-trainer"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["storage"]["persistentVolumeClaim"]["claimName"] == "llm-storage"
    assert volumes["sweepctl"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert volumes["dshm"] == {"name": "dshm", "emptyDir": {"medium": "Memory",
                                                            "sizeLimit": "16Gi"}}
    box = container(objects)
    assert {m["mountPath"]: m["name"] for m in box["volumeMounts"]} == {
        "/etc/sweepctl": "sweepctl", "/storage": "storage", "/tmp": "tmp", "/dev/shm": "dshm"}
    assert box["image"] == "ghcr.io/example/train:0.9.5"
    assert box["resources"]["limits"] == {"nvidia.com/gpu": "2", "cpu": "8", "memory": "64Gi",
                                          "ephemeral-storage": "50Gi"}
    assert box["resources"]["requests"] == {"cpu": "8", "memory": "64Gi",
                                            "ephemeral-storage": "50Gi"}
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"} in box["env"]
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "sweepctl"
    assert labels[LABEL_EXPERIMENT] == "lora-rank-sweep"
    assert labels["sweepctl.io/trial-id"] == "7c1e2a9f00"
    assert LABEL_QUEUE not in labels
    annotations = job["metadata"]["annotations"]
    assert annotations["sweepctl.io/git-sha"] == "a" * 40
    assert annotations["sweepctl.io/pr"] == "12"
    assert re.fullmatch(r"[0-9a-f]{16}", annotations[ANNOTATION_SPEC_HASH])
    train = yaml.safe_load(config_map["data"]["train.yaml"])
    assert train["report_to"] == "mlflow" and train["run_name"] == make_trial().name
    assert train["output_dir"] == f"/storage/lora-rank-sweep/{make_trial().name}"
    meta = json.loads(config_map["data"]["meta.json"])
    assert meta["parent_run_id"] == "0123abcd"
    assert meta["tags"]["sweepctl.trial_id"] == "7c1e2a9f00"
    runner = (REPO_ROOT / "tools/sweepctl/runner/trial_runner.py").read_text()
    assert config_map["data"]["trial_runner.py"] == runner


def test_the_stream_passes_the_kubernetes_validate_cli(tmp_path: Path) -> None:
    queued = dataclasses.replace(RUNTIME, queue="gpu-a100")
    stream = render_stream([*render(), *render(runtime=queued, trial=make_trial(lora_rank=32))])
    path = tmp_path / "trials.yaml"
    path.write_text(stream)
    result = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"),
                             "--strict", "-k", K8S_VERSION, str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 4


def test_queue_and_suspend() -> None:
    plain_hash = render()[1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    queued = render(runtime=dataclasses.replace(RUNTIME, queue="gpu-a100"))
    assert queued[1]["metadata"]["labels"][LABEL_QUEUE] == "gpu-a100"
    assert queued[1]["spec"]["suspend"] is True
    assert LABEL_QUEUE not in queued[0]["metadata"]["labels"]
    suspended = render(suspend=True)
    assert suspended[1]["spec"]["suspend"] is True
    # suspension is scheduling, not spec: launch must not see a changed Job
    assert suspended[1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH] == plain_hash
    assert_valid_and_inert(queued)


def test_spec_hash_follows_the_job_not_the_commit() -> None:
    first = render()[1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    other_commit = render(git_sha="b" * 40, pr=13, parent_run_id="ffff")
    assert other_commit[1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH] == first
    bigger = render(runtime=dataclasses.replace(RUNTIME, gpus_per_trial=4))
    assert bigger[1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH] != first
    changed = render(trial=make_trial(learning_rate=1e-4))
    assert changed[1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH] != first


def test_without_storage_the_output_goes_to_an_empty_dir() -> None:
    objects = render(runtime=KubernetesRuntime(gpus_per_trial=0))
    assert_valid_and_inert(objects)
    volumes = {v["name"]: v for v in objects[1]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["storage"] == {"name": "storage", "emptyDir": {}}
    assert container(objects)["resources"] == {"limits": {"ephemeral-storage": "50Gi"},
                                               "requests": {"ephemeral-storage": "50Gi"}}
    unlimited = render(runtime=KubernetesRuntime(gpus_per_trial=0, ephemeral_storage=None))
    assert "resources" not in container(unlimited)


def test_secrets_are_references_only() -> None:
    objects = render()
    box = container(objects)
    assert {"name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in box["env"]
    assert box["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    assert {item["name"] for item in box["env"] if "value" in item} == {
        "MLFLOW_TRACKING_URI", "PYTHONUNBUFFERED", "HOME", "NPROC_PER_NODE"}


def test_a_password_in_the_tracking_uri_is_refused_and_not_repeated() -> None:
    with pytest.raises(RenderError) as caught:
        render(tracking_uri=f"https://user:{SECRET_VALUE}@mlflow.example.com")
    assert SECRET_VALUE not in str(caught.value)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_values_in_yaml_fields_stay_data(text: str) -> None:
    experiment = make_experiment(
        name=text, title=text, owner=text, hypothesis=text, phase=text,
        tags={text: text, "ok": text}, mlflow_experiment=text,
        dataset=Dataset(text, text, text),
    )
    trial = make_trial(lora_target=text, **{text: text, "nested": {"k": [text]}})
    trial = dataclasses.replace(trial, trial_id=text, slug=text)
    objects = render(experiment, trial, git_sha=text, pr=text, spec_hash=text,
                     parent_run_id=text, tracking_uri=f"http://mlflow:5000/{text.strip()}")
    assert_valid_and_inert(objects, text)
    data = objects[0]["data"]
    train = yaml.safe_load(data["train.yaml"])
    assert train[text] == text and train["lora_target"] == text
    assert train["nested"] == {"k": [text]}
    meta = json.loads(data["meta.json"])
    assert meta["tags"][text] == text and meta["mlflow_experiment"] == text
    assert meta["tags"]["sweepctl.experiment"] == text
    assert objects[1]["metadata"]["labels"][LABEL_EXPERIMENT] == label_value(text)
    uri = next(e["value"] for e in container(objects)["env"] if e["name"] == "MLFLOW_TRACKING_URI")
    assert "$(" not in uri.replace("$$", "")  # Kubernetes would expand $(VAR) references


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.text(min_size=1, max_size=40), value=st.text(max_size=300))
@example(key="0", value="\x85")      # NEL: PyYAML folded it into a space (found by hypothesis)
@example(key="k", value="a\x85\nb")
def test_any_text_in_config_and_tags_round_trips(key: str, value: str) -> None:
    # sweepctl's own tags and train keys win by design (hypothesis draws them from the
    # source's string constants, e.g. "sweepctl.git_sha")
    assume(key not in json.loads(render()[0]["data"]["meta.json"])["tags"])
    assume(key not in OWNED_KEYS)
    experiment = make_experiment(tags={key: value})
    objects = render(experiment, make_trial(**{key: value}))
    assert_valid_and_inert(objects)  # argv stays the fixed list (a short key may be "-")
    assert yaml.safe_load(objects[0]["data"]["train.yaml"])[key] == value
    assert json.loads(objects[0]["data"]["meta.json"])["tags"][key] == value


@pytest.mark.parametrize("field", [
    "namespace", "image", "queue", "service_account", "storage_pvc", "storage_mount_path",
    "gpu_resource", "cpu", "memory", "shm_size", "ephemeral_storage"])
@pytest.mark.parametrize("text", [t for t in HOSTILE if t.strip()][:6])
def test_hostile_runtime_identifiers_are_refused(field: str, text: str) -> None:
    runtime = dataclasses.replace(RUNTIME, **{field: text})
    with pytest.raises(RenderError) as caught:
        render(runtime=runtime)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("runtime", [
    dataclasses.replace(RUNTIME, secret_env=(SecretEnv("hf-token", "$(HF_TOKEN)", "token"),)),
    dataclasses.replace(RUNTIME, secret_env=(SecretEnv("hf-token", "A=B", "token"),)),
    dataclasses.replace(RUNTIME, secret_env=(SecretEnv("Bad Secret\n"),)),
    dataclasses.replace(RUNTIME, node_selector={"gpu": "$(id)"}),
    dataclasses.replace(RUNTIME, node_selector={"`id`": "a100"}),
    dataclasses.replace(RUNTIME, tolerations=({"key": "gpu", "command": ["sh"]},)),
    dataclasses.replace(RUNTIME, tolerations=({"key": "gpu", "value": "a\nb"},)),
    dataclasses.replace(RUNTIME, gpus_per_trial=True),
    dataclasses.replace(RUNTIME, nodes_per_trial=0),
    dataclasses.replace(RUNTIME, backoff_limit=-1),
    # a secret must not replace what sweepctl sets (the last duplicate env var wins)
    dataclasses.replace(RUNTIME, secret_env=(SecretEnv("x", "MASTER_ADDR", "k"),)),
    dataclasses.replace(RUNTIME, secret_env=(SecretEnv("x", "SWEEPCTL_CONFIG_HASH", "k"),)),
    dataclasses.replace(RUNTIME, storage_mount_path="/tmp"),
    dataclasses.replace(RUNTIME, storage_mount_path="/dev/shm"),
])
def test_hostile_env_names_selectors_and_tolerations_are_refused(
        runtime: KubernetesRuntime) -> None:
    with pytest.raises(RenderError):
        render(runtime=runtime)


@pytest.mark.parametrize("text", ["lora-rank-sweep", "a" * 63, "a" * 64, "Bad Name!", "-x-",
                                  "ü", ""])
def test_label_values_are_always_valid(text: str) -> None:
    value = label_value(text)
    assert LABEL_VALUE.match(value) and len(value) <= 63
    if LABEL_VALUE.match(text) and len(text) <= 63:
        assert value == text
    assert label_value("x" * 70) != label_value("x" * 71)  # still unique when shortened


def test_render_command_prints_a_stream(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    folder = REPO_ROOT / "experiments" / "lora-rank-sweep"
    assert main(["render", str(folder), "--git-sha", "c" * 40, "--pr", "5"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert len(docs) >= 2 and len(docs) % 2 == 0
    assert [d["kind"] for d in docs[:2]] == ["ConfigMap", "Job"]
    assert docs[1]["metadata"]["annotations"]["sweepctl.io/pr"] == "5"
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)

    out = tmp_path / "rendered"
    assert main(["render", str(folder), "--output", str(out)]) == 0
    files = sorted(out.glob("*.yaml"))
    assert len(files) == len(docs) // 2
    assert "rendered into" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["\x85", "a\x85b", "a\x85\nb\n"])
def test_nel_reaches_llamafactory_unchanged(value: str) -> None:
    """NEL (U+0085) is a line break to a YAML reader: in the ConfigMap's train.yaml and in
    the stream kubectl reads, it must come back as written, or the Job trains another
    config than the one its trial id names."""
    objects = render(make_experiment(tags={"note": value}), make_trial(template=value))
    [config_map, _job] = list(yaml.safe_load_all(render_stream(objects)))
    assert yaml.safe_load(config_map["data"]["train.yaml"])["template"] == value
    assert json.loads(config_map["data"]["meta.json"])["tags"]["note"] == value


MULTI_NODE = dataclasses.replace(RUNTIME, nodes_per_trial=2, gpus_per_trial=8)


def env_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom"))
            for item in container(objects)["env"]}


def test_failures_disruptions_are_retried_and_a_bad_config_fails_at_once() -> None:
    assert EXIT_BAD_CONFIG == 78  # the contract with runner/trial_runner.py
    job = render()[-1]
    assert job["spec"]["podFailurePolicy"] == {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                              "values": [78]}},
    ]}
    # the API server refuses a podFailurePolicy on any other restartPolicy
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container([job])["name"] == "trainer"
    assert render(runtime=dataclasses.replace(RUNTIME, backoff_limit=5))[-1]["spec"][
        "backoffLimit"] == 5


def test_the_configmap_is_immutable_and_its_hash_is_on_the_pod_template() -> None:
    config_map, job = render()
    assert config_map["immutable"] is True
    digest = config_data_hash(config_map)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert config_map["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] == digest
    assert job["spec"]["template"]["metadata"]["annotations"] == {ANNOTATION_CONFIG_HASH: digest}
    assert env_of([job])["SWEEPCTL_CONFIG_HASH"] == {"fieldRef": {
        "fieldPath": "metadata.annotations['sweepctl.io/config-hash']"}}
    squatted = {**config_map, "data": {**config_map["data"], RUNNER_FILE: "import os\n"}}
    assert config_data_hash(squatted) != digest
    assert config_data_hash({**config_map, "binaryData": {"x": "AA=="}}) != digest
    # another commit renders other metadata (meta.json), so another ConfigMap, same work
    other = render(git_sha="b" * 40)
    assert config_data_hash(other[0]) != digest
    assert other[1]["metadata"]["annotations"][ANNOTATION_SPEC_HASH] == \
        job["metadata"]["annotations"][ANNOTATION_SPEC_HASH]


def run_start_check(folder: Path, data: dict[str, str], digest: str
                    ) -> subprocess.CompletedProcess[str]:
    for key, value in data.items():
        (folder / key).write_bytes(value.encode())
    argv = [sys.executable, *COMMAND[1:]]
    argv[3] = str(folder)  # the mount path, here a temporary folder
    return subprocess.run(argv, capture_output=True, text=True, check=False,
                          env={"SWEEPCTL_CONFIG_HASH": digest, "PATH": "/usr/bin:/bin"})


def test_the_pod_runs_the_rendered_configmap_only(tmp_path: Path) -> None:
    """What the container's fixed command does with the mounted files: the rendered data
    execs the runner with its arguments; a squatter's data exits EXIT_BAD_CONFIG unrun."""
    config_map = render()[0]
    assert COMMAND[:3] == ["python", "-c", VERIFY_AND_RUN]
    assert COMMAND[4:] == [RUNNER_FILE, TRAIN_FILE, META_FILE]
    probe = dict(config_map["data"])
    probe[RUNNER_FILE] = "import sys\nprint('runner', *sys.argv[1:])\n"
    probe[TRAIN_FILE] += "# crlf \r\n ünï\n"  # bytes, not text mode: no newline folding
    digest = config_data_hash({"data": probe})
    ran = run_start_check(tmp_path, probe, digest)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["runner", "--config", str(tmp_path / TRAIN_FILE),
                                  "--meta", str(tmp_path / META_FILE)]
    foreign = {**probe, RUNNER_FILE: probe[RUNNER_FILE] + "print('foreign code')\n"}
    refused = run_start_check(tmp_path, foreign, digest)
    assert refused.returncode == EXIT_BAD_CONFIG
    assert "foreign" not in refused.stdout and "runner" not in refused.stdout
    assert "not the one this Job was rendered with" in refused.stderr


def test_owned_by_lets_the_garbage_collector_remove_configmap_and_service() -> None:
    objects = render(runtime=MULTI_NODE)
    job_name = objects[-1]["metadata"]["name"]
    for obj in objects[:-1]:
        owned = owned_by(obj, job_name, "4f6a3b2c-0000-4000-8000-000000000001")
        assert owned["metadata"]["ownerReferences"] == [
            {"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
             "uid": "4f6a3b2c-0000-4000-8000-000000000001"}]
        assert "ownerReferences" not in obj["metadata"]  # a copy
        assert {k: v for k, v in owned.items() if k != "metadata"} == \
            {k: v for k, v in obj.items() if k != "metadata"}
        kubernetes_validate.validate(owned, K8S_VERSION, strict=True)
    with pytest.raises(RenderError):
        owned_by(objects[0], "another-job", "uid")


def test_one_node_has_no_service_and_torchrun_only_for_several_gpus() -> None:
    assert [o["kind"] for o in render()] == ["ConfigMap", "Job"]
    assert env_of(render())["NPROC_PER_NODE"] == "2"
    single = render(runtime=dataclasses.replace(RUNTIME, gpus_per_trial=1))
    assert not {"NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR"} & set(env_of(single))
    spec = single[-1]["spec"]
    assert "completionMode" not in spec and "subdomain" not in spec["template"]["spec"]


def test_multi_node_is_an_indexed_job_with_a_headless_service() -> None:
    objects = render(runtime=MULTI_NODE)
    assert_valid_and_inert(objects)
    config_map, service, job = objects
    name = make_trial().name
    assert service["metadata"]["name"] == job["metadata"]["name"] == name
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == name
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    # the Job controller labels its pods with the Job's name; nothing else matches
    assert service["spec"]["selector"] == {LABEL_JOB_NAME: name}
    env = env_of(objects)
    # an Indexed pod's hostname is <job>-<index>: index 0 at <hostname>.<subdomain>
    assert env["MASTER_ADDR"] == f"{name}-0.{name}"
    assert env["MASTER_PORT"] == "29500"
    assert env["NNODES"] == "2" and env["NPROC_PER_NODE"] == "8"
    assert env["NODE_RANK"] == {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert container(objects)["resources"]["limits"]["nvidia.com/gpu"] == "8"  # per node
    assert LABEL_QUEUE not in service["metadata"]["labels"]
    assert config_map["metadata"]["name"] == name


def test_multi_node_with_kueue_is_one_suspended_workload() -> None:
    config_map, service, job = render(runtime=dataclasses.replace(MULTI_NODE, queue="gpu-a100"))
    assert job["metadata"]["labels"][LABEL_QUEUE] == "gpu-a100"
    assert job["spec"]["suspend"] is True
    # partial admission would start fewer pods than torchrun waits for
    assert not any(key.startswith("kueue.x-k8s.io/") for key in job["metadata"]["annotations"])
    assert LABEL_QUEUE not in service["metadata"]["labels"]
    assert LABEL_QUEUE not in config_map["metadata"]["labels"]


def test_the_spec_hash_covers_nodes_and_the_service() -> None:
    hashes = {render(runtime=dataclasses.replace(RUNTIME, nodes_per_trial=n))[-1]["metadata"][
        "annotations"][ANNOTATION_SPEC_HASH] for n in (1, 2, 3)}
    assert len(hashes) == 3


def test_a_multi_node_trial_name_must_leave_room_for_the_pod_index() -> None:
    long_name = "a" * 62
    trial = dataclasses.replace(make_trial(), name=long_name)
    assert [o["kind"] for o in render(trial=trial)] == ["ConfigMap", "Job"]  # one node: fine
    with pytest.raises(RenderError, match="too long"):
        render(trial=trial, runtime=MULTI_NODE)
    with pytest.raises(RenderError):
        render(trial=dataclasses.replace(make_trial(), name="1-starts-with-a-digit"),
               runtime=MULTI_NODE)


def test_multi_node_objects_pass_the_kubernetes_validate_cli(tmp_path: Path) -> None:
    queued = dataclasses.replace(MULTI_NODE, queue="gpu-a100", nodes_per_trial=4)
    objects = [*render(runtime=MULTI_NODE), *render(runtime=queued)]
    name = make_trial().name
    objects += [owned_by(obj, name, "uid-1") for obj in objects if obj["kind"] != "Job"]
    path = tmp_path / "multi.yaml"
    path.write_text(render_stream(objects))
    result = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"),
                             "--strict", "-k", K8S_VERSION, str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(objects) == 10


def test_the_rbac_role_grants_exactly_what_launch_needs() -> None:
    """deploy/rbac.yaml: create for every kind render emits, no watch, update, escalation
    or access to pods and secrets, and nothing beyond the list the module doc explains."""
    documents = list(yaml.safe_load_all((REPO_ROOT / "deploy/rbac.yaml").read_text()))
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    [role] = [d for d in documents if d["kind"] == "Role"]
    granted = {(rule_group, resource): sorted(rule["verbs"]) for rule in role["rules"]
               for rule_group in rule["apiGroups"] for resource in rule["resources"]}
    assert granted == {
        ("batch", "jobs"): sorted(["create", "get", "list", "patch", "delete"]),
        ("", "configmaps"): sorted(["create", "get", "list"]),
        ("", "services"): sorted(["create", "get", "list", "delete"]),
    }
    kinds = {o["kind"] for o in render(runtime=MULTI_NODE)}
    resources = {"Job": ("batch", "jobs"), "ConfigMap": ("", "configmaps"),
                 "Service": ("", "services")}
    assert all("create" in granted[resources[kind]] for kind in kinds)


def test_defaults_yaml_settings_reach_the_pods() -> None:
    """The keys of experiments/defaults.yaml's kubernetes section, parsed and rendered."""
    from sweepctl.runtime import runtime_from_data
    runtime = runtime_from_data({"kubernetes": {
        "nodes_per_trial": 2, "gpus_per_trial": 4, "shm_size": "8Gi",
        "ephemeral_storage": None, "backoff_limit": 1,
        "security": {"run_as_user": 4242, "run_as_group": 55,
                     "read_only_root_filesystem": False}}}).kubernetes
    _config_map, _service, job = render(runtime=runtime)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 1 and job["spec"]["completions"] == 2
    assert pod["securityContext"]["runAsUser"] == 4242
    assert pod["securityContext"]["fsGroup"] == 55
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False
    assert "ephemeral-storage" not in pod["containers"][0]["resources"]["limits"]
    assert {v["name"]: v for v in pod["volumes"]}["dshm"]["emptyDir"]["sizeLimit"] == "8Gi"
    root = runtime_from_data({"kubernetes": {"security": {"run_as_root": True}}}).kubernetes
    assert "runAsUser" not in render(runtime=root)[-1]["spec"]["template"]["spec"][
        "securityContext"]
    defaults = runtime_from_data({}).kubernetes
    assert (defaults.backoff_limit, defaults.nodes_per_trial, defaults.shm_size) == (2, 1, "16Gi")


def test_label_and_annotation_names_are_spelled_in_labels_py_only() -> None:
    """One vocabulary: render/ spells no label or annotation name outside render/labels.py."""
    prefixes = ("sweepctl.io/", "kueue.x-k8s.io/", "batch.kubernetes.io/",
                "app.kubernetes.io/")
    for path in (REPO_ROOT / "tools/sweepctl/render").glob("*.py"):
        if path.name != "labels.py":
            text = path.read_text()
            assert not [p for p in prefixes if f'"{p}' in text or f"'{p}" in text], path
