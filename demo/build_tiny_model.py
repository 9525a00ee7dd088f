"""Build a tiny, random-init Llama, a locally trained tokenizer and an alpaca dataset.

    python demo/build_tiny_model.py OUTDIR     (with the trainer's python)

Writes OUTDIR/model (config, weights, tokenizer) and OUTDIR/data (dataset_info.json and
tiny_alpaca.json, dataset name ``tiny_alpaca``). Nothing comes from a hub: LLaMA-Factory
runs a real LoRA training on CPU in seconds against it (design.md "Measured facts").
The same OUTDIR content comes out on every run (fixed seeds, sorted keys).
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# tokenizers' BPE trainer is parallel; one thread keeps its merges order deterministic
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATASET = "tiny_alpaca"
ROWS = 100
VOCAB_SIZE = 2048
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
WORDS = ("alpha", "beta", "gamma", "delta", "support", "ticket", "refund", "order", "account",
         "password", "invoice", "shipping", "delivery", "login", "error", "update", "billing",
         "customer", "question", "answer", "please", "thanks", "help", "reset", "email", "phone",
         "address", "card", "payment", "plan", "upgrade", "cancel", "status")


def make_rows(rng: random.Random) -> list[dict[str, str]]:
    """Tiny tasks a 2-layer model can start to fit: arithmetic, reversal, repetition."""
    rows: list[dict[str, str]] = []
    for index in range(ROWS):
        kind = index % 3
        if kind == 0:
            a, b = rng.randint(0, 50), rng.randint(0, 50)
            rows.append({"instruction": f"What is {a} plus {b}?", "input": "",
                         "output": f"{a} plus {b} is {a + b}."})
        elif kind == 1:
            words = rng.sample(WORDS, 4)
            rows.append({"instruction": "Reverse the words.", "input": " ".join(words),
                         "output": " ".join(reversed(words))})
        else:
            word = rng.choice(WORDS)
            rows.append({"instruction": f"Say the word {word} twice.", "input": "",
                         "output": f"{word} {word}"})
    return rows


def write_data(outdir: Path, rows: list[dict[str, str]]) -> None:
    data = outdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / f"{DATASET}.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    info = {DATASET: {"file_name": f"{DATASET}.json"}}
    (data / "dataset_info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def build_tokenizer(rows: list[dict[str, str]]) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [" ".join(row.values()) for row in rows]
    corpus += [" ".join(WORDS), "Below is an instruction. Human: Assistant: ### Response:"]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=512, **SPECIAL)


def build_model(tokenizer: object, model_dir: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    vocab_size = len(tokenizer)  # type: ignore[arg-type]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.convert_tokens_to_ids(SPECIAL["bos_token"]),  # type: ignore[attr-defined]
        eos_token_id=tokenizer.convert_tokens_to_ids(SPECIAL["eos_token"]),  # type: ignore[attr-defined]
        pad_token_id=tokenizer.convert_tokens_to_ids(SPECIAL["pad_token"]),  # type: ignore[attr-defined]
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: build_tiny_model.py OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    rows = make_rows(random.Random(0))
    write_data(outdir, rows)
    tokenizer = build_tokenizer(rows)
    build_model(tokenizer, outdir / "model")
    print(f"tiny model: {outdir / 'model'}; dataset {DATASET!r} in {outdir / 'data'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
