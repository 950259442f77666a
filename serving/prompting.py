"""Prompts for new users, rendered exactly as prepare rendered training samples (paper 3.1.1, Appendix D).

A record is the alpaca dict LLaMA-Factory trained on: the run's system prompt, one of the three Appendix D
instruction templates filled with the last L events "(weekday, hour, place, behavior), ...", the next
event's "(weekday, hour, place)" and every candidate behavior in label_id order, and an empty input. Only
data_prep's public formatting functions are used, so a test_p2 sample rendered here equals its line.

Template choice at prediction time (``mode``): a fixed template id ("0", "1", "2"), or "mean": the mean of
each candidate's log-probability over the three templates, then the softmax (an ensemble over the
instruction wordings training sampled from; see `python -m serving template-eval`).
"""
from __future__ import annotations

from dataclasses import dataclass

from data_prep.reading.events import hour_of, weekday_of
from data_prep.rendering.prompts import (
    INSTRUCTION_TEMPLATES,
    format_candidates,
    format_event,
    format_next_context,
    render_instruction,
    rerender,
)
from data_prep.sampling.samples import WEEKDAYS

__all__ = ["DEFAULT_MODE", "MODES", "Event", "Query", "render_history", "render_record", "render_records", "rerender",
           "template_ids", "weekday_hour"]

MODES = ("mean", "0", "1", "2")
# Measured on protocol 2 (python -m serving template-eval, SmolLM2-135M zero-shot on the demo-profile data, 36
# samples): accuracy tied, NLL of the true behavior 3.35 for fixed template 2 vs 3.66 for the mean of the three
# (4.06 / 4.14 for fixed 0 / 1); a fixed template also costs a third of "mean". Re-measure on a trained run.
DEFAULT_MODE = "2"


@dataclass(frozen=True)
class Event:
    time: int        # local wall time as a UTC epoch (data_prep's timezone rule)
    place: str
    behavior: str


@dataclass
class Query:
    """One user's prediction request, validated: at most L history events, oldest first."""
    user_id: str | None
    history: list[Event]
    next_time: int
    next_place: str
    top_k: int
    mode: str = DEFAULT_MODE
    warning: str | None = None

    @property
    def template_ids(self) -> list[int]:
        return template_ids(self.mode)

    @property
    def context(self) -> dict:
        weekday, hour = weekday_hour(self.next_time)
        return {"weekday": WEEKDAYS[weekday], "hour": hour, "place": self.next_place}


def template_ids(mode: str) -> list[int]:
    if mode == "mean":
        return list(range(len(INSTRUCTION_TEMPLATES)))
    if mode in MODES:
        return [int(mode)]
    raise ValueError(f"instruction template must be one of {', '.join(MODES)}, got {mode!r}")


def weekday_hour(time: int) -> tuple[int, int]:
    return int(weekday_of(time)), int(hour_of(time))


def render_history(history: list[Event]) -> str:
    """"(weekday, hour, place, behavior), ..." oldest first, as data_prep.rendering.prompts.render_histories joins
    them."""
    return ", ".join(format_event(*weekday_hour(e.time), e.place, e.behavior) for e in history)


def render_record(query: Query, behaviors: list[str], system_prompt: str, template_id: int) -> dict:
    """The alpaca record of `query` with instruction template `template_id` (no output: it is predicted)."""
    instruction = render_instruction(template_id, render_history(query.history),
                                     format_next_context(*weekday_hour(query.next_time), query.next_place),
                                     format_candidates(behaviors))
    return {"system": system_prompt, "instruction": instruction, "input": ""}


def render_records(query: Query, behaviors: list[str], system_prompt: str) -> list[dict]:
    """One record per template the query's mode uses (three for "mean")."""
    return [render_record(query, behaviors, system_prompt, t) for t in query.template_ids]
