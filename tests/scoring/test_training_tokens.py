"""What is trained is what is scored: LLaMA-Factory's SFT processor trains on exactly the prompt and answer ids
the scorer and the evaluation score (the DPO processor's pairs: test_scoring_scorer.py), so a model that
learned its training answers ranks them first; a mismatch would make a tuned model look untrained."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import build_tiny_llama

from scoring.rendering import encode_pair, load_tokenizer_and_template

ROOT = Path(__file__).resolve().parents[2]
RECORD = {"system": "Predict the next behavior.", "input": "",
          "instruction": "History: (Monday, 8, home, Reading). Candidates: Reading, Watching sports matches. Next?"}
ANSWERS = ("Reading", "Watching sports matches")


def test_sft_trains_the_ids_the_scorer_scores(tmp_path):
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.extras.constants import IGNORE_INDEX
    from llamafactory.hparams import DataArguments

    model_dir = build_tiny_llama(tmp_path / "tiny", [RECORD["system"], RECORD["instruction"], *ANSWERS], seed=0,
                                 vocab_size=300)
    tokenizer, template = load_tokenizer_and_template(model_dir, "smollm2")
    args = DataArguments(template="smollm2", dataset_dir=str(ROOT), cutoff_len=4096)
    (attr,) = get_dataset_list(["behavior_anchor"], str(ROOT))  # A-tune's dataset, as the recipe names it
    processor = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=args)
    for answer in ANSWERS:
        example = get_dataset_converter("alpaca", attr, args)({**RECORD, "output": answer})
        out = processor.preprocess_dataset({k: [v] for k, v in example.items()})
        prompt_ids, answer_ids = encode_pair(template, tokenizer, RECORD, answer)
        assert out["input_ids"][0] == prompt_ids + answer_ids
        assert out["labels"][0] == [IGNORE_INDEX] * len(prompt_ids) + answer_ids  # the loss is on the answer only
