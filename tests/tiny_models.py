"""The tiny random Llama of the tests and benchmarks: a byte-level BPE tokenizer with ChatML special tokens
trained on a prepared dataset dir, and a 2-layer random LlamaForCausalLM (no downloads). Seconds on CPU.

    python tests/tiny_models.py --out runs/tiny/model --dataset-dir runs/tiny/data   # the recipes/tiny model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when run as a script

from cli import positive_int
from scoring.models import is_complete, save_model_dir

# ChatML, as used by SmolLM2-Instruct and LLaMA-Factory's `smollm2` template.
CHATML_JINJA = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_chatml_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on `texts`, with the ChatML special tokens of the `smollm2` template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    # Byte level: any text (Chinese included) encodes without unknown tokens.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=CHATML_JINJA,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )


def build_tiny_llama(
    out_dir: str | os.PathLike,
    texts: Iterable[str],
    seed: int = 0,
    vocab_size: int = 1024,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    max_positions: int = 4096,
    init_std: float = 0.02,
    overwrite: bool = False,
) -> Path:
    """A tiny random LlamaForCausalLM + a BPE tokenizer trained on `texts`, saved as an HF dir (no downloads).

    The tokenizer carries ChatML special tokens (`<|im_start|>`, `<|im_end|>`, eos = `<|im_end|>`, pad =
    `<|endoftext|>`) so LLaMA-Factory's `smollm2` template runs on it unchanged, adding no token.
    Skips the work when out_dir is already complete, unless overwrite.
    `init_std` is the weights' initializer range. The tied embeddings are the output layer, which LoRA leaves
    frozen as it leaves the final norm: at 0.02 on 64 dimensions no logit can exceed about 1.3, so no token of
    the 1,024 can reach 1 % probability and no answer can be learned (the SFT loss stalls near 5). The learning
    tests build a larger model at 0.05, whose logits can separate.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    if is_complete(out_dir) and not overwrite:
        return out_dir
    texts = list(texts)
    if not texts:
        raise ValueError("build_tiny_llama needs at least one text to train the tokenizer on")
    tokenizer = train_chatml_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=init_std,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return save_model_dir(model, tokenizer, out_dir)


def texts_from_dataset_dir(dataset_dir: str | os.PathLike, stems: Iterable[str] | None = None) -> list[str]:
    """Every system/instruction/input/output string (and aux conversation turn) of a prepared dataset dir."""
    dataset_dir = Path(dataset_dir)
    if stems is None:
        files = sorted(p for p in dataset_dir.glob("*.jsonl") if not p.name.endswith(".meta.jsonl"))
    else:
        files = [dataset_dir / f"{s}.jsonl" for s in stems]
    texts: list[str] = []
    for path in files:
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                for key in ("system", "instruction", "input", "output", "chosen", "rejected"):
                    if isinstance(row.get(key), str) and row[key]:
                        texts.append(row[key])
                for turn in row.get("conversations", []) or []:
                    texts.append(turn.get("value", ""))
    stats = dataset_dir / "stats.json"
    if stats.is_file():  # make sure every label is seen even if a split lacks it
        texts += [b["name"] for b in json.loads(stats.read_text(encoding="utf-8")).get("behaviors", [])]
    if not texts:
        raise FileNotFoundError(f"no prepared jsonl texts found in {str(dataset_dir)!r}")
    return texts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/tiny_models.py",
                                     description="tiny random Llama + BPE tokenizer trained on a prepared dataset dir")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dataset-dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=positive_int, default=1024)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        texts = texts_from_dataset_dir(args.dataset_dir)
        print(build_tiny_llama(args.out, texts, seed=args.seed, vocab_size=args.vocab_size, overwrite=args.overwrite))
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
