"""Auxiliary general conversations for multi-task A-Tuning (paper 3.2, Algorithm 1 line 5, Table 5).

Input: a JSON (a list) or JSONL (one conversation a line) file in one of three formats, detected per file
from its first record: ShareGPT `{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}`,
OpenAI `{"messages": [{"role": "user"|"assistant"|"system", "content": ...}]}`, or Alpaca
`{"instruction": ..., "input": ..., "output": ..., "system": ...}` (one exchange: the instruction, then the
input after a blank line, answered by the output). Output is normalized to `from`/`value` with
`human`/`gpt`/`system`, the layout `dataset_info.json` registers for `behavior_aux`.

The mixture ratio (Algorithm 1 line 5): eps x |anchor samples| conversations are asked for. A small set gives
fewer; stats.json `aux` records eps asked and achieved and the distinct conversations used, and prepare warns.
`AUX_REPEAT=1` (`--aux-repeat 1`) draws with replacement up to the asked count instead, counted as such.

Length filter (documented choice): a conversation is "much longer than the behavior prompts" when its
total characters (all turns) exceed `max_length_ratio` (default 1.5) x the median character length of the
rendered behavior training samples (system + instruction + output). Dropped ones are counted as
`aux_too_long`; conversations LLaMA-Factory would reject (not human/gpt alternating, empty turns, no
answer) are dropped and counted as `aux_malformed`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.errors import PrepareError
from data_prep.sampling.samples import rng_for

DEFAULT_AUX_PATH = Path(__file__).resolve().parents[1] / "resources" / "aux_conversations.jsonl"

_ROLE_ALIASES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt", "chatgpt": "gpt",
                 "bard": "gpt", "bing": "gpt", "model": "gpt", "system": "system"}


def _read_items(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PrepareError(f"{path}: auxiliary conversation file not found") from None
    except UnicodeDecodeError as err:
        raise PrepareError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    stripped = text.lstrip()
    if not stripped:
        raise PrepareError(f"{path}: auxiliary conversation file is empty")
    if stripped[0] == "[":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise PrepareError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
        return items
    items = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise PrepareError(f"{path}: line {lineno}: invalid JSON ({err.msg})") from None
    return items


FORMATS = {"sharegpt": "conversations", "openai": "messages", "alpaca": "instruction"}


def detect_format(items: list, path) -> str:
    """The file's format, from its first record that is a JSON object; one line naming what is accepted."""
    first = next((item for item in items if isinstance(item, dict)), None)
    for name, key in FORMATS.items():
        if first is not None and key in first and (name != "alpaca" or "output" in first):
            return name
    keys = ", ".join(sorted(first)[:6]) if first else "no JSON object"
    raise PrepareError(f"{path}: not an auxiliary conversation file (first record: {keys}); accepted: ShareGPT "
                       f"'conversations', OpenAI 'messages', Alpaca 'instruction'/'input'/'output'")


def _alpaca_turns(item: dict) -> list[dict] | None:
    """An Alpaca record as ShareGPT turns (system, human: instruction + input, gpt: output)."""
    fields = [item.get(k, "") for k in ("system", "instruction", "input", "output")]
    if not all(isinstance(v, str) for v in fields):
        return None
    system, instruction, extra, output = fields
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    turns = [{"from": "system", "value": system}] if system.strip() else []
    return turns + [{"from": "human", "value": prompt}, {"from": "gpt", "value": output}]


def normalize_conversation(item, alpaca: bool = False) -> list[dict] | None:
    """ShareGPT turns as [{"from", "value"}], or None when LLaMA-Factory's sharegpt reader would reject them:
    an optional leading system turn, then human/gpt strictly alternating, starting with human and ending
    with gpt, every value a non-empty string. A record is read as ShareGPT or OpenAI, whichever it has, or
    as Alpaca when the file is (``alpaca``)."""
    if not isinstance(item, dict):
        return None
    if alpaca:
        item = {"conversations": _alpaca_turns(item)}
        if item["conversations"] is None:
            return None
    if isinstance(item.get("conversations"), list):
        raw, role_key, text_key = item["conversations"], "from", "value"
    elif isinstance(item.get("messages"), list):
        raw, role_key, text_key = item["messages"], "role", "content"
    else:
        return None
    turns = []
    for turn in raw:
        if not isinstance(turn, dict):
            return None
        role = _ROLE_ALIASES.get(str(turn.get(role_key, "")).lower())
        value = turn.get(text_key)
        if role is None or not isinstance(value, str) or not value.strip():
            return None
        turns.append({"from": role, "value": value})
    body = turns[1:] if turns and turns[0]["from"] == "system" else turns
    if len(body) < 2 or len(body) % 2:
        return None
    if any(t["from"] != ("human" if i % 2 == 0 else "gpt") for i, t in enumerate(body)):
        return None
    return turns


