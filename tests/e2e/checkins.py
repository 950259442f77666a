"""A check-in log shaped like real public check-in data, generated for the tests.

About 200 venue categories with multi-token names ("Gym / Fitness Center", "Korean Noodle House", "Café"),
a few hundred users with 5 to 200 check-ins each (log-normal, so some are too short for a history), a long
tail (Zipf popularity: a few categories hold most check-ins, a hundred are seen a handful of times), and
check-in-like timestamps: irregular gaps of days, several check-ins on some days, hours peaking at the
morning commute, lunch and evening, written as ISO 8601 with a +09:00 offset (read with --tz Asia/Tokyo).
"""
from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

COMMON = ["Train Station", "Subway", "Office", "Home (private)", "Convenience Store", "Coffee Shop", "Bar",
          "Ramen / Noodle House", "Japanese Restaurant", "Gym / Fitness Center", "Electronics Store",
          "University", "Park", "Café", "Bus Stop", "Shopping Mall", "Airport", "Movie Theater", "Hotel",
          "Bookstore", "Clothing Store", "Hospital", "Church", "Museum", "Karaoke Box", "Arcade", "Pharmacy",
          "Post Office", "Bank", "Beach", "Stadium", "Zoo", "Library", "Spa / Onsen", "Temple", "Shrine",
          "Laundromat", "Hair Salon", "Pet Store", "Toy / Game Store"]
CUISINES = ["Chinese", "Korean", "Thai", "Vietnamese", "Indian", "Italian", "French", "Mexican", "Spanish",
            "Greek", "Turkish", "Middle Eastern", "American", "Brazilian", "Ethiopian", "Caribbean", "German",
            "Russian", "Peruvian", "Hawaiian"]
VENUES = ["Restaurant", "Food Truck", "Bakery", "Grocery Store", "Noodle House", "Dessert Shop", "Tea Room",
          "Deli / Bodega"]
WARDS = ["Shibuya", "Shinjuku", "Minato", "Chiyoda", "Chuo", "Taito", "Sumida", "Koto", "Shinagawa", "Meguro",
         "Ota", "Setagaya", "Nakano", "Suginami", "Toshima", "Kita", "Arakawa", "Itabashi", "Nerima", "Adachi",
         "Katsushika", "Edogawa", "Bunkyo", "Kawasaki", "Yokohama"]
# check-ins per hour of day (local): night lull, morning commute, lunch, evening peak
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 4, 9, 12, 8, 6, 8, 14, 10, 7, 7, 8, 11, 14, 14, 12, 9, 6, 4], float)
TOKYO = timezone(timedelta(hours=9))


def categories(n: int = 200) -> list[str]:
    """n category names, the common ones first (they get the most check-ins)."""
    names = COMMON + [f"{c} {v}" for v in VENUES for c in CUISINES]
    if n > len(names):
        raise ValueError(f"at most {len(names)} categories, asked for {n}")
    return names[:n]


def zipf_weights(n: int, s: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def user_checkins(rng: np.random.Generator, n_events: int, names: list[str], popularity: np.ndarray):
    """(times, places, behaviors) of one user: a home ward, five favorite categories, Zipf otherwise."""
    favorites = rng.choice(len(names), size=5, replace=False, p=popularity)
    home = rng.integers(len(WARDS))
    days = np.cumsum(rng.geometric(0.45, size=n_events) - 1)   # 0: another check-in on the same day
    hours = rng.choice(24, size=n_events, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    seconds = rng.integers(0, 3600, size=n_events)
    start = datetime(2012, 4, 3, tzinfo=TOKYO) + timedelta(days=int(rng.integers(0, 200)))
    order = np.lexsort((seconds, hours, days))
    times = [start + timedelta(days=int(days[i]), hours=int(hours[i]), seconds=int(seconds[i])) for i in order]
    favorite = rng.random(n_events) < 0.5
    behaviors = np.where(favorite, rng.choice(favorites, size=n_events),
                         rng.choice(len(names), size=n_events, p=popularity))
    places = np.where(rng.random(n_events) < 0.6, home, rng.integers(len(WARDS), size=n_events))
    return times, [WARDS[p] for p in places], [names[b] for b in behaviors]


def write_checkins(path: str | Path, n_users: int = 300, n_categories: int = 200, seed: int = 0) -> Path:
    """Write the log as CSV (user_id, timestamp, place, behavior); returns the path."""
    rng = np.random.default_rng(seed)
    names = categories(n_categories)
    popularity = zipf_weights(len(names))
    counts = np.clip(rng.lognormal(np.log(40), 0.6, size=n_users).astype(int), 5, 200)
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "timestamp", "place", "behavior"])
        for user, n_events in enumerate(counts.tolist()):
            for time, place, behavior in zip(*user_checkins(rng, n_events, names, popularity)):
                writer.writerow([f"u{user:04d}", time.isoformat(), place, behavior])
    return path
