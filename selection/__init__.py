"""BehaviorLM B-tuning data selection (paper 3.3, Algorithm 1 lines 9-29).

Modules by job: ``config`` (every default, one declaration), ``rendering`` (prompts via LLaMA-Factory's
template code), ``kernel`` (cached-prefix candidate log-probs), ``scorer`` (``CandidateScorer``,
``score_dataset``), ``shards`` (Parquet parts, manifest, ``load_scores``), ``devices`` (rank -> device),
``difficulty`` (Eq. 2/3), ``select`` (difficulty-weighted k-means++), ``pairs`` (DPO pairs), ``models``
(loading, GGUF conversion, tiny model).  CLI: ``python -m selection --help``.
"""
