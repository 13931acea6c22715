"""Mitogen for Ansible's strategies, without its CPU pinning (_unpinned.py says why)."""
