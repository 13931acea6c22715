"""iotex-ops: the operator's toolkit for a Roll-DPoS delegate network."""

__version__ = "0.1.0"
