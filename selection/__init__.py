"""BehaviorLM B-tuning data selection (paper 3.3, Algorithm 1 lines 9-29).

pi_ref scoring (``scorer``), difficulty (``difficulty``, Eq. 2/3), difficulty-weighted k-means++
selection (``select``) and DPO pair construction (``pairs``).  CLI: ``python -m selection --help``.
"""
