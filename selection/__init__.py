"""BehaviorLM B-tuning data selection (paper 3.3, Algorithm 1 lines 9-29).

Modules by job: ``config`` (every selection default, one declaration), ``difficulty`` (Eq. 2/3), ``select``
(difficulty-weighted k-means++), ``pairs`` (DPO pairs); the pool's scores come from the ``scoring`` package.
CLI: ``python -m selection --help``.
"""
