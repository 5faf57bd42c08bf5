"""Generated interaction logs in the generic ``world="log"`` format (never committed data).

Users belong to taste clusters, items to genres; a user consumes mostly items of their cluster's genres, with
Zipf popularity inside each genre, in time order. Options: explicit ratings, play-count weights, dwell times, repeats,
a ``users.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_log(folder: Path, *, n_items: int, n_users: int, per_user: int = 12, seed: int = 0, ratings: bool = False,
             weights: bool = False, dwell: bool = False, repeats: bool = False, users_csv: bool = False, n_genres: int = 8) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    genre = rng.integers(0, n_genres, n_items)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pop = pop[rng.permutation(n_items)]
    words = ["space", "love", "war", "crime", "music", "family", "horror", "sport", "magic", "robot", "sea", "city"]
    (folder / "items.csv").write_text("item_id,title,genres\n" + "".join(
        f"i{k},{words[genre[k] % len(words)].title()} story {k} {words[(k * 7) % len(words)]},g{genre[k]}\n"
        for k in range(n_items)))
    lines = ["user_id,item_id,timestamp" + (",rating" if ratings else "") + (",weight" if weights else "")
             + (",dwell" if dwell else "")]
    for u in range(n_users):
        liked = rng.choice(n_genres, 2, replace=False)
        p = pop * np.where(np.isin(genre, liked), 8.0, 1.0)
        p /= p.sum()
        n = int(rng.integers(per_user // 2, per_user * 3 // 2 + 1))
        chosen = rng.choice(n_items, size=min(n, n_items), replace=False, p=p)
        if repeats:
            chosen = rng.permutation(np.concatenate([chosen, rng.choice(chosen, size=max(1, len(chosen) // 4))]))
        t = 1_600_000_000 + u * 10 + np.sort(rng.integers(0, 10_000_000, len(chosen)))
        for i, ts in zip(chosen, t, strict=True):
            row = f"u{u},i{i},{ts}"
            if ratings:
                row += f",{int(np.clip(np.round(3 + 1.5 * np.isin(genre[i], liked) + rng.normal(0, 1)), 1, 5))}"
            if weights:
                row += f",{int(rng.integers(1, 50)) * (3 if np.isin(genre[i], liked) else 1)}"
            if dwell:
                row += f",{rng.gamma(2.0, 60.0) * (2 if np.isin(genre[i], liked) else 1):.1f}"
            lines.append(row)
    (folder / "interactions.csv").write_text("\n".join(lines) + "\n")
    if users_csv:
        (folder / "users.csv").write_text("user_id,age\n" + "".join(f"u{u},{20 + u % 40}\n" for u in range(n_users)))
    return folder
