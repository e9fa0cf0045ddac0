"""Which keys apply: applied_config drops what a run does not read, unapplied_keys names what a user
set to no effect."""
import pytest

from grec_tf.config import MODEL_KEYS_BY_TYPE, applied_config, parse_config, unapplied_keys
from grec_tf.errors import ConfigError

TEXT = [{"name": "query", "kind": "text"}]
GREC_ONLY = {"routing", "top_k", "capacity_factor", "load_balance_weight", "z_loss_weight", "jitter",
             "route_embedding_dim", "activation"}
PLE, ESMM = {"ple_levels", "task_experts", "shared_experts"}, {"esmm"}
AITM = {"aitm_chain", "aitm_calibration_weight"}


@pytest.mark.parametrize("model_type, absent, present", [
    ("grec", PLE | ESMM | AITM, GREC_ONLY - {"capacity_factor"} | {"num_experts", "expert_hidden", "towers",
                                                                   "task_token"}),
    ("mmoe", GREC_ONLY | PLE | ESMM | AITM, {"num_experts", "expert_hidden", "towers", "task_token"}),
    ("shared_bottom", GREC_ONLY | {"num_experts"} | PLE | ESMM | AITM, {"expert_hidden", "towers", "task_token"}),
    ("ple", GREC_ONLY | {"num_experts"} | ESMM | AITM, PLE | {"expert_hidden", "towers", "task_token"}),
    # the chained types' token is the flow alone (FlowTaskEmbedding); a single-task network's is a constant
    ("esmm", GREC_ONLY | {"num_experts", "task_token"} | PLE | AITM, ESMM | {"expert_hidden", "towers"}),
    ("aitm", GREC_ONLY | {"num_experts", "task_token"} | PLE | ESMM, AITM | {"expert_hidden", "towers"}),
    ("single_task", GREC_ONLY | {"num_experts", "towers", "task_token"} | PLE | ESMM | AITM, {"expert_hidden"}),
])
def test_model_keys_by_type(model_type, absent, present):
    model = applied_config(parse_config({"model": {"type": model_type}}))["model"]
    common = {"type", "d_model", "embedding_dim", "num_heads", "sequence_blocks", "target_attention",
              "tower_units", "loss_weights", "dropout"}
    assert not absent & set(model) and present | common <= set(model)


def test_a_new_model_type_is_one_table_row(monkeypatch):
    monkeypatch.setitem(MODEL_KEYS_BY_TYPE, "dbmtl", ("num_experts", "expert_hidden"))
    config = parse_config({"model": {"type": "mmoe"}})
    config.model.type = "dbmtl"  # as if MODEL_TYPES had it too
    assert {"num_experts", "expert_hidden"} <= set(applied_config(config)["model"])
    assert "top_k" not in applied_config(config)["model"]


def test_routing_specific_keys_within_grec():
    task = applied_config(parse_config({"model": {"routing": "task_sentence"}}))["model"]
    token = applied_config(parse_config({"model": {"routing": "token"}}))["model"]
    assert "route_embedding_dim" in task and "capacity_factor" not in task
    assert "capacity_factor" in token and "route_embedding_dim" not in token


def test_piecewise_linear_edges_only_with_the_piecewise_linear_embedding():
    ple = parse_config({"model": {"numerical_embedding": "piecewise_linear", "piecewise_linear_edges": "tree"}})
    assert applied_config(ple)["model"]["piecewise_linear_edges"] == "tree"
    for other in ("linear", "periodic"):
        model = applied_config(parse_config({"model": {"numerical_embedding": other}}))["model"]
        assert "piecewise_linear_edges" not in model and model["numerical_embedding"] == other
    assert unapplied_keys(ple) == []
    wide = parse_config({"model": {"wide_logits": True, "piecewise_linear_edges": "tree"}})
    assert applied_config(wide)["model"]["piecewise_linear_edges"] == "tree" and unapplied_keys(wide) == []


