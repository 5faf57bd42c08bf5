"""The synthetic world: a seeded catalogue and user population with natural-language texts (the offline default).

Pipeline (all randomness from one ``np.random.default_rng(config.seed)``, consumed in a fixed order):

1. :func:`make_synthetic_texts` (pure, no encoder): items (genre, title, year, description, popularity prior,
   hidden quality and appeal, clickbait flag, new flag) and users (demographics, true liked genres with
   weights, disliked genres, history, cold/test flags, profile text).
2. :func:`make_synthetic_world`: encodes item and profile texts through the embedding cache, then builds the
   hidden latent space:

   - ``Catalog.latent`` ``x_i``: item LM embeddings projected to ``latent_dim`` dims by a PCA fitted on the item
     embeddings (numpy SVD; each component's sign is fixed so its largest-magnitude loading is positive), then
     L2-normalised.
   - ``Population.latent`` ``z_u = normalise(profile_weight * normalise(PCA(profile embedding))
     + genre_weight * normalise(sum_liked w_g c_g - dislike_weight * mean_disliked c_g)
     + interest_noise * eps_u)`` with ``c_g`` the normalised latent centroid of genre ``g`` and
     ``eps_u ~ N(0, I/k)``. The LM profile embedding is an imperfect signal of the true interest (the noise
     and the genre term are hidden), which is what makes learning from feedback worth it. Stated dislikes
     enter through the genre term because sentence embeddings do not understand negation ("Dislikes horror"
     embeds close to horror).

3. Optional second modality (``image_dim > 0``; drawn last from the same Generator, so every other array is
   the one the world has without it): ``Catalog.modalities["image"]`` ``v_i = c_i R`` with ``R`` a random
   orthonormal basis and coordinates ``c_i0 = rho_q q~_i + sqrt(1 - rho_q^2) eps_i0``, ``c_i1 = rho_a a~_i +
   sqrt(1 - rho_a^2) eps_i1`` and ``c_ij = eps_ij`` beyond (``q~``/``a~``: the standardised hidden quality and
   appeal, ``eps ~ N(0, 1)``, ``rho_q = image_quality_corr``, ``rho_a = image_appeal_corr``). One direction has
   correlation ``rho_q`` with the quality no text shows (as a cover image tells a well-made film from a cheap
   one), another ``rho_a`` with the click appeal; the rest is noise.

The env's hidden click logit is ``affinity_scale*<z_u, x_i> + popularity_weight*log(M*pop_i)
+ appeal_weight*appeal_i + bias + bias_u`` (see :class:`recgym.envs.world.PreferenceParams`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import Field, model_validator

from recgym.common.config import ConfigError, StrictModel
from recgym.encoders.text import item_text, profile_text
from recgym.envs.world import Catalog, Population, PreferenceParams, World
from recgym.envs.worlds._vocab import (
    COUNTRIES,
    FIRST_NAMES,
    GENDER_PROBS,
    GENDERS,
    GENRES,
    HYPE_SENTENCES,
    OCCUPATIONS,
    SURNAMES,
    TOWNS,
    GenreVocab,
)

if TYPE_CHECKING:
    from recgym.encoders.base import TextEncoder

__all__ = [
    "SyntheticWorldConfig", "ItemRecord", "UserRecord", "make_synthetic_texts", "make_synthetic_world",
    "clickbait_mask", "GENRE_VOCABULARY",
]

GENRE_VOCABULARY: tuple[str, ...] = tuple(g.name for g in GENRES)
"""Every genre the generator knows; a world uses the first ``n_genres``."""

_NUMS = (2, 3, 5, 7, 9, 10, 12, 15, 20, 21, 30, 80, 99)
_NEW_YEAR = max(g.years[1] for g in GENRES) + 1  # new items are released during the run


class SyntheticWorldConfig(StrictModel):
    """Parameters of the synthetic world. Unknown keys are rejected with a suggestion; ranges are checked.

    ``n_items`` counts every item of the catalogue, new ones included; ``round(new_item_fraction * n_items)``
    of them (the last indices, in injection order) are held back for injection during a run.
    """

    config_path: ClassVar[str] = "world"

    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the single numpy Generator.")
    # --- catalogue
    n_items: int = Field(2000, ge=2, le=1_000_000, description="Items in the catalogue (new ones included), >= n_genres.")
    new_item_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of items with is_new=True (injected later).")
    n_genres: int = Field(20, ge=1, le=len(GENRES), description=f"Genres used (first n of {len(GENRES)}).")
    genre_concentration: float = Field(8.0, gt=0.0, le=1e6, description="Dirichlet concentration of genre sizes (large: equal).")
    secondary_genre_prob: float = Field(0.3, ge=0.0, le=1.0, description="Probability an item lists a second genre.")
    zipf_exponent: float = Field(1.1, ge=0.0, le=4.0, description="Zipf exponent of the popularity prior over a random item order.")
    quality_alpha: float = Field(4.0, gt=0.0, le=100.0, description="Beta(alpha, beta) hidden quality of ordinary items.")
    quality_beta: float = Field(2.5, gt=0.0, le=100.0, description="See quality_alpha.")
    appeal_std: float = Field(0.5, ge=0.0, le=5.0, description="Std of the appeal (click logit) of ordinary items, mean 0.")
    clickbait_fraction: float = Field(0.1, ge=0.0, le=1.0, description="Share of clickbait items: high appeal, low quality.")
    clickbait_appeal: float = Field(1.5, ge=0.0, le=10.0, description="Mean appeal of clickbait items (std 0.3).")
    clickbait_hype_prob: float = Field(0.5, ge=0.0, le=1.0, description="Probability a clickbait description gets a hype line.")
    # --- users
    n_users: int = Field(1000, ge=1, le=10_000_000, description="Users in the population.")
    cold_user_fraction: float = Field(0.2, ge=0.0, le=1.0, description="Share of users with no history (profile only).")
    test_user_fraction: float = Field(0.2, ge=0.0, le=1.0, description="Share of held-out users, stratified warm/cold.")
    history_length: int = Field(10, ge=1, le=1000, description="H: history columns (warm users: min_history_length..H items).")
    min_history_length: int = Field(5, ge=1, le=1000, description="Fewest history items of a warm user.")
    profile_history_titles: int = Field(3, ge=0, le=1000, description="Most recent history titles written in a profile.")
    likes_min: int = Field(2, ge=1, le=len(GENRES), description="Fewest liked genres per user.")
    likes_max: int = Field(4, ge=1, le=len(GENRES), description="Most liked genres per user.")
    dislikes_min: int = Field(1, ge=0, le=len(GENRES), description="Fewest disliked genres per user.")
    dislikes_max: int = Field(2, ge=0, le=len(GENRES), description="Most disliked genres per user.")
    like_concentration: float = Field(2.0, gt=0.0, le=1e6, description="Dirichlet concentration of like weights.")
    demographic_strength: float = Field(0.7, ge=0.0, le=10.0, description="How strongly age tilts genre tastes.")
    history_off_taste: float = Field(0.1, ge=0.0, le=1.0, description="Share of history drawn from neutral genres.")
    history_popularity_power: float = Field(0.5, ge=0.0, le=4.0, description="History items drawn prop. to pop**power within genre.")
    # --- hidden latent space and click model
    latent_dim: int = Field(32, ge=1, le=4096, description="k: hidden latent dim (<= encoder dim and item count).")
    profile_weight: float = Field(0.5, ge=0.0, le=100.0, description="a: weight of the PCA'd LM profile in z_u.")
    genre_weight: float = Field(1.0, ge=0.0, le=100.0, description="b: weight of the true liked/disliked genre term in z_u.")
    dislike_weight: float = Field(0.5, ge=0.0, le=100.0, description="Weight of disliked-genre centroids in the genre term.")
    interest_noise: float = Field(0.5, ge=0.0, le=100.0, description="Scale of individual Gaussian noise in z_u.")
    user_bias_std: float = Field(0.3, ge=0.0, le=10.0, description="Std of the per-user click-logit offset bias_u.")
    affinity_scale: float = Field(5.0, ge=0.0, le=100.0, description="PreferenceParams.affinity_scale.")
    popularity_weight: float = Field(0.3, ge=-10.0, le=10.0, description="PreferenceParams.popularity_weight.")
    appeal_weight: float = Field(1.0, ge=-10.0, le=10.0, description="PreferenceParams.appeal_weight.")
    click_bias: float = Field(-3.5, ge=-50.0, le=50.0, description="PreferenceParams.bias.")
    # --- optional second modality (off by default: the default world is unchanged)
    image_dim: int = Field(0, ge=0, le=4096, description="Dim of a per-item 'image' vector (0: no second modality).")
    image_quality_corr: float = Field(0.8, ge=0.0, le=1.0, description="Correlation of the image's quality direction with hidden quality.")
    image_appeal_corr: float = Field(0.0, ge=0.0, le=1.0, description="Correlation of the image's appeal direction with hidden appeal (needs image_dim >= 2).")

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticWorldConfig:
        def need(cond: bool, field: str, expected: str, received: object) -> None:
            if not cond:
                raise ConfigError(f"world.{field}: expected {expected}, received {received}")

        need(self.n_items >= self.n_genres, "n_items", f">= n_genres ({self.n_genres})", self.n_items)
        need(self.n_new_items < self.n_items, "new_item_fraction",
             f"fewer new items than n_items ({self.n_items})", f"{self.new_item_fraction} -> {self.n_new_items} new")
        need(self.likes_min <= self.likes_max, "likes_min", f"<= likes_max ({self.likes_max})", self.likes_min)
        need(self.dislikes_min <= self.dislikes_max, "dislikes_min", f"<= dislikes_max ({self.dislikes_max})",
             self.dislikes_min)
        need(self.likes_max + self.dislikes_max <= self.n_genres, "likes_max + dislikes_max",
             f"<= n_genres ({self.n_genres})", self.likes_max + self.dislikes_max)
        need(self.min_history_length <= self.history_length, "min_history_length",
             f"<= history_length ({self.history_length})", self.min_history_length)
        weights = self.profile_weight + self.genre_weight + self.interest_noise
        need(weights > 0, "profile_weight + genre_weight + interest_noise", "> 0 (user latents need a source)", weights)
        need(self.latent_dim <= self.n_items, "latent_dim", f"<= n_items ({self.n_items})", self.latent_dim)
        need(self.image_appeal_corr == 0 or self.image_dim >= 2, "image_dim",
             ">= 2 when image_appeal_corr > 0 (one direction each for quality and appeal)", self.image_dim)
        return self

    @property
    def n_new_items(self) -> int:
        """Number of new (held-back) items: ``round(new_item_fraction * n_items)``."""
        return int(round(self.new_item_fraction * self.n_items))

    def preference(self) -> PreferenceParams:
        """The :class:`PreferenceParams` of worlds built from this config."""
        return PreferenceParams(affinity_scale=self.affinity_scale, popularity_weight=self.popularity_weight,
                                appeal_weight=self.appeal_weight, bias=self.click_bias)


@dataclass(frozen=True)
class ItemRecord:
    """One generated item (before encoding). ``genre`` indexes the world's genre names; ``genres`` are names."""

    title: str
    year: int
    genre: int
    genres: tuple[str, ...]
    description: str
    text: str
    popularity: float
    quality: float
    appeal: float
    clickbait: bool
    is_new: bool


