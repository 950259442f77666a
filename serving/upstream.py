"""Every name `serving` takes from the other packages, in one place.

data_prep and scoring are being reorganized; only their public names are used, and only here, so a moved
function is re-pointed in this one file.
"""
from __future__ import annotations

from data_prep.config import parse_flag, parse_time_format
from data_prep.encode import string_dictionary
from data_prep.errors import MAX_EXAMPLES
from data_prep.events import (
    UNKNOWN_PLACE,
    PrepareError,
    hour_of,
    json_value,
    load_events,
    load_label_map,
    parse_columns_option,
    parse_times,
    weekday_of,
)
from data_prep.labels import number_text
from data_prep.options import resolve_columns
from data_prep.outputs import atomic_open, write_json, write_jsonl
from data_prep.prompts import (
    INSTRUCTION_TEMPLATES,
    format_candidates,
    format_event,
    format_next_context,
    render_instruction,
    rerender,
)
from data_prep.readers import compression_of, detect_format, missing_columns_error
from data_prep.samples import WEEKDAYS
from data_prep.sources import list_inputs, load_input, local_copy, merge_tables
from data_prep.ties import event_order, input_sequence
from data_prep.time_formats import CompactTally, compact_format, unparsed_line
from data_prep.time_rules import future_cutoff, numbers_of, refuse_bad_share
from scoring.config import ScoreConfig, check_cutoff_len, cutoff_len_field

__all__ = [
    "CompactTally",
    "INSTRUCTION_TEMPLATES",
    "MAX_EXAMPLES",
    "UNKNOWN_PLACE",
    "WEEKDAYS",
    "PrepareError",
    "ScoreConfig",
    "all_metrics",
    "atomic_open",
    "check_cutoff_len",
    "compact_format",
    "compression_of",
    "cutoff_len_field",
    "detect_format",
    "event_order",
    "format_candidates",
    "format_event",
    "format_next_context",
    "future_cutoff",
    "hour_of",
    "input_sequence",
    "json_value",
    "list_inputs",
    "load_events",
    "load_input",
    "load_label_map",
    "local_copy",
    "merge_tables",
    "missing_columns_error",
    "new_scorer",
    "number_text",
    "numbers_of",
    "parse_columns_option",
    "parse_flag",
    "parse_time_format",
    "parse_times",
    "refuse_bad_share",
    "render_instruction",
    "rerender",
    "resolve_columns",
    "string_dictionary",
    "unparsed_line",
    "weekday_of",
    "write_json",
    "write_jsonl",
]


def new_scorer(model_path, template: str, adapter_path=None, batch_size: int = ScoreConfig.batch_size, device=None,
               dtype=None):
    """scoring's cached-prefix candidate scorer (imported lazily: torch and transformers are slow to import)."""
    from scoring.scorer import CandidateScorer

    return CandidateScorer(model_path, template, adapter_path, batch_size, device, dtype)


def all_metrics(label_ids, pred_ids, stats: dict) -> dict:
    """evaluation's Appendix B metrics of one set of predictions (Overall / Head / Medium / Tail, ...)."""
    from evaluation.metrics import all_metrics as metrics

    return metrics(label_ids, pred_ids, stats)
