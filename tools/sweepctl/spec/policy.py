"""The policy: what a merged experiment may change about how it runs (issue 10).

A merge is a command to spend GPUs with the cluster's credentials, so an experiment's
``runtime:`` may not widen its own trust. ``experiments/defaults.yaml`` belongs to the
cluster admin (protect it with CODEOWNERS); its ``policy:`` section lifts limits,
everything else is refused by default.

Decisions:
- An allowlist, not a denylist: a knob added to ``runtime:`` later is refused until it
  is listed here or in ``policy.allow_overrides``, so a new setting never opens a hole.
- The unit of an override is ``section.key`` (``kubernetes.storage``,
  ``mlflow.tracking_uri``): maps such as node_selector or storage are one decision.
- Setting a key to exactly what defaults.yaml already says widens nothing and is
  allowed (maps compared after the same merge the runtime does).
- ``allow_overrides`` lifts the value checks too: listing ``kubernetes.image`` there
  means any image.
- Messages never echo an image or a URI: a value is reported by its position.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from sweepctl.errors import SpecError
from sweepctl.findings import Findings
from sweepctl.runtime import deep_merge
from sweepctl.spec.model import Experiment
from sweepctl.spec.sensitive import token_kind
from sweepctl.spec.yamlload import Document, Key, load_document

WHERE = "(policy in experiments/defaults.yaml)"
# What an experiment may override without the admin's say: where and how big, not who.
# local.python (the program every local launch runs) and local.tracking_uri (where local
# trials send the machine's MLFLOW_TRACKING_* credentials) are not scheduling knobs: a
# merged experiment could point them at a script in the PR or at another host
SCHEDULING_KEYS = ("local.max_parallel", "kubernetes.gpus_per_trial", "kubernetes.queue",
                   "kubernetes.image", "kubernetes.cpu", "kubernetes.memory")
RESERVED_TAG_PREFIXES = ("sweepctl.", "mlflow.")


@dataclass(frozen=True)
class Policy:
    """defaults.yaml ``policy:``; the field defaults are the policy without that section."""

    max_gpus_per_trial: int = 8
    queues: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    require_image_digest: bool = False
    allow_overrides: tuple[str, ...] = ()
    allow_trust_remote_code: bool = False


class Violation(NamedTuple):
    key: Key          # position inside the document it was found in
    at_key: bool      # report at the key (True) or at its value
    message: str
    rule: str


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def policy_from_data(defaults: Mapping[str, Any]) -> Policy:
    """The policy of a defaults.yaml; a mistyped field keeps its strict default (the
    schema reports it)."""
    data = defaults.get("policy")
    if not isinstance(data, Mapping):
        return Policy()
    base = Policy()
    gpus = data.get("max_gpus_per_trial")
    return Policy(
        max_gpus_per_trial=gpus if isinstance(gpus, int) and not isinstance(gpus, bool)
        else base.max_gpus_per_trial,
        queues=_strings(data.get("queues")),
        images=_strings(data.get("images")),
        require_image_digest=data.get("require_image_digest") is True,
        allow_overrides=_strings(data.get("allow_overrides")),
        allow_trust_remote_code=data.get("allow_trust_remote_code") is True,
    )


def _overrides(runtime: Mapping[str, Any]) -> list[tuple[Key, Any]]:
    found: list[tuple[Key, Any]] = []
    for section, values in runtime.items():
        if isinstance(values, Mapping):
            found.extend(((section, key), value) for key, value in values.items())
        else:
            found.append(((section,), values))
    return found


def runtime_overrides(experiment: Experiment) -> list[tuple[str, Any]]:
    """Every ``section.key`` the experiment's ``runtime:`` sets, in file order (the plan
    lists them all)."""
    return [(".".join(map(str, key)), value) for key, value in _overrides(experiment.runtime)]


def _covered(dotted: str, names: tuple[str, ...]) -> bool:
    return any(dotted == name or dotted.startswith(name + ".") for name in names)


def _default_of(defaults: Mapping[str, Any], key: Key) -> Any:
    value: Any = defaults
    for part in key:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _unchanged(value: Any, default: Any) -> bool:
    if isinstance(value, Mapping) and isinstance(default, Mapping):
        return deep_merge(default, value) == dict(default)
    return default is not None and value == default


def image_allowed(image: str, prefixes: tuple[str, ...]) -> bool:
    """``image`` is in one of the repositories ``prefixes`` names. A prefix that does not
    end in ``/`` must end at a repository boundary: ``ghcr.io/org/train`` allows
    ``ghcr.io/org/train:1`` and ``ghcr.io/org/train@sha256:...``, not ``.../train-evil``."""
    for prefix in prefixes:
        if not image.startswith(prefix):
            continue
        if prefix.endswith(("/", ":", "@")) or image[len(prefix):][:1] in ("", ":", "@", "/"):
            return True
    return False


def _value_violation(dotted: str, value: Any, policy: Policy) -> tuple[str, str] | None:
    """(message, rule) when a scheduling knob's value is outside the policy's limits."""
    name = f"runtime.{dotted}"
    if dotted == "kubernetes.gpus_per_trial" and isinstance(value, int) \
            and value > policy.max_gpus_per_trial:
        return (f"{name} {value} is over policy.max_gpus_per_trial "
                f"{policy.max_gpus_per_trial} {WHERE}", "policy-gpus")
    if dotted == "kubernetes.queue" and value not in policy.queues:
        allowed = ", ".join(policy.queues) or "none besides the default"
        return (f"{name} is not a queue in policy.queues (allowed: {allowed}) {WHERE}",
                "policy-queue")
    if dotted == "kubernetes.image" and isinstance(value, str):
        if not image_allowed(value, policy.images):
            allowed = ", ".join(policy.images) or "none besides the default"
            return (f"{name} is not from a repository in policy.images (allowed: {allowed}) "
                    f"{WHERE}", "policy-image")
        if policy.require_image_digest and "@sha256:" not in value:
            return (f"{name} must be pinned by digest (image@sha256:...), as "
                    f"policy.require_image_digest asks {WHERE}", "policy-image")
    return None


def override_violations(runtime: Mapping[str, Any], defaults: Mapping[str, Any],
                        policy: Policy) -> list[Violation]:
    """What in an experiment's ``runtime:`` the policy refuses (keys relative to it)."""
    violations = []
    for key, value in _overrides(runtime):
        dotted = ".".join(map(str, key))
        if _covered(dotted, policy.allow_overrides) or _unchanged(value,
                                                                  _default_of(defaults, key)):
            continue
        if _covered(dotted, SCHEDULING_KEYS):
            problem = _value_violation(dotted, value, policy)
            if problem is not None:
                violations.append(Violation(("runtime", *key), False, *problem))
            continue
        violations.append(Violation(("runtime", *key), True, f"runtime.{dotted} may not be "
                                    f"overridden by an experiment {WHERE}", "policy-override"))
    return violations