@dataclass(frozen=True)
class UserRecord:
    """One generated user. ``liked``/``disliked`` are genre indices (``like_weights`` sum to 1, descending);
    ``history`` is item indices, most recent last, unpadded (empty for cold users)."""

    demographics: Mapping[str, object]
    liked: tuple[int, ...]
    like_weights: tuple[float, ...]
    disliked: tuple[int, ...]
    likes: tuple[str, ...]
    dislikes: tuple[str, ...]
    history: tuple[int, ...]
    cold: bool
    test: bool
    text: str


def _pick(rng: np.random.Generator, seq: tuple[str, ...]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _capitalise(s: str) -> str:
    return s[:1].upper() + s[1:]


def _title(rng: np.random.Generator, g: GenreVocab) -> str:
    noun, noun2 = (g.nouns[int(i)] for i in rng.choice(len(g.nouns), size=2, replace=False))
    name, name2 = (FIRST_NAMES[int(i)] for i in rng.choice(len(FIRST_NAMES), size=2, replace=False))
    fill = {"adj": _pick(rng, g.adjs), "noun": noun, "noun2": noun2, "name": name, "name2": name2,
            "surname": _pick(rng, SURNAMES), "place_title": _pick(rng, TOWNS),
            "num": _NUMS[int(rng.integers(len(_NUMS)))]}
    return _pick(rng, g.titles).format_map(fill)


def _description(rng: np.random.Generator, g: GenreVocab, second: GenreVocab | None, hype: bool) -> str:
    plot = _pick(rng, g.plots).format_map(
        {"hero": _pick(rng, g.heroes), "place": _pick(rng, g.places), "thing": _pick(rng, g.things)})
    parts = [_pick(rng, HYPE_SENTENCES)] if hype else []  # first: texts must end with a full stop
    parts += [_capitalise(plot) + ".", _capitalise(_article(_pick(rng, g.tones))) + "."]
    if second is not None:
        parts.append(f"With a touch of {_pick(rng, second.like_phrases[1:] or second.like_phrases)}.")
    return " ".join(parts)


def _make_items(cfg: SyntheticWorldConfig, rng: np.random.Generator) -> list[ItemRecord]:
    vocab = GENRES[: cfg.n_genres]
    m, n_new = cfg.n_items, cfg.n_new_items
    m0 = m - n_new
    shares = rng.dirichlet(np.full(cfg.n_genres, cfg.genre_concentration))
    genre = np.concatenate([np.arange(cfg.n_genres), rng.choice(cfg.n_genres, size=m - cfg.n_genres, p=shares)])
    genre = rng.permutation(genre)
    # Popularity: Zipf over a random permutation of the initial items; new items get the smallest prior.
    weight = np.empty(m, dtype=np.float64)
    weight[:m0] = (rng.permutation(m0) + 1.0) ** -cfg.zipf_exponent
    weight[m0:] = weight[:m0].min()
    popularity = weight / weight.sum()
    n_cb = int(round(cfg.clickbait_fraction * m))
    clickbait = np.zeros(m, dtype=bool)
    clickbait[rng.choice(m, size=n_cb, replace=False)] = True
    quality = np.where(clickbait, rng.beta(1.5, 6.0, size=m), rng.beta(cfg.quality_alpha, cfg.quality_beta, size=m))
    appeal = np.where(clickbait, rng.normal(cfg.clickbait_appeal, 0.3, size=m), rng.normal(0.0, cfg.appeal_std, size=m))
    has_second = rng.random(m) < (cfg.secondary_genre_prob if cfg.n_genres > 1 else 0.0)
    hype = clickbait & (rng.random(m) < cfg.clickbait_hype_prob)
    age = rng.exponential(12.0, size=m)
    items: list[ItemRecord] = []
    seen: dict[str, int] = {}
    for i in range(m):
        g = vocab[int(genre[i])]
        second = None
        if has_second[i]:
            j = int(rng.integers(cfg.n_genres - 1))
            second = vocab[j + (j >= genre[i])]
        title = _title(rng, g)
        for _ in range(8):  # redraw a few times to avoid duplicates, then number it as a sequel
            if title not in seen:
                break
            title = _title(rng, g)
        seen[title] = seen.get(title, 0) + 1
        if seen[title] > 1:
            title = f"{title} {seen[title]}"
        lo, hi = g.years
        year = _NEW_YEAR if i >= m0 else max(lo, hi - int(age[i]))
        desc = _description(rng, g, second, bool(hype[i]))
        names = (g.name,) if second is None else (g.name, second.name)
        items.append(ItemRecord(
            title=title, year=year, genre=int(genre[i]), genres=names, description=desc,
            text=item_text(title, year=year, genres=names, description=desc), popularity=float(popularity[i]),
            quality=float(quality[i]), appeal=float(appeal[i]), clickbait=bool(clickbait[i]), is_new=i >= m0,
        ))
    return items


def _make_users(cfg: SyntheticWorldConfig, rng: np.random.Generator, items: list[ItemRecord]) -> list[UserRecord]:
    vocab = GENRES[: cfg.n_genres]
    n_g, u = cfg.n_genres, cfg.n_users
    tilt = np.array([g.age_tilt for g in vocab])
    genre = np.array([it.genre for it in items], dtype=np.int64)
    initial = np.array([not it.is_new for it in items])
    pop = np.array([it.popularity for it in items]) ** cfg.history_popularity_power * initial
    genre_mass = np.bincount(genre, weights=pop, minlength=n_g)
    within = np.where(genre_mass[genre] > 0, pop / np.maximum(genre_mass[genre], 1e-300), 0.0)

    n_cold = int(round(cfg.cold_user_fraction * u))
    cold = np.zeros(u, dtype=bool)
    cold[rng.choice(u, size=n_cold, replace=False)] = True
    test = np.zeros(u, dtype=bool)
    for group in (np.flatnonzero(~cold), np.flatnonzero(cold)):  # stratified: both cohorts have test users
        test[rng.choice(group, size=int(round(cfg.test_user_fraction * group.size)), replace=False)] = True

    users: list[UserRecord] = []
    for k in range(u):
        age = int(rng.integers(18, 76))
        occupation = _pick(rng, OCCUPATIONS)
        if age >= 67 and rng.random() < 0.7:
            occupation = "retired"
        elif age <= 22 and rng.random() < 0.6:
            occupation = "student"
        demo = {"age": age, "gender": GENDERS[int(rng.choice(len(GENDERS), p=GENDER_PROBS))],
                "occupation": occupation, "country": _pick(rng, COUNTRIES)}
        # Tastes: Gumbel-top-k over demographic logits = sampling liked genres without replacement.
        logits = cfg.demographic_strength * tilt * (age - 45) / 20.0
        n_like = int(rng.integers(cfg.likes_min, cfg.likes_max + 1))
        n_dis = int(rng.integers(cfg.dislikes_min, cfg.dislikes_max + 1))
        order = np.argsort(-(logits + rng.gumbel(size=n_g)), kind="stable")
        liked = order[:n_like]
        rest = order[n_like:]
        disliked = rest[np.argsort(-(-logits[rest] + rng.gumbel(size=rest.size)), kind="stable")[:n_dis]]
        w = np.sort(rng.dirichlet(np.full(n_like, cfg.like_concentration)))[::-1]
        likes = tuple(_pick(rng, vocab[g].like_phrases) for g in liked)
        dislikes = tuple(_pick(rng, vocab[g].like_phrases) for g in disliked)
        history: tuple[int, ...] = ()
        titles: list[str] = []
        if not cold[k]:
            gw = np.full(n_g, cfg.history_off_taste / max(1, n_g - n_like - n_dis))
            gw[liked] = (1.0 - cfg.history_off_taste) * w
            gw[disliked] = 0.0
            p = gw[genre] * within
            n_pos = int((p > 0).sum())
            length = min(int(rng.integers(cfg.min_history_length, cfg.history_length + 1)), n_pos)
            if length > 0:
                history = tuple(int(i) for i in rng.choice(len(items), size=length, replace=False, p=p / p.sum()))
            n_titles = min(cfg.profile_history_titles, len(history))
            titles = [items[i].title for i in history[len(history) - n_titles:]] if n_titles else []
        text = profile_text(demographics=demo, likes=likes, dislikes=dislikes, history_titles=titles)
        users.append(UserRecord(
            demographics=demo, liked=tuple(int(g) for g in liked), like_weights=tuple(float(x) for x in w),
            disliked=tuple(int(g) for g in disliked), likes=likes, dislikes=dislikes, history=history,
            cold=bool(cold[k]), test=bool(test[k]), text=text,
        ))
    return users


def _generate(cfg: SyntheticWorldConfig, rng: np.random.Generator) -> tuple[list[ItemRecord], list[UserRecord]]:
    items = _make_items(cfg, rng)
    return items, _make_users(cfg, rng, items)


def make_synthetic_texts(config: SyntheticWorldConfig | None = None) -> tuple[list[ItemRecord], list[UserRecord]]:
    """Generate the world's items and users (texts and hidden attributes), without any encoder.

    Pure and seeded: the same config gives equal records in any process. Returns ``(items, users)`` with
    ``len(items) == config.n_items`` and ``len(users) == config.n_users``.
    """
    cfg = config if config is not None else SyntheticWorldConfig()
    return _generate(cfg, np.random.default_rng(cfg.seed))


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit a PCA on ``x`` ``(n, d)``; return ``(mean (d,), components (k, d))`` float64 with the sign convention
    that each component's largest-magnitude loading is positive (deterministic up to SVD round-off)."""
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(comps.shape[0]), np.argmax(np.abs(comps), axis=1)])
    return mean, comps * np.where(signs == 0, 1.0, signs)[:, None]


