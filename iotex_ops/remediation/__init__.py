"""Automated remediation: `iotex-ops alertd` receives Alertmanager's webhooks, pages through PagerDuty and runs
remediation runbooks under a policy (policy), keeping its state in SQLite (store) so a restart repeats nothing."""