def conversation_chars(conversation: list[dict]) -> int:
    return sum(len(t["value"]) for t in conversation)


def aux_sample_size(eps: float, n_anchor: int) -> int:
    """|C'_ins| = eps * |D^a_ins| (Algorithm 1 line 5), rounded up so any eps > 0 gives at least one; eps is a
    checked PrepareConfig's."""
    return math.ceil(eps * n_anchor - 1e-9) if eps > 0 else 0


@dataclass
class AuxPool:
    """The well-formed conversations of one file (read once, before the long rendering steps)."""
    conversations: list[list[dict]]
    read: int
    path: str   # as recorded in stats.json
    format: str = "sharegpt"


def load_aux(path: str | Path | None = None) -> AuxPool:
    """Read and normalize a conversation file (None: the shipped default set), its format detected."""
    # The default is recorded by its package-relative name so stats.json does not depend on the checkout.
    shown = str(path) if path is not None else "data_prep/resources/aux_conversations.jsonl (shipped default)"
    items = _read_items(Path(path) if path is not None else DEFAULT_AUX_PATH)
    fmt = detect_format(items, shown)
    valid = [c for c in (normalize_conversation(item, fmt == "alpaca") for item in items) if c is not None]
    return AuxPool(valid, len(items), shown, fmt)


@dataclass
class AuxSelection:
    conversations: list[list[dict]]
    stats: dict = field(default_factory=dict)


def select_aux(pool: AuxPool | str | Path | None, eps: float, n_anchor: int, prompt_chars_median: float,
               seed: int, max_length_ratio: float = 1.5, repeat: bool = False) -> AuxSelection:
    """Filter by length and sample eps x |anchor samples| conversations (seeded), Algorithm 1 line 5.

    `pool`: a loaded AuxPool, or a path (None: the shipped default) read only when eps > 0. When fewer
    conversations survive the filter than requested, all are taken and the shortfall is recorded; with
    `repeat`, they are drawn with replacement up to the requested count instead (`repeated` counts the
    extra copies). stats: `eps_achieved` = written / |anchor samples|, `distinct` conversations used."""
    requested = aux_sample_size(eps, n_anchor)
    stats = {"eps": eps, "requested": requested, "max_length_ratio": max_length_ratio, "repeat": repeat}
    if requested == 0:
        stats.update(path=None, format=None, read=0, malformed=0, too_long=0, available=0, written=0, distinct=0,
                     repeated=0, shortfall=0, eps_achieved=0.0, max_chars=None)
        return AuxSelection([], stats)
    if not isinstance(pool, AuxPool):
        pool = load_aux(pool)
    max_chars = int(max_length_ratio * prompt_chars_median)
    kept = [c for c in pool.conversations if conversation_chars(c) <= max_chars]
    rng = rng_for(seed, "aux")
    if repeat and 0 < len(kept) < requested:
        chosen = np.concatenate([rng.permutation(len(kept)), rng.choice(len(kept), size=requested - len(kept))])
    else:
        take = min(requested, len(kept))
        chosen = rng.choice(len(kept), size=take, replace=False, shuffle=True) if take else []
    chosen = np.asarray(chosen, dtype=np.int64)
    distinct = int(np.unique(chosen).size)
    stats.update(path=pool.path, format=pool.format, read=pool.read, malformed=pool.read - len(pool.conversations),
                 too_long=len(pool.conversations) - len(kept), available=len(kept), written=int(chosen.size),
                 distinct=distinct, repeated=int(chosen.size) - distinct, shortfall=requested - int(chosen.size),
                 eps_achieved=round(chosen.size / n_anchor, 6) if n_anchor else 0.0, max_chars=max_chars)
    return AuxSelection([kept[i] for i in chosen.tolist()], stats)


def ratio_line(stats: dict) -> str:
    """One line on the auxiliary mixture: eps asked and achieved, and what to do about a shortfall."""
    if "eps_achieved" not in stats:   # a run prepared before these counts were kept
        return f"auxiliary conversations: eps {stats.get('eps', 0):g} asked, {stats.get('written', 0)} written"
    line = (f"auxiliary conversations: eps {stats['eps']:g} asked ({stats['requested']}), "
            f"{stats['eps_achieved']:.4g} achieved ({stats['written']} written, {stats['distinct']} distinct")
    line += f", {stats['repeated']} repeats)" if stats.get("repeated") else ")"
    if stats.get("shortfall"):
        line += (f"; {stats['shortfall']} short: give AUX= a larger conversation set (ShareGPT, OpenAI messages "
                 f"or Alpaca) or AUX_REPEAT=1 to repeat the {stats['available']} available")
    return line