def _hidden(text: str) -> str:
    return "<hidden>" if token_kind(text) else repr(text)


def tag_violations(tags: Any) -> list[Violation]:
    """``tags:`` keys MLflow or sweepctl own: ``sweepctl.pr`` would steer the report to
    another PR, ``mlflow.*`` rewrites what the MLflow UI shows about a run."""
    if not isinstance(tags, Mapping):
        return []
    return [Violation(("tags", key), True, f"tag {_hidden(key)} is reserved: sweepctl.* and "
                      "mlflow.* tags are set by sweepctl and MLflow, not by an experiment",
                      "reserved-tag")
            for key in tags if key.lower().startswith(RESERVED_TAG_PREFIXES)]


_TRUST = ("trust_remote_code runs code from the model's repository in the trial; it needs "
          f"policy.allow_trust_remote_code: true {WHERE}")


def trust_violations(data: Any, where: Key = ()) -> list[Violation]:
    """Every ``trust_remote_code`` that is not plainly false, at any depth (baseline key,
    sweep parameter values, list trials, derived keys)."""
    found: list[Violation] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key == "trust_remote_code":
                found.extend(Violation(at, False, _TRUST, "trust-remote-code")
                             for at in _not_false((*where, key), value))
            else:
                found.extend(trust_violations(value, (*where, key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.extend(trust_violations(value, (*where, index)))
    return found


def _not_false(key: Key, value: Any) -> list[Key]:
    # a string "true", 1 or an expression would all turn it on in LLaMA-Factory's parser
    if isinstance(value, Mapping):
        return [k for name, v in value.items() for k in _not_false((*key, name), v)]
    if isinstance(value, list):
        return [k for i, v in enumerate(value) for k in _not_false((*key, i), v)]
    return [] if value is False or value is None else [key]


def read_defaults(folder: Path) -> Mapping[str, Any]:
    """defaults.yaml beside ``folder`` as plain data for the policy; {} (the strict default
    policy) when it is missing, a symlink (never read through) or broken (reported by
    validate on the file itself)."""
    # abspath, not runtime.defaults_path's resolve(): the same file (a linked folder is
    # refused) at a fraction of the cost, which validate pays once per folder
    path = Path(os.path.abspath(folder)).parent / "defaults.yaml"
    try:
        info = path.lstat()
    except OSError:
        return {}
    if not stat.S_ISREG(info.st_mode):
        return {}
    # every folder of a repository shares one file: parse it once per version of it
    return _parsed_defaults(str(path), info.st_mtime_ns, info.st_size, info.st_ino)


@lru_cache(maxsize=16)
def _parsed_defaults(path: str, mtime_ns: int, size: int, inode: int) -> Mapping[str, Any]:
    try:
        data = load_document(Path(path)).data
    except SpecError:
        return {}
    return MappingProxyType(data) if isinstance(data, dict) else {}


def check_policy(folder: Path, docs: Mapping[str, Document], schema_ok: Mapping[str, bool],
                 findings: Findings) -> None:
    """Policy findings for one folder: runtime overrides, reserved tags, trust_remote_code."""
    defaults = read_defaults(folder)
    policy = policy_from_data(defaults)
    for kind, doc in docs.items():
        if not isinstance(doc.data, Mapping):
            continue
        violations: list[Violation] = []
        if kind == "experiment" and schema_ok.get(kind):
            violations += override_violations(doc.data.get("runtime") or {}, defaults, policy)
            violations += tag_violations(doc.data.get("tags"))
        if kind in ("baseline", "sweep") and not policy.allow_trust_remote_code:
            violations += trust_violations(doc.data)
        for violation in violations:
            mark = doc.key_mark(violation.key) if violation.at_key else doc.mark(violation.key)
            findings.error(doc.path, mark.line, mark.col, violation.message, violation.rule)


def policy_violations(experiment: Experiment, defaults: Mapping[str, Any]) -> list[str]:
    """The policy refusals of a loaded experiment, for launch to check again (a pre-commit
    hook can be skipped, a branch can be pushed without CI): empty when it may run."""
    policy = policy_from_data(defaults)
    violations = [*override_violations(experiment.runtime, defaults, policy),
                  *tag_violations(experiment.tags)]
    if not policy.allow_trust_remote_code:
        violations += [*trust_violations(experiment.baseline), *trust_violations(experiment.sweep)]
    return [f"{violation.message} [{violation.rule}]" for violation in violations]
