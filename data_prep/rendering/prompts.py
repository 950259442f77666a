"""Prompt text (paper 3.1.1 and Appendix D): system prompt, the three instruction templates, rendering.

Layout of one alpaca record:
- `system`: the role-playing instruction of 3.1.1 (item 2) followed by the task definition (item 1), so the
  instruction itself is exactly an Appendix D template and the system prompt is one constant prefix.
- `instruction`: one of the three Appendix D templates, drawn at random (seeded) per sample, ending with its
  answer stem ("The answer is" / "The intent you recommend is" / "The recommendation is").
- `output`: the label's behavior name (the assistant response).

Appendix D wording is kept; only its obvious typos are fixed: Instruct3's unclosed bracket
`[next-intent-info, respectively`, the missing spaces in `].Day` and `].The`, and the typographic
apostrophe of "user's" is written as ASCII.
"""
from __future__ import annotations

import re

import numpy as np

from data_prep.sampling.samples import WEEKDAYS

ROLE_PLAYING = ("You are a smart user's mobile phone assistant, which can infer the user's mobile phone "
                "behavior preferences based on the historical behavior history of the user.")
TASK_DEFINITION = "Predict the next behavior the user will do from the candidate set."
SYSTEM_PROMPT = f"{ROLE_PLAYING} {TASK_DEFINITION}"

# {history}: "(weekday, hour, place, behavior), ..." oldest first; {next_context}: "(weekday, hour, place)";
# {candidates}: every behavior, by name, comma separated. [Output] is the assistant response.
INSTRUCTION_TEMPLATES = (
    ("This user has done behaviors {history} in the previous. Day of the week, the hour, and the place of the "
     "next behavior are {next_context}, respectively. Choose the answer from the following behavior candidate "
     "set: {candidates}. The answer is"),
    ("The user's historical behavior information sequence is: {history}. Day of the week, the hour, and the "
     "place of the next behavior are {next_context}, respectively. Given the following behavior candidate set: "
     "{candidates}, recommend one intention for this user to do next. The intent you recommend is"),
    ("The behavior history of this user is: {history}. Day of the week, the hour, and the place of the next "
     "behavior are {next_context}, respectively. Recommend a next intention for this user to do from the "
     "following behavior candidate set: {candidates}. The recommendation is"),
)


def format_event(weekday: int, hour: int, place: str, behavior: str) -> str:
    """One history element of 3.1.1 item 3: (weekday, hour, place, behavior)."""
    return f"({WEEKDAYS[weekday]}, {hour}, {place}, {behavior})"


def format_next_context(weekday: int, hour: int, place: str) -> str:
    """The next behavior's revealed context: (weekday, hour, place)."""
    return f"({WEEKDAYS[weekday]}, {hour}, {place})"


def format_candidates(behaviors: list[str]) -> str:
    """The candidate set of 3.1.1 item 4: every behavior in the fixed label_id order (by name)."""
    return ", ".join(behaviors)


def render_instruction(template_id: int, history: str, next_context: str, candidates: str) -> str:
    return INSTRUCTION_TEMPLATES[template_id].format(history=history, next_context=next_context, candidates=candidates)


def _template_pattern(template_id: int) -> re.Pattern:
    literal = re.split(r"\{(history|next_context|candidates)\}", INSTRUCTION_TEMPLATES[template_id])
    parts = [re.escape(p) if i % 2 == 0 else f"(?P<{p}>.*)" for i, p in enumerate(literal)]
    return re.compile("".join(parts), re.DOTALL)


def split_instruction(instruction: str, template_id: int) -> tuple[str, str, str]:
    """(history, next_context, candidates) of a prepared instruction: lets a prepared sample be re-rendered
    with the other templates (template-eval, the temperature of each prompt mode). The literal parts of a
    template never occur inside a field."""
    match = _template_pattern(template_id).fullmatch(instruction)
    if match is None:
        raise ValueError(f"instruction does not follow template {template_id}")
    return match["history"], match["next_context"], match["candidates"]


def rerender(record: dict, template_id: int, new_template_id: int) -> dict:
    """A prepared record with its instruction re-rendered in template `new_template_id`."""
    history, next_context, candidates = split_instruction(record["instruction"], template_id)
    return {**record, "instruction": render_instruction(new_template_id, history, next_context, candidates)}


def draw_template_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """One of the three templates per sample, uniformly at random (paper 4.1.4: sampled in training and test)."""
    return rng.integers(0, len(INSTRUCTION_TEMPLATES), size=n, dtype=np.int8)


def _history_parts(weekday, hour, place, behavior, places, behaviors, escape=None):
    """Each distinct (weekday, hour, place, behavior) combination formatted once (optionally escaped), and
    for every history element the index of its text: rendering hundreds of thousands of prompts stays cheap."""
    n_places, n_behaviors = len(places), len(behaviors)
    combo = ((weekday.astype(np.int64) * 24 + hour) * n_places + place) * n_behaviors + behavior
    uniq, inverse = np.unique(combo, return_inverse=True)
    b = uniq % n_behaviors
    rest = uniq // n_behaviors
    p = rest % n_places
    rest //= n_places
    text = [format_event(wd, h, places[pp], behaviors[bb])
            for wd, h, pp, bb in zip((rest // 24).tolist(), (rest % 24).tolist(), p.tolist(), b.tolist())]
    shown = [escape(t) for t in text] if escape else text
    return text, shown, inverse.reshape(combo.shape)


def render_histories(weekday: np.ndarray, hour: np.ndarray, place: np.ndarray, behavior: np.ndarray,
                     places: list[str], behaviors: list[str]) -> list[str]:
    """History strings "(weekday, hour, place, behavior), ..." for (n, L) arrays of event fields, oldest first."""
    _, text, inverse = _history_parts(weekday, hour, place, behavior, places, behaviors)
    return [", ".join([text[j] for j in row]) for row in inverse.tolist()]


def render_histories_escaped(weekday, hour, place, behavior, places, behaviors, escape):
    """As render_histories, but each string already passed through `escape` (JSON string escaping, which
    commutes with concatenation), plus the character length of each unescaped history."""
    plain, text, inverse = _history_parts(weekday, hour, place, behavior, places, behaviors, escape)
    lengths = np.array([len(t) for t in plain], dtype=np.int64)[inverse].sum(axis=1) + 2 * (inverse.shape[1] - 1)
    return [", ".join([text[j] for j in row]) for row in inverse.tolist()], lengths
