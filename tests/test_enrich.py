"""LM enrichment with a tiny random causal LM built from a config (no real model needed)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.common.config import ConfigError
from recgym.encoders.cache import CacheError
from recgym.encoders.enrich import (
    ITEM_PROMPT,
    CausalLMEnricher,
    clean_generation,
    enrich_with_cache,
    enriched_texts,
    generation_settled,
    load_enrichment,
)
from recgym.envs import make_world
from recgym.experiments.config import load_config
from recgym.experiments.enrichment import TextConfig, enrich_world, user_prompt_texts

TEXTS = ["Forgotten Front (1995). Genres: war. A platoon fights.", "Season Day (2014). Genres: sports. A runner.",
         "Cosmic Cafe (2001). Genres: comedy. Aliens run a diner in space and serve pancakes."]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A 2-layer random Llama with a byte-level BPE tokenizer and a chat template, saved to a folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-lm")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 20 + ["keywords war sports comedy space diner runner"], vocab_size=300,
                            special_tokens=["<s>", "</s>", "<pad>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<s>assistant:{% endif %}")
    tok.save_pretrained(path)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)  # test-only: a fixed random model
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def _enricher(path, **kw) -> CausalLMEnricher:
    return CausalLMEnricher(path, **{"max_new_tokens": 6, "batch_size": 2, "dtype": "float32", "device": "cpu", **kw})


def test_generation_is_greedy_cached_and_verified(tiny_lm, tmp_path, caplog) -> None:
    enr = _enricher(tiny_lm)
    first = enrich_with_cache(enr, TEXTS, ITEM_PROMPT, tmp_path, name="t")
    assert not first.hit and len(first.texts) == 3 and first.tokens > 0 and first.seconds > 0
    m = first.manifest
    for key in ("model_sha256", "template_sha256", "texts_sha256", "outputs_sha256", "max_new_tokens", "dtype",
                "batch_size", "tokens", "seconds"):
        assert key in m, key
    assert m["decoding"] == "greedy-settled-rows" and m["max_new_tokens"] == 6
    again = enrich_with_cache(_enricher(tiny_lm), TEXTS, ITEM_PROMPT, tmp_path, name="t")
    assert again.hit and again.texts == first.texts and again.tokens == first.tokens
    fresh = _enricher(tiny_lm).generate(TEXTS, ITEM_PROMPT)[0]
    assert fresh == first.texts  # deterministic (greedy)
    # A tampered output is caught by its hash, named, and rebuilt.
    (first.path / "texts.json").write_text(json.dumps(["x", "y", "z"]))
    with pytest.raises(CacheError, match="outputs_sha256"):
        load_enrichment(first.path)
    with pytest.raises(CacheError, match="rebuild_stale=False"):
        enrich_with_cache(enr, TEXTS, ITEM_PROMPT, tmp_path, name="t", rebuild_stale=False)
    with caplog.at_level(logging.WARNING):
        rebuilt = enrich_with_cache(enr, TEXTS, ITEM_PROMPT, tmp_path, name="t")
    assert not rebuilt.hit and rebuilt.texts == first.texts and "rebuilding" in caplog.text
    # A cache killed before its manifest is partial: never used.
    (rebuilt.path / "manifest.json").unlink()
    with pytest.raises(CacheError, match="manifest missing"):
        load_enrichment(rebuilt.path)


def test_identity_covers_decoding_template_and_texts(tiny_lm, tmp_path) -> None:
    a = enrich_with_cache(_enricher(tiny_lm), TEXTS, ITEM_PROMPT, tmp_path, name="t")
    b = enrich_with_cache(_enricher(tiny_lm, max_new_tokens=3), TEXTS, ITEM_PROMPT, tmp_path, name="t")
    c = enrich_with_cache(_enricher(tiny_lm), TEXTS, "Summarise: {text}", tmp_path, name="t")
    d = enrich_with_cache(_enricher(tiny_lm), TEXTS[::-1], ITEM_PROMPT, tmp_path, name="t")
    assert len({a.path, b.path, c.path, d.path}) == 4 and not (b.hit or c.hit or d.hit)
    assert d.texts == a.texts[::-1]  # order restored after length-sorted batching
    with pytest.raises(CacheError, match="max_new_tokens"):
        load_enrichment(a.path, _enricher(tiny_lm, max_new_tokens=3))
    with pytest.raises(CacheError, match="template_sha256"):
        load_enrichment(a.path, texts=TEXTS, template="other {text}")


def test_bad_model_paths_fail_clearly(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        CausalLMEnricher(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="holds no weights"):
        CausalLMEnricher(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        CausalLMEnricher(tmp_path, dtype="int3")


def test_clean_and_append() -> None:
    assert clean_generation("\n- Keywords: war, battle,\nmore") == "war, battle"
    assert clean_generation(" War, Epic Film... The above is an example") == "War, Epic Film"
    assert clean_generation("Breads and Bites! More") == "Breads and Bites"
    assert clean_generation('"space, diner"') == "space, diner"
    assert enriched_texts(["A film.", "B."], ["war, battle", ""], "Keywords") == ["A film. Keywords: war, battle.", "B."]


def test_enrich_world_changes_only_the_observable_texts(tiny_lm, tmp_path) -> None:
    world = make_world("synthetic", world_config={"n_items": 120, "n_users": 40, "n_genres": 8, "latent_dim": 8},
                       encoder="hashing")
    cfg = TextConfig(enrich="both", model=str(tiny_lm), max_new_tokens=4, batch_size=16, dtype="float32")
    rich = enrich_world(world, cfg, "hashing", cache_dir=tmp_path)
    c0, c1, p0, p1 = world.catalog, rich.catalog, world.population, rich.population
    assert all(t1.startswith(t0) for t0, t1 in zip(c0.texts, c1.texts, strict=True))
    assert any(" Keywords: " in t for t in c1.texts) and any(" Interests: " in t for t in p1.texts)
    assert not np.allclose(c0.embeddings, c1.embeddings) and not np.allclose(p0.embeddings, p1.embeddings)
    for a, b in ((c0.latent, c1.latent), (c0.quality, c1.quality), (p0.latent, p1.latent), (p0.history, p1.history)):
        assert np.array_equal(a, b)  # the hidden truth is untouched
    assert rich.source["enrichment_items"] and rich.fingerprint() != world.fingerprint()
    assert enrich_world(world, TextConfig(), "hashing") is world
    warm = int(np.flatnonzero(~p0.cold)[0])
    assert "Consumed before: " in user_prompt_texts(world)[warm]
    assert "Consumed before" not in user_prompt_texts(world)[int(np.flatnonzero(p0.cold)[0])]


def test_text_section_of_configs() -> None:
    with pytest.raises(ConfigError, match=r"text\.enrich"):
        load_config(raw={"name": "x", "agents": [{"name": "random"}], "text": {"enrich": "all"}})
    with pytest.raises(ConfigError, match=r"text\.max_new_token: unknown key.*did you mean 'max_new_tokens'"):
        load_config(raw={"name": "x", "agents": [{"name": "random"}], "text": {"max_new_token": 3}})
    assert load_config(raw={"name": "x", "agents": [{"name": "random"}]}).text.enrich == "none"


def test_enrich_command_reports_tokens_and_seconds_then_hits_the_cache(tiny_lm, tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RECGYM_CACHE": str(tmp_path)}
    args = [sys.executable, "-m", "recgym", "enrich", "--world", "analytic", "--model", str(tiny_lm), "--limit", "4",
            "--max-new-tokens", "3", "--dtype", "float32", "--json"]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    fig = json.loads(first.stdout.strip().splitlines()[-1])
    assert fig["texts"] == 4 and fig["tokens"] > 0 and fig["seconds"] > 0 and not fig["cache_hit"]
    again = json.loads(subprocess.run(args, capture_output=True, text=True, env=env, timeout=300).stdout.splitlines()[-1])
    assert again["cache_hit"] and again["tokens"] == fig["tokens"]
    bad = subprocess.run([*args[:6], "--model", str(tmp_path / "none")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "nothing is downloaded" in bad.stderr


def _plain_generate(enr, text, max_new_tokens, **kw) -> list[int]:
    """One ``generate`` call for one prompt (no padding, no shared prefix): the reference tokens."""
    tok, model = enr._tok, enr._model
    enc = tok([enr.prompt(ITEM_PROMPT, text)], return_tensors="pt")
    with torch.inference_mode():
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                             pad_token_id=tok.pad_token_id, **kw)
    seq = gen[0, enc["input_ids"].shape[1]:].tolist()
    return seq[: seq.index(tok.eos_token_id)] if tok.eos_token_id in seq else seq


@pytest.mark.parametrize("penalties", [False, True])
def test_batched_generation_matches_plain_generate(tiny_lm, penalties) -> None:
    """Shared prefix, padded batch, early stops, split threads: the answers of one plain ``generate`` call per
    prompt, with the repetition penalty and the n-gram ban too (which must not see a batch mate's padding)."""
    kw = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3} if penalties else {}
    enr = _enricher(tiny_lm, max_new_tokens=8, batch_size=3,
                    **(kw or {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}))
    got, tokens, _ = enr.generate(TEXTS, ITEM_PROMPT)
    assert tokens > 0 and enr.last_stats.prefill_tokens > 0
    refs = [_plain_generate(enr, text, 8, **kw) for text in TEXTS]
    for out, ref in zip(got, refs, strict=True):
        assert out == clean_generation(enr._tok.decode(ref, skip_special_tokens=True))
    assert len({len(ids) for ids in (enr._tok(enr.prompt(ITEM_PROMPT, t))["input_ids"] for t in TEXTS)}) > 1  # padded
    assert torch.get_num_threads() >= 1


