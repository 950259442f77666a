"""The embedded default data set: a seeded synthetic generator of smartphone-behavior logs.

It imitates the paper's Behavior dataset (section 2.2, Figure 1(a); section 4.1.1): 37 daily behaviors
with a long-tailed distribution, 16 "anchors" above 1% holding 97% of events (the largest 41.6%, the
paper's 43.6%) and 21 "tails" down to 0.02% (the paper's rarest is 0.0163%). Every tail has a semantically
close parent anchor (watching sports matches -> watching videos, taking a taxi -> public transportation)
and occurs in the same contexts as its parent, so a pretrained LM has something to generalize from.

How one user's log is generated (every step vectorized over a block of users):

1. Routine. Each user has a chronotype, an activity level, a job (80% work on site; the rest, and
   everybody on weekends or work-from-home days, follows a leisure routine), work hours, a commute time,
   a lunch-out and a gym habit. A day is a sequence of place segments (home, commute, workplace,
   restaurant, gym, shopping mall, outdoors); each event gets a time from an hourly activity profile and
   the place of the segment it falls in.
2. Context preference. Each behavior has an affinity for places, hours and weekends (tails inherit their
   parent's). p(b | context) is proportional to r_b * affinity(b, context), with r calibrated
   (iterative proportional fitting over the routine's context distribution and a fixed panel of user
   habits, step 3) so that the global marginal is the share of ``BEHAVIORS``.
3. Personal habits. A user's weights w_ub = Gamma(a_b)/a_b (mean 1; a normalized-Gamma, i.e.
   Dirichlet-style, perturbation of the global distribution): mild for anchors, heavy-tailed for tails,
   so most users rarely show a given tail and a few favor it.
4. Transitions. Each event is a fresh draw from p_u(b | context) proportional to p(b | context) * w_ub, a
   repeat of the previous behavior (a per-user rate), or a Metropolis move to a semantic neighbor (tail
   <-> parent, music <-> public transportation, ...), which keeps the global shares.

Output schema (the documented event schema of ``data_prep.reading.events``): ``user_id`` (``u000123``),
``timestamp`` (int64 epoch seconds of the local wall time encoded as UTC), ``place``, ``behavior``.
Timestamps are strictly increasing within a user, so no duplicate events are produced. The same
arguments and seed give identical events whatever ``chunk_users`` is: random numbers are drawn per fixed
block of users.

Modules: :mod:`~data_prep.synthetic.catalogue` (behaviors, shares, places, context preferences),
:mod:`~data_prep.synthetic.routine` (step 1), :mod:`~data_prep.synthetic.generator` (steps 2-4, the
EventTable), :mod:`~data_prep.synthetic.files` (writing a log file; ``python -m data_prep synthetic``),
:mod:`~data_prep.synthetic.oracle` (step 4's law for a prepared sample: the evaluation's oracle baseline).
"""
from __future__ import annotations

from data_prep.synthetic.catalogue import BEHAVIORS, DEMO_BEHAVIORS, N_CONTEXTS, N_HOURS, PLACES, context_index
from data_prep.synthetic.files import write_events
from data_prep.synthetic.generator import (
                                           DEFAULT_DAYS,
                                           DEFAULT_USERS,
                                           SyntheticError,
                                           behavior_names,
                                           calibrate_scales,
                                           generate_arrays,
                                           generate_events,
                                           iter_event_chunks,
                                           user_id_names,
)

__all__ = ["BEHAVIORS", "DEFAULT_DAYS", "DEFAULT_USERS", "DEMO_BEHAVIORS", "N_CONTEXTS", "N_HOURS", "PLACES",
           "SyntheticError", "behavior_names", "calibrate_scales", "context_index", "generate_arrays",
           "generate_events", "iter_event_chunks", "user_id_names", "write_events"]
