"""The one YAML reader (recgym.common.yamlio) and its use by experiment configs and --set overrides."""

from __future__ import annotations

import codecs
import re
import time
from pathlib import Path

import pytest

from recgym.common.config import ConfigError
from recgym.common.yamlio import MAX_BYTES, MAX_NODES, load_yaml_file, load_yaml_text
from recgym.experiments.config import load_config

REPO = Path(__file__).resolve().parents[1]
OK = "name: t\nagents:\n  - name: random\n"


def _bomb(depth: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(OK + "env:\n  slate_size: 5\n  max_steps: 9\n  slate_size: 6\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml: duplicate key 'slate_size' at lines 5 and 7; expected each key "
                                          r"once per mapping, received it twice"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"duplicate key 'name' at lines 1 and 4"):
        load_yaml_text(OK + "name: u\n", "x")
    with pytest.raises(ConfigError, match=r"--set env: duplicate key 'a' at line 1, columns 2 and 8"):
        load_config(raw={"name": "t", "agents": [{"name": "random"}]}, overrides=["env={a: 1, a: 2}"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("depth", [7, 9, 30])
def test_alias_bombs_fail_fast(depth):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"expected at most {MAX_NODES:,} values once aliases"):
        load_yaml_text(_bomb(depth), "bomb.yaml")
    assert time.perf_counter() - t0 < 5  # a hang bound, not a speed target: it takes milliseconds


def test_recursive_aliases_and_deep_nesting_refused():
    with pytest.raises(ConfigError, match="an alias to one of its own enclosing values"):
        load_yaml_text("a: &x [1, *x]\n", "r.yaml")
    with pytest.raises(ConfigError, match="expected at most 64 nested levels"):
        load_yaml_text("a: " + "[" * 100 + "]" * 100, "d.yaml")


def test_anchors_merges_and_reuse_still_work_and_are_copies():
    data = load_yaml_text("base: &b {x: 1, y: [1, 2]}\nc: {<<: *b, x: 3}\nd: *b\n", "m.yaml")
    assert data["c"] == {"x": 3, "y": [1, 2]} and data["d"] == {"x": 1, "y": [1, 2]}
    data["d"]["y"].append(3)
    assert data["base"]["y"] == [1, 2] and data["c"]["y"] == [1, 2]  # no two uses share one list
    cfg = load_config(raw=load_yaml_text(
        "name: t\nagents:\n  - {name: ppo, label: a, hyperparams: &hp {hidden: 8}}\n"
        "  - {name: ppo, label: b, hyperparams: *hp}\n", "a.yaml"), overrides=["agents[1].hyperparams.hidden=16"])
    assert cfg.agents[0].hyperparams == {"hidden": 8} and cfg.agents[1].hyperparams == {"hidden": 16}


@pytest.mark.parametrize(("data", "pattern"), [
    (OK.encode("utf-16"), r"expected UTF-8 text, received UTF-16 \(little-endian byte-order mark\)"),
    (codecs.BOM_UTF16_BE + OK.encode("utf-16-be"), r"received UTF-16 \(big-endian byte-order mark\)"),
    (OK.encode("utf-16-le"), r"received UTF-16 text without a byte-order mark"),
    (OK.encode("utf-32"), r"received UTF-32"),
    ((OK + "description: café\n").encode("latin-1"), r"received byte 0xE9 at line 4, column 17 that is not UTF-8"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"received binary data \(a NUL byte at offset 8\)"),
])
def test_non_utf8_files_refused_with_the_encoding_named(tmp_path, data, pattern):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_utf8_bom_and_crlf_accepted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(codecs.BOM_UTF8 + OK.replace("\n", "\r\n").encode())
    assert load_config(path).name == "t"


@pytest.mark.parametrize(("text", "pattern"), [
    ("- a\n- b\n", r"expected a mapping \(key: value lines\) at the top level, received a list"),
    ("42\n", r"received a int"),
    ("", r"expected a mapping with at least 'name' and 'agents', received an empty file"),
    ("# only a comment\n", r"received an empty file"),
    (OK + "---\nname: u\n", r"line 4, column 1: expected valid YAML, received an error: expected a single document"),
    ("name: !!python/object/apply:os.system ['true']\n", r"could not determine a constructor"),
])
def test_top_level_shape_and_unsafe_tags(tmp_path, text, pattern):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_file_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match=rf"expected a YAML file of at most {MAX_BYTES // 1024} KiB, received "
                                          rf"{MAX_BYTES + 1:,} bytes"):
        load_yaml_file(path)


def test_set_values_use_the_same_reader():
    base = {"name": "t", "agents": [{"name": "random"}]}
    with pytest.raises(ConfigError, match=r"--set description, line 1.*expected valid YAML.*found undefined alias"):
        load_config(raw=base, overrides=["description=*nope"])
    with pytest.raises(ConfigError, match=r"--set: expected key=value with a dotted key .* received key 'training\.\.x'"):
        load_config(raw=base, overrides=["training..x=1"])
    with pytest.raises(ConfigError, match=r"--set agents\[3\]\.name: expected an index into a list at agents\[3\], "
                                          r"received \[3\] for a list of 1"):
        load_config(raw=base, overrides=["agents[3].name=ppo"])


# Files that parse YAML (every other module goes through recgym.common.yamlio). The runner's read of an
# existing run's config.yaml is switched to load_yaml_file when the safe-io branch (which owns runner.py) lands.
PENDING_SWITCH: set[str] = set()


def test_yaml_is_parsed_only_through_yamlio():
    direct = set()
    for folder in ("recgym", "envs", "agents", "encoders", "experiments"):
        for path in (REPO / folder).rglob("*.py"):
            if re.search(r"\byaml\.(safe_load|load|full_load|unsafe_load|compose)\b", path.read_text(encoding="utf-8")):
                direct.add(str(path.relative_to(REPO)))
    assert direct <= PENDING_SWITCH, f"parse YAML with recgym.common.yamlio, not PyYAML directly: {direct - PENDING_SWITCH}"
