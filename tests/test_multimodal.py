"""Multimodal item features: the fusion rule, the item-vector loader, items.csv feature columns, the synthetic
world's second modality (off: unchanged world; on: carries hidden quality the text does not), the ``features:``
section and a run end to end."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from logdata import make_log
from typer.testing import CliRunner

from recgym.cli import app
from recgym.common import ConfigError
from recgym.common.errors import DataError
from recgym.encoders.fusion import fuse_item_vectors, load_item_vectors, pad_profiles, tabular_features
from recgym.encoders.hashing import HashingEncoder
from recgym.envs.datasets import load_dataset
from recgym.envs.worlds.fitted import FitConfig, fit_world
from recgym.envs.worlds.synthetic import SyntheticWorldConfig, make_synthetic_world
from recgym.experiments.config import ExperimentConfig
from recgym.experiments.multimodal import FeaturesConfig, fuse_world

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_fusion_rule_weights_are_squared_shares_and_profiles_keep_text_cosines():
    rng = np.random.default_rng(0)
    text, image, prof = _unit(rng.normal(size=(50, 8))), rng.normal(size=(50, 5)) + 3.0, _unit(rng.normal(size=(7, 8)))
    fused = fuse_item_vectors(text, {"image": image}, {"text": 3.0, "image": 1.0})
    assert fused.shape == (50, 13) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(fused[:, :8], axis=1) ** 2, 0.75, atol=1e-6)  # 3 / (3 + 1)
    block = fused[:, 8:] / 0.5  # the image block is centred (the +3 offset is gone), then unit rows
    np.testing.assert_allclose(np.linalg.norm(block, axis=1), 1.0, atol=1e-5)
    centred = image - image.mean(axis=0)
    np.testing.assert_allclose(block, _unit(centred), atol=1e-5)
    padded = pad_profiles(prof.astype(np.float32), 13)
    np.testing.assert_allclose(padded @ fused.T, np.sqrt(0.75) * prof @ text.T, atol=1e-5)


def test_fusion_caps_wide_blocks_by_pca_fitted_on_initial_items_and_keeps_missing_rows_missing():
    rng = np.random.default_rng(1)
    text = _unit(rng.normal(size=(60, 4)))
    wide = rng.normal(size=(60, 40))
    wide[5] = 0.0  # this item has no vector
    fit = np.arange(60) < 50
    fused = fuse_item_vectors(text, {"v": wide}, {"text": 1.0, "v": 1.0}, max_dim=6, fit_mask=fit)
    assert fused.shape == (60, 10)
    np.testing.assert_allclose(fused[5, 4:], 0.0)
    np.testing.assert_allclose(fused[5, :4], text[5], atol=1e-6)  # text only, renormalised
    moved = wide.copy()
    moved[55:] += 100.0  # later items do not shape the projection
    again = fuse_item_vectors(text, {"v": moved}, {"text": 1.0, "v": 1.0}, max_dim=6, fit_mask=fit)
    np.testing.assert_allclose(again[:50], fused[:50], atol=1e-6)
    with pytest.raises(ValueError, match="weights: expected a weight for"):
        fuse_item_vectors(text, {"v": wide}, {"text": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        fuse_item_vectors(text, {"v": wide}, {"text": 0.0, "v": 0.0})


def test_tabular_features_standardise_flag_missing_and_one_hot_shared_levels():
    x = np.array([1.0, 2.0, np.nan, 3.0, 1e6])
    block, names = tabular_features({"num_len": x}, {"cat_lang": [("en",), ("fr", "en"), ("de",), ("fr",), ()]}, 5)
    assert names == ["num_len", "num_len:missing", "cat_lang=en", "cat_lang=fr"]  # 'de' is on one item only
    assert block[:, 0].max() <= 5.0 and block[2, 0] == 0.0 and block[2, 1] == 1.0 and block[:, 1].sum() == 1.0
    np.testing.assert_array_equal(block[:, 2], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(block[:, 3], [0, 1, 0, 1, 0])


def test_item_vector_loader_refuses_bad_files_with_named_errors(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(12, dtype=np.float64).reshape(4, 3))
    out = load_item_vectors(good, 4)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    cases = {
        "rows.npy": (np.zeros((3, 3)), "one row per item of items.csv \\(4 rows"),
        "flat.npy": (np.zeros(4), "a 2-D array"),
        "nan.npy": (np.array([[0.0], [np.inf], [0.0], [0.0]]), "finite values .*row 1"),
        "str.npy": (np.array([["a"]] * 4), "a float or integer array"),
    }
    for name, (arr, msg) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(DataError, match=msg) as e:
            load_item_vectors(tmp_path / name, 4)
        assert name in str(e.value)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps([[0.0]] * 4))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    for name in ("obj.npy", "pickle.npy", "junk.npy", "absent.npy"):
        with pytest.raises(DataError, match=f"{name}: expected"):
            load_item_vectors(tmp_path / name, 4)


def _log_with_features(tmp_path, n_items=60):
    folder = make_log(tmp_path / "log", n_items=n_items, n_users=50, per_user=10)
    lines = (folder / "items.csv").read_text().splitlines()
    rows = [lines[0] + ",num_length,cat_lang"] + [
        f"{line},{'' if k % 7 == 0 else 80 + k},{'en' if k % 2 else 'fr'}" for k, line in enumerate(lines[1:])]
    (folder / "items.csv").write_text("\n".join(rows) + "\n")
    np.save(folder / "item_vectors.npy", np.random.default_rng(0).normal(size=(n_items, 12)).astype(np.float32))
    return folder


def test_log_items_carry_feature_columns_and_vectors_into_the_fitted_world(tmp_path):
    folder = _log_with_features(tmp_path)
    data = load_dataset("log", folder)
    cols = data.item_modalities["columns"]
    assert cols.shape == (60, 4) and data.item_modalities["vectors"].shape == (60, 12)  # length, missing, en, fr
    assert "80" not in data.items["text"][1] and "num_length" not in data.items["text"][1]
    fw = fit_world("log", folder, encoder=HashingEncoder(dim=16), config=FitConfig(epochs=2, latent_dim=8),
                   cache_dir=tmp_path / "cache")
    assert set(fw.world.catalog.modalities) == {"columns", "vectors"}
    fused = fuse_world(fw.world, FeaturesConfig(max_dim=8))
    assert fused.catalog.dim == 16 + 4 + 8 and fused.population.embeddings.shape[1] == 28
    assert fuse_world(fw.world, FeaturesConfig(fuse="text")) is fw.world
    only = fuse_world(fw.world, FeaturesConfig(fuse=["vectors"], weights={"text": 2.0}))
    assert only.catalog.dim == 16 + 12 and "text:2, vectors:1" in only.source["fusion"]
    with pytest.raises(ConfigError, match="unknown \\['image'\\]"):
        fuse_world(fw.world, FeaturesConfig(fuse=["image"]))


def test_log_feature_cells_and_vector_file_are_validated(tmp_path):
    folder = _log_with_features(tmp_path)
    text = (folder / "items.csv").read_text().replace(",81,", ",eighty,", 1)
    (folder / "items.csv").write_text(text)
    with pytest.raises(DataError, match="column 'num_length', line 3: expected a number .* received 'eighty'"):
        load_dataset("log", folder)
    folder = _log_with_features(tmp_path / "b")
    np.save(folder / "item_vectors.npy", np.zeros((59, 12)))
    with pytest.raises(DataError, match="item_vectors.npy: expected one row per item of items.csv \\(60 rows"):
        load_dataset("log", folder)


def _world(tmp_path, **kw):
    cfg = SyntheticWorldConfig(n_items=400, n_users=60, seed=3, **kw)
    return make_synthetic_world(cfg, encoder=HashingEncoder(dim=64), cache_dir=tmp_path)


def _heldout_r2(x, y):
    x = np.c_[x, np.ones(len(x))]
    fit, test = slice(0, 300), slice(300, None)
    beta = np.linalg.lstsq(x[fit], y[fit], rcond=None)[0]
    return 1.0 - ((x[test] @ beta - y[test]) ** 2).mean() / y[test].var()


def test_synthetic_second_modality_is_off_by_default_and_leaves_every_other_array_unchanged(tmp_path):
    plain, image = _world(tmp_path), _world(tmp_path, image_dim=8)
    assert plain.catalog.modalities == {} and fuse_world(plain) is plain
    for name in ("embeddings", "latent", "quality", "appeal", "popularity", "genres", "is_new"):
        np.testing.assert_array_equal(getattr(plain.catalog, name), getattr(image.catalog, name))
    for name in ("embeddings", "latent", "bias", "history", "cold", "test"):
        np.testing.assert_array_equal(getattr(plain.population, name), getattr(image.population, name))
    assert image.catalog.modalities["image"].shape == (400, 8)


def test_synthetic_image_carries_hidden_quality_that_fusion_exposes(tmp_path):
    world = _world(tmp_path, image_dim=8, image_quality_corr=0.8)
    q = world.catalog.quality.astype(np.float64)
    text_r2 = _heldout_r2(world.catalog.embeddings, q)
    fused_r2 = _heldout_r2(fuse_world(world).catalog.embeddings, q)
    assert fused_r2 > 0.4 and fused_r2 > text_r2 + 0.3, (text_r2, fused_r2)
    blind = fuse_world(_world(tmp_path, image_dim=8, image_quality_corr=0.0)).catalog.embeddings
    assert _heldout_r2(blind, q) < text_r2 + 0.1  # no signal in the image: fusion finds nothing


def test_synthetic_image_correlations_match_the_config(tmp_path):
    world = _world(tmp_path, image_dim=8, image_quality_corr=0.8, image_appeal_corr=0.6)
    img = world.catalog.modalities["image"].astype(np.float64)
    assert 0.5 < _heldout_r2(img, world.catalog.quality.astype(np.float64)) < 0.8  # rho_q^2 = 0.64
    assert 0.2 < _heldout_r2(img, world.catalog.appeal.astype(np.float64)) < 0.5  # rho_a^2 = 0.36
    with pytest.raises(ConfigError, match="image_dim: expected >= 2 when image_appeal_corr > 0"):
        SyntheticWorldConfig(image_dim=1, image_appeal_corr=0.5)


def test_features_section_is_typed(tmp_path):
    base = {"name": "x", "agents": [{"name": "random"}]}
    assert ExperimentConfig.model_validate(base).features.fuse == "all"
    with pytest.raises(ConfigError, match="did you mean 'weights'"):
        ExperimentConfig.model_validate({**base, "features": {"wieghts": {}}})
    with pytest.raises(ConfigError, match="other than 'text'"):
        ExperimentConfig.model_validate({**base, "features": {"fuse": ["text"]}})
    with pytest.raises(ConfigError, match="features.weights.image: expected a finite weight >= 0"):
        ExperimentConfig.model_validate({**base, "features": {"weights": {"image": -1}}})


SMALL = ["encoder=hashing", "world_config={n_items: 300, n_users: 60, image_dim: 8, image_appeal_corr: 0.6}",
         "training.total_timesteps=256", "training.num_envs=16", "training.checkpoint_every=128",
         "training.curve_users=8", "training.logging.steps=5", "training.logging.num_envs=16", "evaluation.seeds=[0, 1]",
         "evaluation.users_per_seed=8", "env.max_steps=5", "agents[3].hyperparams.epochs=1", "output.plots=false",
         "output.tensorboard=false"]


def test_shipped_multimodal_ablation_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGYM_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    sets = [x for s in SMALL for x in ("--set", s)]
    for arm, extra in (("fused", []), ("text", ["--set", "features.fuse=text"])):
        res = runner.invoke(app, ["run", str(CONFIGS / "multimodal.yaml"), "--out", str(tmp_path / arm), *sets, *extra])
        assert res.exit_code == 0, res.output
    assert "text:1, image:1 (max_dim 32, dim 384 -> 392)" in (tmp_path / "fused" / "world.json").read_text()
    assert "fusion" not in (tmp_path / "text" / "world.json").read_text()
    res = runner.invoke(app, ["compare", str(tmp_path / "text"), str(tmp_path / "fused"), "--label-a", "text",
                              "--label-b", "fused", "--metric", "all:ctr", "--metric", "all:satisfaction"])
    assert res.exit_code == 0, res.output
    assert "| ppo | all | satisfaction |" in res.output and "| ctr | all | ctr |" in res.output
