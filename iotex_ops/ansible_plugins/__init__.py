"""Ansible plugins the toolkit's own runs use (ANSIBLE_STRATEGY_PLUGINS, iotex_ops.ansible.speed_env)."""
