"""Explained slates of a finished run: ``recgym explain RUN_DIR --user N`` and the report's examples.

:func:`load_run_agent` rebuilds an agent of a run folder as it was evaluated: RL agents from their last
complete checkpoint (through :func:`~recgym.experiments.training.train_rl`, which trains nothing when the
checkpoint is there), offline learners fitted on the run's logged data of that seed, others fresh; the
agent's ``rerank`` wrapper applied. :func:`explain_user` then plays one user of the world in the run's
evaluation env and explains every slate with :meth:`~recgym.agents.base.Recommender.explain`, naming
history items through a :class:`~recgym.agents.explain.HistoryLedger` and scoring profile aspects by
occlusion (:func:`profile_aspects`: the profile text re-encoded without each aspect by the world's own
encoder; skipped, with a note, when that encoder does not reproduce the world's profile vector).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ExplainedStep", "explain_user", "load_run", "load_run_agent", "profile_aspects", "report_examples"]

_SENTENCE = re.compile(r"(?<=\.)\s+(?=(?:User |Likes |Dislikes |Recently watched: |Interests: ))")
NO_PROFILE = "A user with no stated profile."


def profile_aspects(text: str) -> list[tuple[str, str]]:
    """``[(aspect name, the profile text without it)]`` for a text written by
    :func:`recgym.encoders.profile_text`: one aspect per demographic field and one per other sentence
    ("Likes ...", "Dislikes ...", "Recently watched: ...")."""
    sentences = [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]
    out = []
    for i, s in enumerate(sentences):
        rest = sentences[:i] + sentences[i + 1:]
        if s.startswith("User ") and ": " in s:
            fields = s[len("User "):].rstrip(".").split("; ")
            for f in fields:
                others = [x for x in fields if x is not f]
                user = [f"User {'; '.join(others)}."] if others else []
                out.append((f, " ".join(sentences[:i] + user + sentences[i + 1:]) or NO_PROFILE))
        else:
            name = s if len(s) <= 70 else s[:67] + "..."
            out.append((name, " ".join(rest) or NO_PROFILE))
    return out


def aspect_context(world: Any, users: np.ndarray, encoder_spec: str | None) -> tuple[list, list, str]:
    """``(aspect names per row, (A, d) occluded profile vectors per row, note)``; empty lists and a note
    when the world has no text encoder or the encoder does not reproduce its profile vectors."""
    if "encoder" not in (world.source or {}):
        return [[] for _ in users], [np.zeros((0, world.catalog.dim), np.float32) for _ in users], \
            "profile aspects: not scored (the world's profiles are not LM-encoded texts)"
    from recgym.encoders.fusion import pad_profiles
    from recgym.envs.factory import make_encoder

    base = make_encoder(encoder_spec)
    dim = world.population.embeddings.shape[1]

    def encode(texts: list[str]) -> np.ndarray:  # a fused world's profiles: text vectors padded with zeros
        v = base.encode(texts)
        return pad_profiles(v, dim) if v.shape[1] < dim else v

    texts = [world.population.texts[int(u)] for u in users]
    full = encode(texts)
    cos = (full * world.population.embeddings[users]).sum(1)
    if (cos < 0.99).any():
        return [[] for _ in users], [np.zeros((0, world.catalog.dim), np.float32) for _ in users], \
            f"profile aspects: not scored (the encoder gives cos {cos.min():.3f} with the world's profile vector)"
    names, vecs = [], []
    for t in texts:
        asp = profile_aspects(t)
        names.append([a for a, _ in asp])
        vecs.append(encode([x for _, x in asp]) if asp else np.zeros((0, world.catalog.dim), np.float32))
    return names, vecs, "profile aspects: occlusion (re-encoded without the aspect)"


# ------------------------------------------------------------------------------------------- run folder
def load_run(run_dir: Path) -> tuple[Any, Any, str]:
    """``(config, world, config hash)`` of a run folder (its resolved ``config.yaml``)."""
    from recgym.experiments.config import config_hash, load_config
    from recgym.experiments.enrichment import build_world

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"RUN_DIR: expected a recgym run folder with config.yaml, {run_dir} has none")
    cfg = load_config(run_dir / "config.yaml")
    world = build_world(cfg)
    return cfg, world, config_hash(cfg)


def load_run_agent(cfg: Any, world: Any, chash: str, run_dir: Path, label: str, seed: int, env: Any) -> Any:
    """The agent ``label`` of the run for ``seed``, ready to rank ``env`` (see the module docstring)."""
    from recgym.agents import AGENTS, LoggedData, make_agent
    from recgym.agents.rerank import FairReranker
    from recgym.experiments.cells import cell_name

    specs = {s.key: (i, s) for i, s in enumerate(cfg.agents)}
    if label not in specs:
        raise ValueError(f"--agent: expected one of {sorted(specs)}, received {label!r}")
    i, spec = specs[label]
    cls = AGENTS[spec.name]
    hp = {**spec.hyperparams, "seed": seed, "device": cfg.device}
    if cls.train_action_types is not None:
        from recgym.envs.sb3 import RankingSB3VecEnv
        from recgym.experiments.cells import seed_batched
        from recgym.experiments.training import find_resume_checkpoint, train_rl

        ckpt = Path(run_dir) / "checkpoints" / cell_name(label, seed)
        if not (ckpt / "latest.json").is_file():
            raise FileNotFoundError(f"agent {label!r}, seed {seed}: no complete checkpoint in {ckpt}")
        tenv = cfg.train_env(i)
        # The run's own num_envs: the checkpoint holds the training env's state, which must fit its env.
        n = cfg.training.num_envs
        agent = make_agent(spec.name, RankingSB3VecEnv(n, seed=seed, world=world, config=tenv, device=cfg.device), **hp)
        if seed_batched(spec):  # PPO trainer 'fast': the seed's verified checkpoint holds its scorer
            payload = find_resume_checkpoint(ckpt, chash)
            if payload is None:
                raise FileNotFoundError(f"agent {label!r}, seed {seed}: no valid checkpoint in {ckpt}")
            agent.policy.scorer.load_state_dict(payload["policy"])
            agent.num_timesteps = int(payload["step"])
            return agent if spec.rerank is None else FairReranker(agent, spec.rerank)
        with tempfile.TemporaryDirectory() as tmp:
            train_rl(agent, world=world, train_env_cfg=tenv, budget=0, num_envs=n, seed=seed, checkpoint_every=1,
                     ckpt_dir=ckpt, log_path=Path(tmp) / "curve.csv", tb_dir=None, cfg_hash=chash,
                     curve_fn=lambda _a: float("nan"), device=cfg.device)
    else:
        agent = make_agent(spec.name, env, **hp)
        if cls.learns_offline and spec.fit_on_logs is not False:
            logs = Path(run_dir) / "logs" / f"seed{seed}.npz"
            if not logs.is_file():
                raise FileNotFoundError(f"agent {label!r} fits on logged data, but {logs} does not exist")
            agent.fit(LoggedData.load(logs))
    return agent if spec.rerank is None else FairReranker(agent, spec.rerank)


@dataclass
class ExplainedStep:
    step: int
    explanation: Any  # SlateExplanation
    clicked: list[int]


def explain_user(agent: Any, world: Any, cfg: Any, user: int, *, steps: int = 1, seed: int = 0, top: int = 3,
                 aspects: tuple[list, list, str] | None = None) -> tuple[list[ExplainedStep], str]:
    """Play ``user`` for up to ``steps`` slates in the run's evaluation env; explain each slate.

    Returns the explained steps and a note on how profile aspects were scored."""
    from recgym.agents.explain import ExplainContext, HistoryLedger
    from recgym.envs import RankingVectorEnv

    n_users = world.population.num_users
    if not 0 <= user < n_users:
        raise ValueError(f"--user: expected a population index in [0, {n_users}), received {user}")
    env = RankingVectorEnv(1, world=world, config=cfg.eval_env(), device=cfg.device)
    users = np.array([user], dtype=np.int64)
    names, vecs, note = aspects if aspects is not None else aspect_context(world, users, cfg.encoder)
    ledger = HistoryLedger(world.population.history, cfg.env.observation.history_ema)
    ledger.start(users)
    obs, _ = env.reset(seed=seed, options={"user_indices": users})
    out = []
    for t in range(steps):
        slate = agent.rank(obs, cfg.env.slate_size)
        ids, w = ledger.arrays()
        ctx = ExplainContext(ids, w, names, vecs, item_names=world.catalog.titles)
        exp = agent.explain(obs, slate, ctx, top)[0]
        prev = obs
        obs, _, term, trunc, info = env.step(slate)
        if getattr(agent, "learns_online", False):  # as in evaluation: online learners keep learning
            agent.update(prev, slate, {**info, "_clicks": np.ones(1, bool)})
        ledger.observe(info["slate_items"], info["clicks"])
        out.append(ExplainedStep(t, exp, [int(i) for i, c in zip(info["slate_items"][0], info["clicks"][0],
                                                                  strict=True) if c]))
        if term[0] or trunc[0]:
            break
    return out, note


def format_steps(steps: list[ExplainedStep], world: Any, top: int = 3, items: int | None = None) -> str:
    titles = world.catalog.titles
    lines = []
    for s in steps:
        e = s.explanation
        lines.append(f"step {s.step}: {e.method}; history items from {e.history_source}")
        for it in e.items[:items]:
            ev = "; ".join(f"{x.kind} {x.name}: {x.weight:+.3f}{' (approx.)' if x.approximate else ''}"
                           for x in it.evidence[:top])
            lines.append(f"  {it.position + 1}. {titles[it.item]} [{it.item}] score {it.score:.3f} <- {ev or '-'}")
        clicked = ", ".join(f"{titles[i]} [{i}]" for i in s.clicked) or "nothing"
        lines.append(f"  clicked: {clicked}")
    return "\n".join(lines)


def report_examples(cfg: Any, world: Any, chash: str, out: Path, n_items: int = 3) -> list[str]:
    """Markdown lines: the first slate of one warm and one cold evaluation user, explained, for every
    agent of the run that has an attribution method (seed = the first evaluation seed)."""
    from recgym.agents.explain import SCORER_ACCESSORS
    from recgym.envs import RankingVectorEnv
    from recgym.experiments.evaluation import cohort_users

    seed = cfg.evaluation.seeds[0]
    users = cohort_users(world, cfg.evaluation.cohort, cfg.evaluation.users_per_seed, seed)
    cold = np.asarray(world.population.cold)
    picks = [u for u in (users[~cold[users]][:1].tolist() + users[cold[users]][:1].tolist())]
    lines = ["## Explained slates", "",
             f"The first slate of {len(picks)} evaluation user(s) (population index; seed {seed}), top "
             f"{n_items} items, each with its 3 strongest pieces of evidence (contribution to the item's "
             "score; see `recgym explain RUN_DIR --user N`). History items come from the platform's own "
             "record of what the user consumed; profile aspects are scored by occlusion.", ""]
    explainable = [s.key for s in cfg.agents  # re-ranked variants show their base agent's evidence: skipped
                   if s.rerank is None and (s.name == "lm_similarity" or s.name in SCORER_ACCESSORS)]
    if not explainable or not picks:
        return lines + ["(no agent of this run has an attribution method)", ""]
    aspects = {u: aspect_context(world, np.array([u]), cfg.encoder) for u in picks}
    env = RankingVectorEnv(1, world=world, config=cfg.eval_env(), device=cfg.device)
    for label in explainable:
        try:
            agent = load_run_agent(cfg, world, chash, out, label, seed, env)
            for u in picks:
                steps, note = explain_user(agent, world, cfg, u, steps=1, seed=seed, aspects=aspects[u])
                kind = "cold" if cold[u] else "warm"
                lines += [f"**{label}**, user {u} ({kind}; {note}):", "", "```",
                          format_steps(steps, world, items=n_items), "```", ""]
        except Exception as exc:  # noqa: BLE001 - an example must never cost a finished run its report
            lines += [f"**{label}**: not explained ({type(exc).__name__}: {exc})", ""]
    return lines


def explanations_json(steps: list[ExplainedStep]) -> str:
    """The explained steps as JSON (for ``recgym explain --json``)."""
    def item(it: Any) -> dict[str, Any]:
        return {"position": it.position, "item": it.item, "score": it.score,
                "evidence": [{"kind": e.kind, "name": e.name, "weight": e.weight, "item": e.item,
                              "approximate": e.approximate} for e in it.evidence]}

    return json.dumps([{"step": s.step, "method": s.explanation.method, "history_source": s.explanation.history_source,
                        "items": [item(i) for i in s.explanation.items], "clicked": s.clicked} for s in steps])


def deletion_check(agent: Any, world: Any, cfg: Any, users: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Faithfulness of the history attributions by deletion, on the first slate of each user.

    For the top-ranked item, remove from the history vector the history item with the largest attribution
    (``h - w_j e_j``) and, separately, a uniformly drawn other history item; the score drop of each is the
    real effect. A faithful attribution makes the first drop the larger. Returns per-user drops and their
    means with 95 % CIs (users without at least two history items are skipped)."""
    from recgym.agents.explain import ExplainContext, HistoryLedger
    from recgym.envs import RankingVectorEnv
    from recgym.experiments.stats import mean_ci

    rng = np.random.default_rng([seed, 4242])
    env = RankingVectorEnv(1, world=world, config=cfg.eval_env(), device=cfg.device)
    emb = world.catalog.embeddings.astype(np.float64)
    top_drop, rand_drop = [], []
    for u in users:
        ledger = HistoryLedger(world.population.history, cfg.env.observation.history_ema)
        ledger.start([int(u)])
        obs, _ = env.reset(seed=seed, options={"user_indices": np.array([u])})
        slate = agent.rank(obs, cfg.env.slate_size)
        ids, w = ledger.arrays()
        exp = agent.explain(obs, slate, ExplainContext(ids, w), None)[0]
        hist = [e for e in exp.items[0].evidence if e.kind == "history" and not e.approximate]
        if len(hist) < 2:
            continue
        weight = dict(zip(ids[0].tolist(), w[0].tolist(), strict=True))
        best = max(hist, key=lambda e: e.weight).item
        other = [e.item for e in hist if e.item != best][int(rng.integers(len(hist) - 1))]
        cand = int(slate[0, 0])
        base = float(agent.score(obs)[0, cand]) if hasattr(agent, "score") else exp.items[0].score

        top_drop.append(base - _score_without(agent, obs, cand, weight[best] * emb[best]))
        rand_drop.append(base - _score_without(agent, obs, cand, weight[other] * emb[other]))
    t, r = np.array(top_drop), np.array(rand_drop)
    if len(t) < 2:
        raise ValueError("deletion_check: fewer than 2 users with at least 2 history items")
    ct, cr, cd = mean_ci(t), mean_ci(r), mean_ci(t - r)
    return {"n_users": len(t), "top_drop": ct.mean, "top_drop_hw": ct.half_width, "random_drop": cr.mean,
            "random_drop_hw": cr.half_width, "diff": cd.mean, "diff_low": cd.low, "diff_high": cd.high,
            "share_top_larger": float((t > r).mean())}


def _score_without(agent: Any, obs: Any, cand: int, part: np.ndarray) -> float:
    """The score of candidate ``cand`` with ``part`` taken out of the (single-row) history vector."""
    o = {k: np.array(v, copy=True) for k, v in obs.items()}
    o["history"][0] = (o["history"][0] - part).astype(np.float32)
    return float(agent.score(o)[0, cand])
