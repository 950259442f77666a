"""SASRec beside the LLMs (paper Table 3 and Fig. 4): a compact PyTorch SASRec trained on the same
prepared windows as the LLMs, with each event's weekday, hour and place and the next event's context.

``python -m sasrec train`` writes ``<out>/{test_p1,test_p2}.predictions.jsonl`` in the evaluation's format,
so ``python -m evaluation report`` shows it as its own row; ``python -m sasrec sample-efficiency`` trains on
seeded subsets of several sizes and plots Overall / Tail accuracy against training samples.
Hyperparameters: the fields of :class:`sasrec.model.ModelConfig` and :class:`sasrec.train.TrainConfig`, each
with its default and its source; ``recipes/sasrec/gpt2_small.yaml`` is Fig. 4's GPU profile.
"""
