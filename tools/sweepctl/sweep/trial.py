"""A trial: the baseline config with one point of the sweep applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trial:
    index: int                   # 0 is always the baseline
    slug: str                    # short human label: "baseline", "r16-a32", "lr2e-4-s43"
    params: Mapping[str, Any]    # keys whose value differs from the baseline (incl. derived, seed)
    config: Mapping[str, Any]    # the resolved LLaMA-Factory config (baseline + params)
    trial_id: str                # short hash of config + image + dataset sha256
    name: str                    # Kubernetes name <experiment>-<slug>-<id>, RFC 1123, <= 63
    replicate: int = 0           # 0..replicates-1; the seed moves with it
    round_number: int = 0        # tpe: the launch round that proposed it (0: not proposed)

    @property
    def is_baseline(self) -> bool:
        return self.index == 0
