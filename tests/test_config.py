"""Recipes: strict loading, overrides, extends, task-specific sections."""

from __future__ import annotations

import pytest

from memnets.config import (
    ConfigError,
    OptimizerConfig,
    build_section,
    dump_config,
    load_raw,
    recipe_names,
)
from memnets.tasks.memory import MemoryDataConfig, MemoryModelConfig
from memnets.tasks.recipes import from_dict, load_config


def test_shipped_recipe_loads_with_task_sections():
    c = load_config("adding")
    assert c.task == "adding"
    assert isinstance(c.data, MemoryDataConfig) and c.data.T == 100
    assert isinstance(c.model, MemoryModelConfig) and c.model.cell == "lstm"
    assert "adding" in recipe_names()


def test_overrides_are_typed_and_nested():
    c = load_config("adding", ["model.hidden_size=7", "optimizer.lr=1e-2", "data.T=5",
                               "model.cell_options={nonlinearity: relu}",
                               "optimizer.betas=[0.8, 0.9]", "trainer.max_steps=null"])
    assert c.model.hidden_size == 7 and c.optimizer.lr == pytest.approx(0.01)
    assert c.data.T == 5 and c.model.cell_options == {"nonlinearity": "relu"}
    assert c.optimizer.betas == [0.8, 0.9] and c.trainer.max_steps is None


@pytest.mark.parametrize("override, words", [
    ("model.hidden=3", ["unknown key 'hidden'", "hidden_size", "valid keys"]),
    ("data.TT=3", ["unknown key 'TT'", "train_size"]),
    ("trainer.bogus=1", ["unknown key 'bogus'", "max_epochs"]),
])
def test_unknown_key_names_key_and_valid_ones(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("adding", [override])
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("override, words", [
    ("model.hidden_size=abc", ["model.hidden_size", "expected int", "'abc'"]),
    ("trainer.max_steps=1.5", ["trainer.max_steps", "expected int or null"]),
    ("optimizer.name=sgdd", ["optimizer.name", "'sgd'"]),
    ("trainer.deterministic=3", ["trainer.deterministic", "expected bool"]),
    ("optimizer.lr=fast", ["optimizer.lr", "expected float"]),
    ("data.T=0", ["data", "T: expected a positive integer"]),
])
def test_wrong_type_names_field_and_type(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("adding", [override])
    for w in words:
        assert w in str(e.value)


def test_top_level_and_task_errors():
    with pytest.raises(ConfigError, match="unknown key 'modle'.*did you mean 'model'"):
        from_dict({"task": "adding", "modle": {}})
    with pytest.raises(ConfigError, match="unknown task 'nope'.*adding"):
        from_dict({"task": "nope"})
    with pytest.raises(ConfigError, match="expected 'task: NAME'"):
        from_dict({"model": {}})
    with pytest.raises(ConfigError, match="model.cell: expected one of elman.*got 'grid_lstm'"):
        from_dict({"task": "adding", "model": {"cell": "grid_lstm"}})  # a multi-layer cell
    with pytest.raises(ConfigError, match="unknown recipe 'addng'.*did you mean adding"):
        load_config("addng")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config("adding", ["model.hidden_size"])


def test_int_is_accepted_for_float_but_not_bool():
    assert build_section(OptimizerConfig, {"lr": 1}, "o").lr == 1.0
    with pytest.raises(ConfigError, match="expected float"):
        build_section(OptimizerConfig, {"lr": True}, "o")


def test_user_recipe_file_extends_shipped_and_round_trips(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("extends: adding\ndata: {T: 17}\nmodel: {cell: gru}\n")
    raw = load_raw(str(p))
    assert raw["data"]["T"] == 17 and raw["data"]["batch_size"] == 50  # merged
    c = load_config(str(p))
    assert c.model.cell == "gru" and c.optimizer.name == "adam"
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(c))
    assert load_config(str(again)) == c


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("task: adding\ndata:\n  T: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(str(p))


def test_recipe_names_are_hyphenated_and_old_underscores_still_load():
    from memnets.config import recipe_names, recipe_path

    assert all("_" not in name for name in recipe_names())
    assert recipe_path("ptb_small") == recipe_path("ptb-small")
    assert recipe_path("sst2_bilstm_phrases").name == "sst2-bilstm-phrases.yaml"
