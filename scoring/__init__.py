"""Scoring with a causal LM, shared by selection, evaluation and serving (paper 3.3, Algorithm 1 lines 12-14).

Modules by job: ``config`` (every scoring default, one declaration), ``rendering`` (prompts via LLaMA-Factory's
template code), ``kernel`` (cached-prefix candidate log-probs), ``scorer`` (``CandidateScorer``,
``score_dataset``, ``ScorerCache``), ``shards`` (Parquet parts, manifest, ``load_scores``), ``devices`` (rank ->
device), ``lengths`` and ``budget`` (token lengths, the token check), ``models`` (loading, GGUF conversion).
CLI: ``python -m scoring --help``.
"""
