"""A test inventory for the playbooks: delegate "hosts" that are directories under a tmp dir, reached with
`ansible_connection: local`, a genesis and keys from `iotex_node.testnet.generate`, and release artifacts
built with `iotex_node.artifact.build`. Stops every supervisord (and node) it started, by pidfile."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from iotex_node import artifact
from iotex_node.testnet import TestnetSpec, generate
from iotex_ops.lab.daemons import kill_pidfile
from iotex_ops.lab.lab import host_interpreter

BUILD_TIME = 1_700_000_000


@dataclass(frozen=True)
class PlaybookLab:
    root: Path
    inventory: Path
    dist: Path
    testnet: Path
    hosts: dict[str, Path]  # host name -> host directory
    api_ports: dict[str, int]
    monitoring_dir: Path

    def secrets(self) -> list[str]:
        """Every secret text the inventory's hosts receive: keystore passwords, admin tokens, node keys."""
        out: list[str] = []
        for name in self.hosts:
            home = self.testnet / name
            out.append((home / "keystore.pass").read_text().strip())
            out.append((home / "admin.token").read_text().strip())
            out.append(json.loads((home / "node_key.json").read_text())["secret"])
        return out

    def home(self, host: str) -> Path:
        return self.hosts[host] / "node"

    def stop_all(self) -> None:
        for d in self.hosts.values():
            kill_pidfile(d / "supervisor" / "supervisord.pid", ("supervisord",))
        for d in self.hosts.values():
            kill_pidfile(d / "node" / "node.pid", ("iotex_node", "iotex-node"))


def make_lab(root: Path, delegates: int = 2, versions: tuple[str, ...] = ("1.0.0",)) -> PlaybookLab:
    root.mkdir(parents=True, exist_ok=True)
    testnet = root / "testnet"
    generate(TestnetSpec(delegates=delegates, out=testnet, block_interval_ms=500))
    manifest = json.loads((testnet / "testnet.json").read_text())
    dist = root / "dist"
    dist.mkdir()
    for v in versions:
        artifact.build(v, (1,), dist, build_time=BUILD_TIME)
    hosts: dict[str, Path] = {}
    api_ports: dict[str, int] = {}
    host_vars: dict[str, dict[str, object]] = {}
    for node in manifest["nodes"]:
        name = node["name"]
        d = root / "hosts" / name
        hosts[name] = d
        api_ports[name] = int(node["api"].rsplit(":", 1)[1])
        src = testnet / name
        host_vars[name] = {
            # each host its own path to the modules' Python: its own Mitogen interpreter, as in the lab
            "ansible_python_interpreter": str(host_interpreter(d)),
            "iotex_host_dir": str(d),
            "iotex_releases_root": str(d / "opt" / "iotex"),
            "iotex_node_home": str(d / "node"),
            "iotex_log_dir": str(d / "log"),
            "node_p2p_port": int(node["p2p"].rsplit(":", 1)[1]),
            "node_api_port": api_ports[name],
            "node_keystore_src": str(src / "keystore.json"),
            "node_password_file_src": str(src / "keystore.pass"),
            "node_key_src": str(src / "node_key.json"),
            "node_admin_token_src": str(src / "admin.token"),
        }
    monitoring_dir = root / "hosts" / "mon" / "monitoring"
    doc = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "iotex_python": sys.executable,  # the node's (the toolkit's venv), not the hosts' module Python
                "node_service_manager": "supervisord",
                "node_genesis_src": str(testnet / "genesis.json"),
                "node_release_dir": str(dist),
                "node_release_version": versions[0],
                "node_advertise_host": "127.0.0.1",
            },
            "children": {
                "delegates": {"hosts": host_vars},
                "monitoring": {
                    "hosts": {
                        "mon": {
                            "iotex_host_dir": str(root / "hosts" / "mon"),
                            "monitoring_dir": str(monitoring_dir),
                            "monitoring_alertmanager": "127.0.0.1:9093",
                            "monitoring_webhook_url": "http://127.0.0.1:9000/alerts",
                        }
                    }
                },
            },
        }
    }
    inventory = root / "inventory.yml"
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    return PlaybookLab(root, inventory, dist, testnet, hosts, api_ports, monitoring_dir)
