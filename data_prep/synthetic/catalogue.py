"""The synthetic data set's catalogue: the 37 behaviors with their shares and parents, the places, and the
context preferences and routine constants the generator draws from (see :mod:`data_prep.synthetic`)."""
from __future__ import annotations

import numpy as np

# (name, global share, parent anchor or None). 16 anchors (share > 1%) hold 97.0%, 21 tails hold 3.0%.
# Head (> 5%): the first four; medium (1-5%): the other twelve anchors; tail (< 1%): the rest.
BEHAVIORS: list[tuple[str, float, str | None]] = [
    ("Watching videos", 0.4160, None),
    ("Social media", 0.1500, None),
    ("Music", 0.0700, None),
    ("Gaming", 0.0550, None),
    ("Public transportation", 0.0450, None),
    ("Online shopping", 0.0400, None),
    ("Reading", 0.0340, None),
    ("Navigation", 0.0280, None),
    ("Food delivery", 0.0240, None),
    ("Weather check", 0.0200, None),
    ("Mobile payment", 0.0180, None),
    ("Taking photos", 0.0160, None),
    ("Email", 0.0150, None),
    ("Exercise", 0.0140, None),
    ("Alarm clock", 0.0130, None),
    ("Online banking", 0.0120, None),
    ("Watching sports matches", 0.0045, "Watching videos"),
    ("Podcasts", 0.0037, "Music"),
    ("Taking a taxi", 0.0032, "Public transportation"),
    ("Video calls", 0.0029, "Social media"),
    ("Watching animation", 0.0025, "Watching videos"),
    ("Grocery delivery", 0.0021, "Food delivery"),
    ("Audiobooks", 0.0018, "Reading"),
    ("Setting reminders", 0.0015, "Alarm clock"),
    ("Photo editing", 0.0013, "Taking photos"),
    ("Stock trading", 0.0011, "Online banking"),
    ("Cycling", 0.0009, "Exercise"),
    ("Parking", 0.0008, "Navigation"),
    ("Online courses", 0.0007, "Reading"),
    ("Second-hand trading", 0.0006, "Online shopping"),
    ("Playing chess", 0.0005, "Gaming"),
    ("Bill payment", 0.0004, "Mobile payment"),
    ("Yoga", 0.0004, "Exercise"),
    ("Document editing", 0.0003, "Email"),
    ("Hotel booking", 0.0003, "Online shopping"),
    ("Karaoke", 0.0003, "Music"),
    ("Flight booking", 0.0002, "Public transportation"),
]

# A 12-behavior subset for the small demo profile: 8 anchors and 4 of their tails (shares renormalized).
DEMO_BEHAVIORS: list[str] = [
    "Watching videos", "Social media", "Music", "Gaming", "Public transportation", "Online shopping",
    "Reading", "Exercise", "Watching sports matches", "Podcasts", "Taking a taxi", "Cycling",
]

PLACES: list[str] = ["home", "workplace", "commute", "restaurant", "gym", "shopping mall", "outdoors"]
HOME, WORK, COMMUTE, RESTAURANT, GYM, MALL, OUTDOORS = range(len(PLACES))
N_HOURS = 24
N_CONTEXTS = 2 * N_HOURS * len(PLACES)  # (weekend?, hour, place)

