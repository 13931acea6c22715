"""Automated remediation: `iotex-ops alertd` receives Alertmanager's webhooks, pages through PagerDuty and runs
remediation runbooks under a policy (policy), keeping its state in SQLite (store) so a restart repeats nothing."""

from pathlib import Path

# The policy alertd runs unless told otherwise (policy.py reads it; the command line names it in its --help).
DEFAULT_POLICY = Path(__file__).with_name("default_policy.yml")
