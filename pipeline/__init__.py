"""The run layout and the stage graph of BehaviorLM: prepare -> A-tune -> score -> select -> B-tune ->
export-final -> eval / report, plus full-ft, the ablations, the sweeps, seed repeats and the demo.

A stage runs again exactly when the content of one of its inputs or one of its parameters differs from what
its stamp recorded; otherwise it is skipped with one "up to date" line. `python -m pipeline --help`;
`make <target>` calls `python -m pipeline <target>` with the Make variables.
"""
