"""Fixtures for the real peers (design.md "Tests talk to real peers").

Each helper fixture starts its server on 127.0.0.1 on a free port and stops it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "tests" / "examples"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_SYSTEM": os.devnull,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the real $HOME or inherits a developer's git identity."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("MLFLOW_TRACKING_URI", "GITHUB_TOKEN", "GITHUB_REPOSITORY", "KUBECONFIG"):
        monkeypatch.delenv(key, raising=False)


@contextlib.contextmanager
def serving_mlflow(root: Path, backend_store_uri: str,
                   env: dict[str, str] | None = None) -> Iterator[str]:
    """A real `mlflow server` over ``backend_store_uri``; yields its http:// URI."""
    port = free_port()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend_store_uri,
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log_tail = (root / "server.log").read_text()[-2000:]
                raise RuntimeError(f"mlflow server did not start: {log_tail}")
            time.sleep(0.3)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` with a SQLite backend; yields its http:// tracking URI."""
    root = tmp_path_factory.mktemp("mlflow")
    with serving_mlflow(root, f"sqlite:///{root / 'mlflow.db'}") as uri:
        yield uri


@pytest.fixture
def mlflow_file_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` over the file store (./mlruns, in maintenance but still
    served when allowed): its bulk history read samples steps across the request."""
    with serving_mlflow(tmp_path, (tmp_path / "mlruns").as_uri(),
                        {"MLFLOW_ALLOW_FILE_STORE": "true"}) as uri:
        yield uri


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """An empty real git repository with a fixed author (from GIT_ENV)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    return repo


def trainer_python() -> Path | None:
    """The trainer's interpreter (LLaMA-Factory + mlflow): .venv-trainer, else the env var."""
    local = REPO_ROOT / ".venv-trainer" / "bin" / "python"
    if local.exists():
        return local
    configured = os.environ.get("SWEEPCTL_TRAINER_PYTHON")
    return Path(configured) if configured else None


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo/build_tiny_model.py's output (model/ and data/ with dataset `tiny_alpaca`)."""
    python = trainer_python()
    if python is None:
        pytest.skip("no trainer environment: run `make trainer` or set SWEEPCTL_TRAINER_PYTHON")
    outdir = tmp_path_factory.mktemp("tiny")
    subprocess.run([str(python), str(REPO_ROOT / "demo" / "build_tiny_model.py"), str(outdir)],
                   check=True, capture_output=True, timeout=300,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return outdir
