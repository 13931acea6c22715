"""The client's one exception root: what was wrong, a stable code for `--json`, and the exit status.

Exit statuses (docs/client.md): 0 done; 1 not confirmed (declined, or no terminal to ask and no --yes);
2 refused before anything was sent (bad input, unknown alias, bad address, wrong password, balance too low,
the node refused or did not answer); 3 sent, but it failed on chain or was not final in time.
"""

from __future__ import annotations

from iotex_ops.errors import OpsError

EXIT_NOT_CONFIRMED = 1
EXIT_REFUSED = 2
EXIT_NOT_DONE = 3


class ClientError(OpsError):
    """A client command could not do what was asked. `code` is stable (scripts match on it)."""

    def __init__(self, message: str, code: str = "refused", exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code
        self.emitted = False  # with --json: already part of the one object the command printed

    def to_json(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": str(self), "exit_code": self.exit_code}}
