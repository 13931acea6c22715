"""The api_proxy role's nginx config as rendered from its defaults (unit tier: no process): per-client rate
and request limits, 429 and 503 with Retry-After, body size and timeouts, the node's API as the upstream."""

from __future__ import annotations

import re
from typing import Any

import jinja2
import jinja2.meta

from iotex_ops import content


def _render(**hostvars: Any) -> str:
    rv = content.RoleVars(
        {"inventory_hostname": "node3", "ansible_host": "10.247.0.5", "ansible_managed": "managed", **hostvars},
        content.role_defaults(),
    )
    src = (content.roles_dir() / "api_proxy" / "templates" / "nginx.conf.j2").read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - a config, not HTML

    names = jinja2.meta.find_undeclared_variables(env.parse(src))
    return env.from_string(src).render({n: rv[n] for n in names})


def test_the_defaults_limit_each_client_and_answer_429_and_503_with_retry_after() -> None:
    conf = _render()
    assert "limit_req_zone $api_proxy_client zone=api_rate:10m rate=50r/s;" in conf
    assert "limit_conn_zone $api_proxy_client zone=api_conn:10m;" in conf
    assert "default $binary_remote_addr;" in conf  # the key: the client's address, unless exempt
    assert "limit_req zone=api_rate burst=100 nodelay;" in conf
    assert "limit_conn api_conn 32;" in conf
    assert "limit_req_status 429;" in conf and "limit_conn_status 429;" in conf
    limited = conf.split("location @limited {", 1)[1].split("}", 1)[0]
    assert "add_header Retry-After 1 always;" in limited and "return 429" in limited
    unavailable = conf.split("location @unavailable {", 1)[1].split("}", 1)[0]
    assert "add_header Retry-After 1 always;" in unavailable and "return 503" in unavailable
    assert "error_page 502 503 504 =503 @unavailable;" in conf
    # bodies: the node's own cap, kept in memory; header and body timeouts
    assert "client_max_body_size 2097152;" in conf and "client_body_buffer_size 2097152;" in conf
    assert "client_header_timeout 5s;" in conf and "client_body_timeout 10s;" in conf
    # it listens on the host's advertised address and forwards to the node's API on the address it binds
    assert "listen 10.247.0.5:14080 " in conf
    assert re.search(r"server 10\.247\.0\.5:14014 max_conns=48;", conf)
    assert "daemon off;" in conf  # in the foreground, under systemd or supervisord


def test_the_knobs_reach_the_config() -> None:
    conf = _render(
        api_proxy_rate_per_client=7,
        api_proxy_burst_per_client=3,
        api_proxy_connections_per_client=2,
        api_proxy_retry_after_s=4,
        api_proxy_max_body_bytes=1000,
        node_listen_host="0.0.0.0",  # noqa: S104 - a rendered value, nothing binds
        node_api_port=15000,
        api_proxy_port=8080,
        api_proxy_user="",
        api_proxy_exempt_clients=["10.247.0.1", "192.0.2.0/24"],
    )
    geo = conf.split("geo $api_proxy_limited {", 1)[1].split("}", 1)[0]
    assert "10.247.0.1 0;" in geo and "192.0.2.0/24 0;" in geo and "default 1;" in geo
    assert "rate=7r/s;" in conf and "burst=3 nodelay;" in conf and "limit_conn api_conn 2;" in conf
    assert conf.count("add_header Retry-After 4 always;") == 2
    assert "client_max_body_size 1000;" in conf
    assert "server 127.0.0.1:15000 " in conf  # a node on every address is reached on loopback
    assert ":8080 " in conf and "\nuser " not in conf