def make_synthetic_world(
    config: SyntheticWorldConfig | None = None,
    encoder: TextEncoder | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> World:
    """Build the synthetic :class:`World`: generate texts, encode them through the cache, build hidden latents.

    Args:
        config: generator parameters (default: :class:`SyntheticWorldConfig` defaults, 2000 items x 1000 users).
        encoder: any :class:`~recgym.encoders.base.TextEncoder`; default ``TransformerEncoder()`` (bundled
            MiniLM, 384-d). ``HashingEncoder(dim=64)`` gives a fast world for unit tests.
        cache_dir: embedding cache root (``None``: :func:`recgym.encoders.cache.default_cache_dir`).
        progress: show encoder progress bars.

    Returns:
        A :class:`World` named ``"synthetic"``: ``M = n_items`` items, ``U = n_users`` users, ``d = encoder.dim``,
        ``k = latent_dim``, ``H = history_length``. ``source`` holds the generator, the config JSON, the
        encoder fingerprint and the clickbait item indices (see :func:`clickbait_mask`).

    Raises:
        ValueError: ``latent_dim`` exceeds the encoder dim.
    """
    from recgym.encoders.cache import encode_with_cache

    cfg = config if config is not None else SyntheticWorldConfig()
    if encoder is None:
        from recgym.encoders.transformer import TransformerEncoder

        encoder = TransformerEncoder()
    if cfg.latent_dim > encoder.dim:
        raise ValueError(f"make_synthetic_world: latent_dim: expected <= encoder dim {encoder.dim}, "
                         f"received {cfg.latent_dim}")
    rng = np.random.default_rng(cfg.seed)
    items, users = _generate(cfg, rng)
    item_emb = encode_with_cache(encoder, [it.text for it in items], cache_dir, name="synthetic-items",
                                 progress=progress).vectors
    user_emb = encode_with_cache(encoder, [us.text for us in users], cache_dir, name="synthetic-profiles",
                                 progress=progress).vectors

    m, u, k, h = cfg.n_items, cfg.n_users, cfg.latent_dim, cfg.history_length
    genre = np.array([it.genre for it in items], dtype=np.int64)
    mean, comps = _pca(item_emb.astype(np.float64), k)
    x = _normalise((item_emb - mean) @ comps.T)
    centroids = _normalise(np.stack([x[genre == g].mean(axis=0) for g in range(cfg.n_genres)]))
    taste = np.zeros((u, k))
    for j, us in enumerate(users):
        taste[j] = np.asarray(us.like_weights) @ centroids[list(us.liked)]
        if us.disliked:
            taste[j] -= cfg.dislike_weight * centroids[list(us.disliked)].mean(axis=0)
    profile = _normalise((user_emb - mean) @ comps.T)
    noise = rng.normal(0.0, 1.0 / np.sqrt(k), size=(u, k))
    z = _normalise(cfg.profile_weight * profile + cfg.genre_weight * _normalise(taste) + cfg.interest_noise * noise)
    bias = rng.normal(0.0, cfg.user_bias_std, size=u)

    history = np.full((u, h), -1, dtype=np.int64)
    for j, us in enumerate(users):
        if us.history:
            history[j, h - len(us.history):] = us.history
    names = GENRE_VOCABULARY[: cfg.n_genres]
    quality = np.array([it.quality for it in items], dtype=np.float32)
    appeal = np.array([it.appeal for it in items], dtype=np.float32)
    modalities = {"image": _image_vectors(cfg, rng, quality, appeal)} if cfg.image_dim else {}
    catalog = Catalog(
        item_ids=np.arange(m, dtype=np.int64), titles=[it.title for it in items], texts=[it.text for it in items],
        embeddings=item_emb, genres=genre, genre_names=names,
        popularity=np.array([it.popularity for it in items], dtype=np.float32),
        quality=quality, appeal=appeal,
        latent=x.astype(np.float32), is_new=np.array([it.is_new for it in items], dtype=bool), modalities=modalities,
    )
    population = Population(
        user_ids=np.arange(u, dtype=np.int64), texts=[us.text for us in users], embeddings=user_emb,
        latent=z.astype(np.float32), bias=bias.astype(np.float32), history=history,
        cold=np.array([us.cold for us in users], dtype=bool), test=np.array([us.test for us in users], dtype=bool),
    )
    source = {
        "generator": "recgym.envs.worlds.synthetic",
        "config": cfg.model_dump_json(),
        "encoder": encoder.fingerprint,
        "clickbait_items": json.dumps([i for i, it in enumerate(items) if it.clickbait]),
    }
    return World(name="synthetic", catalog=catalog, population=population, preference=cfg.preference(),
                 source=source)


def _image_vectors(cfg: SyntheticWorldConfig, rng: np.random.Generator, quality: np.ndarray,
                   appeal: np.ndarray) -> np.ndarray:
    """``(M, image_dim)`` float32 second-modality vectors carrying part of the hidden quality and appeal (module
    docstring, step 3)."""

    def standard(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return (x - x.mean()) / (x.std() if x.std() > 0 else 1.0)

    basis, _ = np.linalg.qr(rng.normal(size=(cfg.image_dim, cfg.image_dim)))
    coords = rng.normal(size=(len(quality), cfg.image_dim))
    rho_q, rho_a = cfg.image_quality_corr, cfg.image_appeal_corr
    coords[:, 0] = rho_q * standard(quality) + np.sqrt(1.0 - rho_q**2) * coords[:, 0]
    if cfg.image_dim >= 2:
        coords[:, 1] = rho_a * standard(appeal) + np.sqrt(1.0 - rho_a**2) * coords[:, 1]
    return (coords @ basis.T).astype(np.float32)


def clickbait_mask(world: World) -> np.ndarray:
    """``(M,)`` bool: the clickbait items of a synthetic world (from ``world.source["clickbait_items"]``).

    Raises:
        ValueError: the world was not built by :func:`make_synthetic_world`.
    """
    if "clickbait_items" not in world.source:
        raise ValueError(f"clickbait_mask: expected a synthetic world with source['clickbait_items'], "
                         f"received world {world.name!r} with source keys {sorted(world.source)}")
    mask = np.zeros(world.catalog.num_items, dtype=bool)
    mask[np.asarray(json.loads(world.source["clickbait_items"]), dtype=np.int64)] = True
    return mask

