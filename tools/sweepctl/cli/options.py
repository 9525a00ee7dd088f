"""What several commands share: how an experiment is named, the backend option, and the
one workspace a command builds from the environment (the CLI reads os.environ; the
library never does)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from sweepctl.backends import BACKENDS, BackendSettings, default_backend, info
from sweepctl.keptindex import InFolder, InTrackingStore, Keeper
from sweepctl.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])
EXPERIMENT_HELP = "an experiment folder, or its bare name under experiments/"


def backend_option(function: F) -> F:
    return click.option(
        "--backend", type=click.Choice(BACKENDS), default=None,
        help="kubernetes: Jobs through KUBECONFIG / in-cluster; local: processes "
        "(default: SWEEPCTL_BACKEND, else kubernetes when KUBECONFIG is set or "
        "in-cluster, else local)")(function)


def chosen_backend(backend: str | None, env: Mapping[str, str] = os.environ) -> str:
    return backend or default_backend(env)


# where the run index is kept between commands: under the repo (git-ignored), unless
# SWEEPCTL_INDEX_CACHE names another folder ("./mlflow" for one of that name), "mlflow"
# (the tracking store) or "off"
INDEX_CACHE = Path(".sweepctl") / "index"


def index_keeper(env: Mapping[str, str]) -> Keeper | None:
    value = env.get("SWEEPCTL_INDEX_CACHE", "").strip()
    if value.lower() in ("off", "0", "false", "no"):
        return None
    if value.lower() == "mlflow":
        return InTrackingStore()
    return InFolder(Path(value) if value else INDEX_CACHE)


def workspace_for(backend: str | None, env: Mapping[str, str] = os.environ,
                  tracking_uri: str | None = None, *, full_scan: bool = False) -> Workspace:
    """The command's workspace: MLflow as the backend's trials see it (the one rule), the
    run index kept between commands (see runindex.scan_cached)."""
    return Workspace(shared_tracking=info(chosen_backend(backend, env)).shared_tracking,
                     env_tracking_uri=tracking_uri or env.get("MLFLOW_TRACKING_URI") or None,
                     index_keeper=index_keeper(env), full_scan=full_scan)


def full_scan_option(function: F) -> F:
    return click.option(
        "--full-scan", is_flag=True,
        help="read every trial run from MLflow instead of refreshing the run index the "
        "last command kept (in .sweepctl/index/, or where SWEEPCTL_INDEX_CACHE says)"
        )(function)


def backend_settings(state_dir: Path, *, dry_run: bool = False,
                     concurrency: int = 8, env: Mapping[str, str] = os.environ
                     ) -> BackendSettings:
    return BackendSettings(dry_run=dry_run, state_dir=state_dir, env=dict(env),
                           kube_concurrency=concurrency)


def experiment_folders(workspace: Workspace, names: Sequence[str]) -> list[Path]:
    """The named experiments (paths or bare names), or every one under experiments/."""
    if names:
        return [workspace.locate(name) for name in names]
    from sweepctl.spec.validate import discover

    folders, _ = discover([workspace.cwd / "experiments"])
    return folders
