"""The lab: a delegate network on this machine, for drills, tests and newcomers."""

from iotex_ops.lab.localnet import LocalNet, NodeProcess

__all__ = ["LocalNet", "NodeProcess"]
