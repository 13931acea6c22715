"""Mitogen for Ansible without its CPU pinning.

Mitogen pins Ansible's processes to CPUs (ansible_mitogen.affinity): on a machine with fewer than 4 CPUs its
connection multiplexer gets CPU 0 and everything else CPU 1 -- the top-level process, every worker, and every
process a target interpreter of a `local` connection starts, which inherits the mask: in the local lab, the
hosts' modules, supervisord and the nodes it starts. On this project's 2-core machines a whole lab then ran
on one core while the other idled (docs/performance.md: without it lab up reaches its first block 2.0x
sooner, and 20 tasks on 4 local hosts run 1.6x faster). Nothing can switch it off but replacing the
policy before Mitogen's strategy starts, which is what this module does; it has no other effect. Over SSH
the hosts' processes are the remote sshd's children and never were pinned.
"""

from __future__ import annotations

from typing import Any


def strategy_module(base: str) -> Any:
    """Mitogen's StrategyModule over Ansible's `base` strategy (free, linear), with the no-op pinning policy."""
    import ansible_mitogen.affinity

    ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()  # the base class pins nothing
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy

    from iotex_ops.ansible_plugins.strategy._wakeup import WakeOnResults

    Base = ansible_mitogen.loaders.strategy_loader.get(base, class_only=True)

    class StrategyModule(WakeOnResults, ansible_mitogen.strategy.StrategyMixin, Base):  # type: ignore[misc,valid-type]
        pass

    return StrategyModule
