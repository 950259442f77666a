"""BehaviorLM data preparation: behavior event logs -> samples -> prompts -> LLaMA-Factory datasets.

The flow, one subpackage a step: ``reading`` (event logs -> one EventTable) -> ``encoding`` (the EventTable:
codes, sort, de-duplication, the order of an instant's events) -> ``sampling`` (windows, user splits, test
protocols, frequency groups, auxiliary conversations) -> ``rendering`` (prompts, a split's records) ->
``writing`` (atomic files, the run's dataset_dir). :mod:`data_prep.prepare` runs the steps in memory and writes
the run; ``engines`` runs them out of core, in this process or on Ray, to the same bytes. Beside them:
:mod:`data_prep.cli` (the command line), :mod:`data_prep.config` (the settings and their values' forms),
:mod:`data_prep.errors` (the one error type), :mod:`data_prep.prepared` (the one loader of a prepared split)
and ``synthetic`` (the generated log).
"""