def test_wide_logits_apply_to_towers_that_add_up_not_to_chained_ones():
    for model_type in ("grec", "mmoe", "shared_bottom", "ple"):
        assert applied_config(parse_config({"model": {"type": model_type, "wide_logits": True}}))["model"][
            "wide_logits"] is True
    esmm = parse_config({"model": {"type": "esmm", "wide_logits": True}})
    assert "wide_logits" not in applied_config(esmm)["model"] and unapplied_keys(esmm) == ["model.wide_logits"]
    assert not esmm.model.wide_logits_applied and not esmm.model.uses_bins


def test_text_encoder_only_with_a_text_feature_and_keys_by_encoder_type():
    assert "text_encoder" not in applied_config(parse_config({}))["model"]
    transformer = applied_config(parse_config({"features": TEXT}))["model"]["text_encoder"]
    assert set(transformer) == {"type", "vocab_size", "num_layers", "num_heads"}
    hub = applied_config(parse_config({"features": TEXT, "model": {"text_encoder": {"type": "hub",
                                                                                    "handle": "h"}}}))
    assert set(hub["model"]["text_encoder"]) == {"type", "handle", "trainable"}


@pytest.mark.parametrize("data, split_mode, kept, dropped", [
    ({"source": "telecom"}, None, {"rows", "seed"}, {"flow", "path", "valid_fraction", "test_fraction"}),
    ({"source": "telecom", "path": "data/t"}, "files", {"rows", "path"}, {"valid_fraction", "test_fraction"}),
    ({"source": "aliexpress", "path": "a.csv"}, None, {"flow", "path", "seed", "valid_fraction",
                                                       "test_fraction"}, {"rows"}),
    ({"source": "csv", "path": "d"}, "files", {"path", "seed"}, {"rows", "flow", "valid_fraction",
                                                                 "test_fraction"}),
    ({"source": "census_income", "path": "d"}, "release_test", {"valid_fraction"}, {"test_fraction"}),
    ({"source": "parquet", "path": "f.parquet"}, "split_by_group", {"valid_fraction", "test_fraction",
                                                                     "group_column"}, {"rows", "flow"}),
])
def test_data_keys_by_source_and_split_mode(data, split_mode, kept, dropped):
    applied = applied_config(parse_config({"data": data}), split_mode)["data"]
    assert kept <= set(applied) and not dropped & set(applied)


def test_unknown_split_mode_is_refused():
    with pytest.raises(ValueError, match="split_mode: expected one of"):
        applied_config(parse_config({"data": {"source": "csv"}}), "random")


def test_unapplied_keys_lists_non_default_keys_that_do_not_apply():
    config = parse_config({"data": {"source": "csv", "path": "d", "rows": 10, "flow": "NL",
                                    "valid_fraction": 0.2},
                           "model": {"type": "mmoe", "top_k": 2, "jitter": 0.1, "num_experts": 4,
                                     "text_encoder": {"num_layers": 3}}})
    assert unapplied_keys(config) == ["data.rows", "data.flow", "model.top_k", "model.jitter",
                                      "model.text_encoder.num_layers"]
    assert unapplied_keys(config, "files") == ["data.rows", "data.flow", "data.valid_fraction", "model.top_k",
                                               "model.jitter", "model.text_encoder.num_layers"]


def test_defaults_and_shipped_style_configs_have_no_unapplied_keys():
    assert unapplied_keys(parse_config({})) == []
    assert unapplied_keys(parse_config({"features": TEXT, "model": {"text_encoder": {"num_layers": 2}}})) == []


def test_applied_config_keeps_every_section_and_the_features():
    config = parse_config({"features": TEXT})
    applied = applied_config(config)
    assert set(applied) == set(config.to_dict())
    assert applied["features"] == config.to_dict()["features"]
    assert config.model.text_encoder.num_layers == 1  # the config itself is left untouched


def test_top_k_is_checked_only_for_grec():
    """MMoE runs all its experts: a default top_k above a small num_experts must not block it, and a run's
    resolved config (which drops top_k for MMoE) must load again."""
    config = parse_config({"model": {"type": "mmoe", "num_experts": 2}})
    assert config.model.num_experts == 2
    assert parse_config(applied_config(config)).model.num_experts == 2
    with pytest.raises(ConfigError, match="model.top_k: expected 1 <= top_k <= num_experts"):
        parse_config({"model": {"type": "grec", "num_experts": 2}})
