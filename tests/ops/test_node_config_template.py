"""The node_config role's config.toml template with the flood limits: left out by default (a release older than
the keys would refuse them), rendered as the node reads them when set."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jinja2
import yaml

from iotex_node import config

ROLES = Path(__file__).resolve().parents[2] / "playbooks" / "roles"


def render(**overrides: Any) -> dict[str, Any]:
    defaults = yaml.safe_load((ROLES / "node" / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLES / "node_config" / "templates"), autoescape=False)  # noqa: S701 - TOML, not HTML
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = bool
    values = {**defaults, "ansible_managed": "test", "node_name": "n0", "node_listen_host": "127.0.0.1",
              "node_peers": [], **overrides}  # fmt: skip
    return tomllib.loads(env.get_template("config.toml.j2").render(**values))


def test_the_flood_limits_are_left_out_by_default() -> None:
    doc = render()
    assert "max_connections" not in doc["api"] and "header_timeout_s" not in doc["api"]
    assert "max_handshakes" not in doc["p2p"] and "handshake_timeout_s" not in doc["p2p"]


def test_the_flood_limits_render_as_the_node_reads_them(tmp_path: Path) -> None:
    doc = render(
        node_api_max_connections=512, node_api_max_connections_per_client=16, node_api_header_timeout_s=5,
        node_api_body_timeout_s="7.5", node_p2p_max_handshakes=32, node_p2p_max_handshakes_per_ip=4,
        node_p2p_max_inbound_per_ip=2, node_p2p_handshake_timeout_s=3,
    )  # fmt: skip
    (tmp_path / "config.toml").write_text(_dump(doc))
    cfg = config.load(tmp_path)
    assert (cfg.max_connections, cfg.max_connections_per_client, cfg.header_timeout_s, cfg.body_timeout_s) == (512, 16, 5.0, 7.5)
    assert (cfg.max_handshakes, cfg.max_handshakes_per_ip, cfg.max_inbound_per_ip, cfg.handshake_timeout_s) == (32, 4, 2, 3.0)


def _dump(doc: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(doc)
