"""Protocol numbers. Changing any of them changes consensus: all delegates must agree."""

# Amounts are integers of the smallest unit ("rau"; 1 IOTX = 10**18 rau). The cap keeps every sum far
# from any fixed-width overflow a client implementation might have, and rejects absurd inputs early.
MAX_AMOUNT = 2**128 - 1
# A nonce is a 64-bit counter per sender, starting at 1 for the first action.
MAX_NONCE = 2**63 - 1
# Candidate names follow IoTeX: 1-12 lowercase letters and digits.
CANDIDATE_NAME_MAX = 12
# Longest stake lock, in days (IoTeX: 1050).
MAX_STAKE_DAYS = 1050
SECONDS_PER_DAY = 86400
# Wire limits: a block carries at most this many actions, and an action at most this many bytes.
MAX_BLOCK_ACTIONS = 10000
MAX_ACTION_BYTES = 4096
# Protocol versions this source tree can execute. Releases may declare a subset (issue 3).
SUPPORTED_PROTOCOLS = (1, 2)
# Clock drift a validator tolerates on a proposed block's timestamp.
MAX_CLOCK_DRIFT_MS = 2000
