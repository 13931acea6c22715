"""iotex-node: a small Roll-DPoS delegate node with BFT finality."""

from importlib import metadata

try:
    __version__ = metadata.version("iotex-node")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"
