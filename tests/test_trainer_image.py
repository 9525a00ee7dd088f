"""deploy/trainer/Dockerfile and requirements/trainer-gpu.txt agree with the trainer
that CI tests with (requirements/trainer.txt): a GPU trial trains with the same stack."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO_ROOT  # type: ignore[import-not-found]

DOCKERFILE = REPO_ROOT / "deploy" / "trainer" / "Dockerfile"
CPU_PINS = REPO_ROOT / "requirements" / "trainer.txt"
GPU_PINS = REPO_ROOT / "requirements" / "trainer-gpu.txt"
FROM_BASE = {"torch", "torchvision", "torchaudio"}   # CUDA builds from the base image
GPU_ONLY = {"nvidia-ml-py"}
TRAINING_STACK = {"llamafactory", "transformers", "peft", "mlflow", "accelerate",
                  "datasets", "trl", "tokenizers", "psutil"}


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        assert name not in found, f"{path.name}: {name} pinned twice"
        found[name] = match[2]
    return found


def test_gpu_pins_are_the_cpu_trainers_pins() -> None:
    cpu, gpu = pins(CPU_PINS), pins(GPU_PINS)
    assert set(gpu) >= TRAINING_STACK
    assert {name: cpu[name] for name in set(cpu) - FROM_BASE} \
        == {name: gpu[name] for name in set(gpu) - GPU_ONLY}
    assert not FROM_BASE & set(gpu)


def test_the_base_image_carries_the_pinned_torch() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    (torch,) = re.findall(r"^ARG TORCH_VERSION=(\S+)$", text, re.MULTILINE)
    assert torch == pins(CPU_PINS)["torch"]
    assert re.search(r"^FROM pytorch/pytorch:\$\{TORCH_VERSION\}-", text, re.MULTILINE)
    assert "-c /tmp/torch-constraint.txt -r /tmp/trainer-gpu.txt" in text


def test_the_image_runs_as_uid_1000() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] == "1000:1000"
    assert "--uid 1000" in text