def test_finished_rows_leave_the_batch_and_the_others_are_unchanged(tiny_lm) -> None:
    """Rows stopped by ``settled`` at different steps are dropped from the batch and its KV cache; every row
    keeps the tokens of its own plain ``generate`` call, cut where ``settled`` first fired on them."""
    from recgym.encoders.enrich_decode import DecodeStats, greedy_decode

    texts = [*TEXTS, "Night Train (1987). Genres: thriller. A chase."]
    enr = _enricher(tiny_lm, max_new_tokens=10)
    enr._load()
    tok = enr._tok
    ids = [tok(enr.prompt(ITEM_PROMPT, t))["input_ids"] for t in texts]
    refs = [_plain_generate(enr, t, 10, repetition_penalty=1.3) for t in texts]
    marks = [tuple(ref[:cut]) for ref, cut in zip(refs, [4, 5, 2, 10], strict=True)]

    def settled(g: list[int]) -> bool:
        return tuple(g) in marks

    cuts = [next((k for k in range(1, len(ref) + 1) if settled(ref[:k])), None) for ref in refs]
    expected = [ref[:cut] if cut else ref for ref, cut in zip(refs, cuts, strict=True)]
    # Forward passes per row after the prefill: one per further token, and one more for an EOS it emitted.
    runs = [cut - 1 if cut else min(len(ref), 9) for ref, cut in zip(refs, cuts, strict=True)]
    assert len({len(e) for e in expected}) > 1  # the rows do stop at different steps
    stats = DecodeStats()
    with torch.inference_mode():
        got = greedy_decode(enr._model, None, [], ids, pad_id=tok.pad_token_id, stop_ids={tok.eos_token_id},
                            max_new_tokens=10, repetition_penalty=1.3, settled=settled, stats=stats)
    assert got == expected
    assert stats.steps == max(runs) and stats.row_steps == sum(runs)  # a row is computed only while it runs


@given(st.text(alphabet="ab .!?\n\r\t-*•\"'\x85K:", max_size=14), st.text(alphabet="ab .!?\n\r\t-*•\"'\x85", max_size=8))
@settings(max_examples=400, deadline=None)
def test_a_settled_generation_cannot_change_its_answer(text, more) -> None:
    if generation_settled(text):
        assert clean_generation(text + more) == clean_generation(text)


def test_settled_examples() -> None:
    assert generation_settled(" war, battle\nThe above") and generation_settled("war, epic!")
    assert generation_settled("war. b") and generation_settled("\n\n- war, battle\n")
    assert not generation_settled("war, battle") and not generation_settled("war. ")
    assert not generation_settled("\n- \n") and not generation_settled("")


def test_common_prefix_keeps_a_token_per_prompt() -> None:
    from recgym.encoders.enrich import _common_prefix

    assert _common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3]]) == [1, 2]
    assert _common_prefix([[7], [7]]) == []
    assert _common_prefix([[1, 2, 9], [3, 2, 9]]) == []
