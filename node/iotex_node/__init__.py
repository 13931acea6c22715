"""iotex-node: a small Roll-DPoS delegate node with BFT finality."""

from iotex_node.release import current as _current_release

# The release this copy is: from the package's release.json (rewritten in every release artifact), else
# from the installed distribution's metadata. See iotex_node.release.
__version__ = _current_release().version
