"""Keys, addresses and keystores."""

from iotex_node.crypto.keys import PrivateKey, address_from_pubkey, recover_address, sha256, valid_address

__all__ = ["PrivateKey", "address_from_pubkey", "recover_address", "sha256", "valid_address"]
