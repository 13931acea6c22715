"""Action plugin of iotex_release_state: the release's state, and its install when it is not installed, in one
task (issue 13).

The module runs first, as it is, on the host. Only when the version is not installed (and `src` is given) does
this transfer the controller's artifact, and its signed manifest, to a temporary directory on the host and run
the module again with `artifact` (and `signed`) set, which installs it (playbooks/roles/iotex/library). A
converged host costs one module run; a fresh one one task, where a state task, an include, a copy and a command
task were four. In check mode nothing is transferred: the result says it would install.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase

MODULE = "iotex_release_state"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # a temporary directory only when there is something to transfer

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        src, signed_src = args.pop("src", None), args.pop("signed_src", None)
        for reserved in ("artifact", "signed"):
            if args.get(reserved):
                raise AnsibleActionFail(f"{reserved} is set by the action plugin from src/signed_src, not by the task")
        state = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        result.update(state)
        if result.get("failed") or not src or args.get("switch_back") or result.get("installed"):
            return result
        local = self._local_file(str(src), "src")
        local_signed = self._local_file(str(signed_src), "signed_src") if signed_src else None
        if self._task.check_mode:
            result.update(changed=True, active_changed=bool(args.get("activate")), msg=f"would install {os.path.basename(local)}")
            return result
        tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
        try:
            remote = self._transfer_file(local, self._connection._shell.join_path(tmpdir, os.path.basename(local)))
            install_args = {**args, "artifact": remote}
            if local_signed is not None:
                install_args["signed"] = self._transfer_file(
                    local_signed, self._connection._shell.join_path(tmpdir, os.path.basename(local_signed))
                )
            self._fixup_perms2((tmpdir, *[v for k, v in install_args.items() if k in ("artifact", "signed")]))
            result.update(self._execute_module(module_name=MODULE, module_args=install_args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(tmpdir)
        return result

    def _local_file(self, path: str, arg: str) -> str:
        try:
            found: str = self._find_needle("files", path)
        except AnsibleError as exc:  # not found where the role and the playbook look
            raise AnsibleActionFail(f"{arg} {path}: not found on the controller ({exc})") from None
        return found
