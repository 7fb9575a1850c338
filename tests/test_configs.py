from pathlib import Path

import pytest

from metassl import config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_is_valid(path):
    cfg = config.load_config(path, [])
    assert cfg.method_cfg is not None
    assert config.load_yaml(path).get("method", "supervised") == cfg.method
