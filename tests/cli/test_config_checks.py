"""services.config: one name per setting (flag, file key, env var), range checks, closest-key suggestions."""

from __future__ import annotations

import pytest

from lowlat.services.config import ConfigError, check_value, load_config


def test_flag_names_are_config_keys_and_env_vars(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("duration = 1.5\nsnapshot_interval = 0.25\nlog_format = 'text'\nconnect_timeout = 3\n")
    c = load_config(path=str(f), env={})
    assert (c.duration_s, c.snapshot_interval_s, c.log_json, c.connect_timeout_s) == (1.5, 0.25, False, 3.0)
    c = load_config(env={"LOWLAT_DURATION": "2", "LOWLAT_LOG_FORMAT": "json"})
    assert c.duration_s == 2.0 and c.log_json is True
    assert load_config(env={"LOWLAT_DURATION_S": "4"}).duration_s == 4.0  # the field name still works


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("batch_max", "0", ">= 1 and <= 1048576"), ("reject_ratio", "2", ">= 0 and <= 1"),
    ("duration_s", "0", "> 0"), ("rate", "0", "> 0"), ("symbols", "", "at least one symbol"),
    ("symbols", "AAPL,MS FT", "not a symbol"), ("symbols", "A.B", "not a symbol"),
    ("metrics_port", "65536", "<= 65535"), ("batch_max", 2.5, "integer"), ("rate", "nan", "NaN"),
    ("publish_results", "maybe", "true/false"), ("mode", "burst", "request, pipeline"),
    ("transport", "nats//x", "expected scheme://"), ("transport", "natz://x", "did you mean nats://"),
    ("queue", "a b", "not a subject"),
])
def test_values_are_range_checked(field, value, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace("+", r"\+")):
        check_value(field, value)


def test_unknown_key_suggests_the_closest(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[validator]\nbatchmax = 3\n")
    with pytest.raises(ConfigError, match=r"\[validator\]: unknown config key 'batchmax'; did you mean 'batch_max'"):
        load_config("validator", path=str(f), env={})
    with pytest.raises(ConfigError, match="did you mean 'duration'"):
        load_config(env={}, overrides={"durration": 1})


def test_file_errors_name_the_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("rate = \n")
    with pytest.raises(ConfigError, match="broken.toml: TOML syntax error"):
        load_config(path=str(f), env={})
    with pytest.raises(ConfigError, match="config file not found: .*missing.toml"):
        load_config(env={"LOWLAT_CONFIG": str(tmp_path / "missing.toml")})
    f.write_text("min_qty = 10\nmax_qty = 5\n")
    with pytest.raises(ConfigError, match="min_qty"):
        load_config(path=str(f), env={})
