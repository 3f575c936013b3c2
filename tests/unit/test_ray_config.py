"""ray_config.yaml is a real cluster-launcher config: Ray's own schema accepts it."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIG = Path(__file__).resolve().parents[2] / "ray_config.yaml"


def test_ray_config_is_valid_for_the_cluster_launcher() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    # What `ray up` does first: fill provider defaults, then check against ray-schema.json
    # (raises jsonschema.ValidationError on any unknown or bad field). No cloud calls.
    validate_config(prepare_config(config))
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["CPU"] == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(0 < t["min_workers"] <= t["max_workers"] for t in workers)
