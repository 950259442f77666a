"""BehaviorLM evaluation: predictions, the paper's six metrics (Appendix B), baselines, reports.

Stages talk through files (see docs/data-preparation.md "Files between stages"); this package adds one contract:

``<out>/<dataset>.predictions.jsonl`` -- line i is test sample i of ``<dataset_dir>/<dataset>.jsonl``:
``index``, ``sample_id``, ``label``, ``label_id``, ``pred`` (a candidate name, or null when a generated
output is not a candidate; with ``logprobs``, their first maximum as stored: ``files.distribution_row``),
``pred_id`` (-1 when invalid), ``p_label`` (probability of the true label,
null when the method has none), ``top`` (up to 3 ``{"name", "p"}``, best first), ``valid``, and
``logprobs`` (log p(c|x) of every candidate in label_id order, when the method gives a distribution; files
without it are still read, their ranking and calibration metrics are then absent); generation adds
``output`` (the raw text), the Markov baseline adds ``source``.
``<out>/temperature.json`` (LLMs, SASRec): the temperature fitted on a seeded validation subset
(``evaluation.temperature``).
``<out>/<dataset>.predictions.info.json`` records how the file was made (method, model, adapter, ...).
"""
