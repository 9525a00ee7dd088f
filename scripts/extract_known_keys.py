"""Extract every key a LLaMA-Factory train config accepts into tools/sweepctl/data/.

Run it with the TRAINER's python (the one with llamafactory installed), after
changing the pinned LLaMA-Factory or transformers, and commit the JSON:

    .venv-trainer/bin/python scripts/extract_known_keys.py

The keys are the fields of the argument dataclasses that LLaMA-Factory's
``HfArgumentParser`` reads (``llamafactory.hparams``) plus transformers'
``TrainingArguments``, so ``sweepctl validate`` knows every real key without
importing either library.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import typing
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "tools" / "sweepctl" / "data" / \
    "llamafactory_keys.json"

# Order matters only for `source` when two classes declare the same field: the first
# one LLaMA-Factory's parser lists wins (the same order as hparams/parser.py _TRAIN_ARGS).
LLAMAFACTORY_CLASSES = ("ModelArguments", "DataArguments", "TrainingArguments",
                        "FinetuningArguments", "GeneratingArguments", "EvaluationArguments")


def _block_cuda_only_packages() -> None:
    # A CPU-torch trainer env may still hold torchvision, whose wheel is linked against
    # CUDA torch: transformers sees it installed, imports it, and every model import then
    # fails (`operator torchvision::nms does not exist`). A None entry in sys.modules makes
    # importlib.util.find_spec report it missing, so transformers skips it. Nothing here
    # needs vision code; the venv is left untouched.
    sys.modules.setdefault("torchvision", None)  # type: ignore[arg-type]


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "str"  # YAML spells an enum by its value; the values go to `choices`
    if isinstance(tp, str):
        return tp
    if isinstance(tp, type) and getattr(tp, "__module__", "") == "builtins":
        return tp.__name__
    return str(tp).replace("typing.", "")


def _json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _json_value(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return _json_value(field.default)
    if field.default_factory is not dataclasses.MISSING:
        try:
            return _json_value(field.default_factory())
        except Exception:  # a factory that needs runtime state: the default is dynamic
            return None
    return None


def _enum_in(tp: Any) -> type[enum.Enum] | None:
    """The Enum a field takes (``SchedulerType | str`` counts), whose values are its choices."""
    for candidate in (tp, *typing.get_args(tp)):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate
    return None


def _declared_in(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return klass.__name__
    return cls.__name__


def _fields(cls: type, source: str, keys: dict[str, dict[str, Any]]) -> None:
    for field in dataclasses.fields(cls):
        if not field.init or field.name.startswith("_") or field.name in keys:
            continue
        info: dict[str, Any] = {
            "type": _type_name(field.type),
            "default": _default(field),
            "help": " ".join(str(field.metadata.get("help", "")).split()),
            "source": source,
            "declared_in": _declared_in(cls, field.name),
        }
        enum_type = _enum_in(field.type)
        if enum_type is not None:
            info["choices"] = [_json_value(member) for member in enum_type]
        elif "choices" in field.metadata:
            info["choices"] = _json_value(list(field.metadata["choices"]))
        keys[field.name] = info


def extract() -> dict[str, Any]:
    _block_cuda_only_packages()
    import llamafactory
    import llamafactory.hparams as hparams
    import transformers

    keys: dict[str, dict[str, Any]] = {}
    for name in LLAMAFACTORY_CLASSES:
        _fields(getattr(hparams, name), f"llamafactory.hparams.{name}", keys)
    _fields(transformers.Seq2SeqTrainingArguments, "transformers.Seq2SeqTrainingArguments", keys)
    _fields(transformers.TrainingArguments, "transformers.TrainingArguments", keys)
    return {
        "llamafactory_version": llamafactory.__version__,
        "transformers_version": transformers.__version__,
        "generated_by": "scripts/extract_known_keys.py",
        "keys": dict(sorted(keys.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    data = extract()
    args.output.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    print(f"{args.output}: {len(data['keys'])} keys (llamafactory {data['llamafactory_version']}, "
          f"transformers {data['transformers_version']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
