"""Mitogen for Ansible's mitogen_free strategy without its CPU pinning (see _unpinned.py). Ansible loads this
file by path, under a name of its own; the strategy comes from the module's real name, as Mitogen's own
plugin files do it."""

from __future__ import annotations

from iotex_ops.ansible_plugins.strategy._unpinned import strategy_module

StrategyModule = strategy_module("free")
