"""The engines that run the steps and must write the same files. In memory: :func:`data_prep.prepare.prepare`
(an EventTable through steps 3-5). Out of core: :mod:`~data_prep.engines.outofcore` (the driver), its
per-file and per-bucket steps (buckets) and one input file read batch by batch (stream); the steps run in this
process or as Ray tasks (executors)."""
