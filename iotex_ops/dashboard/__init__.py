"""The dashboard: the web page a delegate team keeps open (`iotex-ops dashboard`, docs/dashboard.md).

- `views`: what each page shows, from the typed layer's records (pure: no I/O, no clock);
- `auth`: the login token, sessions, CSRF tokens, where the dashboard may listen (pure);
- `sources`: what the pages read, through the toolkit's own readers (Network/NodeClient, Prometheus,
  RunStore, alertd's /v1/state, the lab's receiver, the scheduler's state) and the actions they take;
- `app`: the aiohttp application: pages (jinja2), server-sent events, the actions, static assets.
"""

# The line `iotex-ops dashboard` prints once it serves ("dashboard: serving URL ..."): the lab waits for it. Here,
# not in server.py, so that the lab reads it without importing aiohttp and the app.
READY = "dashboard: serving"
