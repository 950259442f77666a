"""The settings of `python -m evaluation predict`, each default declared once, here (the scorer's batch and
part sizes are scoring's): the command line (:func:`cli.add_config`), :mod:`evaluation.predict`'s keyword
defaults, the pipeline's EVAL_BATCH and CALIB_SAMPLES defaults and docs/evaluation.md take them from these
fields."""
from __future__ import annotations

from dataclasses import dataclass, field

from cli import check_positive, positive_int
from data_prep.config import PrepareConfig
from scoring.config import ScoreConfig, check_cutoff_len, cutoff_len_field


@dataclass(frozen=True)
class PredictConfig:
    """How the test splits are scored and the temperature fitted."""
    batch_size: int = field(default=ScoreConfig.batch_size, metadata={"type": positive_int, "make": "EVAL_BATCH",
                                                                      "help": "prompts per forward"})
    shard_size: int = field(default=ScoreConfig.shard_size, metadata={"type": positive_int,
                                                                      "help": "samples per resumable part file"})
    max_new_tokens: int = field(default=16, metadata={"type": positive_int,
                                                      "help": "with --generate: tokens generated at most"})
    cutoff_len: int | None = cutoff_len_field()
    calib_samples: int = field(default=64, metadata={
        "make": "CALIB_SAMPLES",
        "help": "validation samples (a seeded subset, scored in each instruction template) to fit a temperature per "
                "prompt mode on, written as <out>/temperature.json; 0: none (not with --generate)"})
    calib_seed: int = field(default=PrepareConfig.seed, metadata={"make": "SEED", "help": "seed of the validation "
                                                                                      "subset"})

    def __post_init__(self):
        check_positive(self.batch_size, "batch size")
        check_positive(self.shard_size, "shard size")
        check_positive(self.max_new_tokens, "max new tokens")
        check_cutoff_len(self.cutoff_len)
        if self.calib_samples < 0:
            raise ValueError(f"calib samples must be >= 0 (0: no temperature), got {self.calib_samples}")