# Affinity of each anchor for places (unlisted places: 0.5), hours (start, end, factor; hours in [start,
# end) multiplied) and weekends. Tails use their parent's row times an optional small twist below.
ANCHOR_AFFINITY: dict[str, tuple[dict[str, float], list[tuple[int, int, float]], float]] = {
    "Watching videos": ({"home": 3, "commute": 1.5, "restaurant": 1, "workplace": 0.3, "gym": 0.2},
                        [(19, 24, 2.0), (12, 14, 1.3), (0, 2, 1.5)], 1.2),
    "Social media": ({"home": 1, "commute": 1.3, "restaurant": 1.5, "workplace": 0.7, "outdoors": 1,
                      "shopping mall": 1}, [(8, 10, 1.3), (12, 14, 1.3)], 1.0),
    "Music": ({"commute": 5, "gym": 5, "home": 0.6, "workplace": 0.6, "outdoors": 1.5},
              [(7, 10, 1.5), (17, 20, 1.5)], 1.0),
    "Gaming": ({"home": 2, "commute": 1.2, "workplace": 0.15, "restaurant": 0.6},
               [(20, 24, 2.0), (0, 2, 2.0), (8, 18, 0.6)], 1.6),
    "Public transportation": ({"commute": 20, "outdoors": 1.5, "home": 0.1, "workplace": 0.1,
                               "restaurant": 0.2, "gym": 0.1, "shopping mall": 0.3},
                              [(7, 10, 2.0), (17, 20, 2.0)], 0.7),
    "Online shopping": ({"home": 2, "workplace": 0.8, "shopping mall": 3, "gym": 0.1},
                        [(20, 24, 2.0), (12, 14, 1.3)], 1.3),
    "Reading": ({"home": 1.5, "commute": 2.5, "workplace": 0.6, "gym": 0.1},
                [(6, 9, 1.5), (22, 24, 2.0)], 1.0),
    "Navigation": ({"outdoors": 6, "commute": 2.5, "shopping mall": 1, "restaurant": 0.5, "home": 0.1,
                    "workplace": 0.1}, [(9, 20, 1.5)], 1.5),
    "Food delivery": ({"workplace": 2, "home": 2, "restaurant": 0.1, "gym": 0.1},
                      [(11, 13, 4.0), (17, 20, 3.0)], 1.0),
    "Weather check": ({"home": 3, "commute": 1, "workplace": 0.3}, [(6, 9, 5.0)], 1.0),
    "Mobile payment": ({"restaurant": 8, "shopping mall": 8, "commute": 1, "outdoors": 1.5, "home": 0.1,
                        "workplace": 0.3}, [(11, 14, 1.5), (17, 21, 1.5)], 1.2),
    "Taking photos": ({"outdoors": 8, "restaurant": 2.5, "shopping mall": 1.5, "home": 0.2,
                       "workplace": 0.15}, [(10, 19, 1.5)], 2.0),
    "Email": ({"workplace": 8, "home": 0.4, "commute": 0.8, "gym": 0.05}, [(9, 18, 2.5), (0, 7, 0.2)], 0.25),
    "Exercise": ({"gym": 25, "outdoors": 4, "home": 0.4, "workplace": 0.05}, [(6, 9, 2.0), (18, 22, 2.0)],
                 1.3),
    "Alarm clock": ({"home": 5, "workplace": 0.2}, [(21, 24, 3.0), (5, 8, 4.0), (8, 21, 0.3)], 0.7),
    "Online banking": ({"home": 1.5, "workplace": 1.2}, [(9, 22, 1.5)], 0.9),
}

# A few tails differ slightly from their parent (still the parent's contexts, re-weighted).
TAIL_TWIST: dict[str, tuple[dict[str, float], list[tuple[int, int, float]], float]] = {
    "Watching sports matches": ({}, [(19, 24, 1.5)], 1.8),
    "Taking a taxi": ({"restaurant": 3, "outdoors": 2}, [(21, 24, 2.0), (0, 2, 2.0)], 1.2),
    "Flight booking": ({"home": 3}, [], 1.0),
    "Hotel booking": ({"home": 1.5}, [], 1.2),
    "Yoga": ({"home": 4}, [], 1.0),
    "Video calls": ({"home": 2}, [(19, 23, 1.5)], 1.3),
}

# First-order semantic neighbors between anchors (tail <-> parent edges are added automatically).
ANCHOR_NEIGHBORS = [
    ("Watching videos", "Social media"), ("Music", "Public transportation"), ("Navigation", "Taking photos"),
    ("Online shopping", "Mobile payment"), ("Weather check", "Alarm clock"), ("Food delivery", "Mobile payment"),
    ("Email", "Online banking"), ("Exercise", "Music"), ("Reading", "Weather check"), ("Gaming", "Social media"),
]

# Hourly activity (relative number of phone events per hour), weekdays and weekends.
ACTIVITY = {
    False: [0.25, 0.12, 0.06, 0.04, 0.04, 0.1, 0.4, 1.0, 1.4, 1.1, 1.0, 1.1, 1.6, 1.3, 1.0, 1.0, 1.0, 1.2,
            1.5, 1.6, 1.8, 1.9, 1.6, 0.8],
    True: [0.45, 0.25, 0.12, 0.06, 0.04, 0.05, 0.15, 0.4, 0.8, 1.1, 1.3, 1.4, 1.5, 1.3, 1.3, 1.3, 1.3, 1.3,
           1.4, 1.6, 1.8, 1.9, 1.7, 1.1],
}

RNG_BLOCK = 500          # users per random block: the unit of determinism across chunk sizes
TAIL_GAMMA_SHAPE = 0.3   # user weights of tails: Gamma(0.3)/0.3 (heavy-tailed, some users favor a tail)
ANCHOR_GAMMA_SHAPE = 1.5  # user weights of anchors: Gamma(1.5)/1.5 (milder)
METROPOLIS_RATE = 0.15   # share of events that move to a semantic neighbor of the previous behavior
MAX_DEGREE = 6           # proposal width of the Metropolis move (>= the largest neighbor count)


def context_index(weekend, hour, place):
    """Flat context code of (weekend flag, hour 0-23, place code)."""
    return (np.asarray(weekend, np.int64) * N_HOURS + hour) * len(PLACES) + place
