"""Benchmark: `sweepctl validate` against check-jsonschema on 1,000 experiment folders.

    .venv/bin/python bench/validate.py [--folders 1000] [--repeat 3]

Generates variations of this repo's example experiments in a temporary directory,
then times (wall clock, whole processes, best of --repeat):
- `sweepctl validate <dir>`: schemas AND the semantic rules, every folder;
- check-jsonschema, schema-only with the same schemas: one invocation per file kind
  (`--schemafile schemas/<kind>.schema.json` on every file of that kind);
- `sweepctl validate experiments` on this repo (the pre-commit hook's cost; best of 5).
Goals (issue 2): sweepctl <= 0.5x check-jsonschema; the repo under 0.3 s.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KINDS = ("experiment", "baseline", "sweep", "checklist")
# baseline.yaml line prefix -> values to pick from: all valid, none of them swept by the
# examples (a swept key set to a sweep value would add warnings, not change the work)
VARIATIONS = {
    "cutoff_len: ": ["1024", "2048", "4096"],
    "warmup_ratio: ": ["0.03", "0.05", "0.1"],
    "gradient_accumulation_steps: ": ["4", "8", "16"],
    "seed: ": ["1", "7", "42"],
}


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"bench: {name} not found (run `make venv`)")
    return found


def sources() -> list[Path]:
    folders = sorted(p for p in (REPO_ROOT / "experiments").iterdir()
                     if (p / "experiment.yaml").is_file())
    if not folders:
        raise SystemExit("bench: no example experiments in experiments/")
    return folders


def vary(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for prefix, values in VARIATIONS.items():
            if line.startswith(prefix):
                comment = line[line.index("#"):] if "#" in line else ""
                lines[i] = f"{prefix}{rng.choice(values)}  {comment}".rstrip()
    return "\n".join(lines) + "\n"


def generate(root: Path, count: int, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    templates = sources()
    made = []
    for i in range(count):
        source = templates[i % len(templates)]
        name = f"{source.name[:30]}-{i:04d}"
        folder = root / name
        folder.mkdir(parents=True)
        for path in source.iterdir():
            text = path.read_text(encoding="utf-8")
            if path.name == "experiment.yaml":
                text = text.replace(f"name: {source.name}", f"name: {name}", 1)
            elif path.name == "baseline.yaml":
                text = vary(text, rng)
            (folder / path.name).write_text(text, encoding="utf-8")
        made.append(folder)
    return made


def timed(commands: list[list[str]], repeat: int, cwd: Path) -> tuple[float, list[int]]:
    """Best wall time over ``repeat`` runs of the commands in sequence, and their exit codes."""
    best, codes = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        codes = [subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode for cmd in commands]
        best = min(best, time.perf_counter() - start)
    return best, codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sweepctl, check = tool("sweepctl"), tool("check-jsonschema")

    with tempfile.TemporaryDirectory(prefix="sweepctl-bench-") as tmp:
        root = Path(tmp) / "experiments"
        folders = generate(root, args.folders)
        files = sum(1 for f in folders for _ in f.glob("*.yaml"))
        print(f"{len(folders)} experiment folders, {files} YAML files in {root}")

        ours, ours_codes = timed([[sweepctl, "validate", str(root)]], args.repeat, REPO_ROOT)
        theirs_cmds = [[check, "--schemafile", str(REPO_ROOT / "schemas" / f"{kind}.schema.json"),
                        *(str(f / f"{kind}.yaml") for f in folders)] for kind in KINDS]
        theirs, theirs_codes = timed(theirs_cmds, args.repeat, REPO_ROOT)

    repo, repo_codes = timed([[sweepctl, "validate", "experiments"]], 5, REPO_ROOT)
    ratio = ours / theirs
    print(f"sweepctl validate (schemas + rules):        {ours:7.3f} s  exit {ours_codes}")
    print(f"check-jsonschema (schemas only, {len(KINDS)} calls):  {theirs:7.3f} s  "
          f"exit {theirs_codes}")
    print(f"ratio sweepctl / check-jsonschema:          {ratio:7.3f}    (goal <= 0.5)")
    print(f"sweepctl validate experiments (this repo):  {repo:7.3f} s  exit {repo_codes}  "
          "(goal < 0.3 s, best of 5)")
    if any(ours_codes + theirs_codes + repo_codes):
        print("warning: a validator reported findings on the generated folders; "
              "the comparison assumes all are valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
