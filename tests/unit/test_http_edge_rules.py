"""The edge's pure rules: which path needs what, where a key is read from, which origins may open sockets,
and when AUTH=off refuses to start."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from services.accounts.options import AccountsOptions
from services.envvars import ConfigError
from services.http.edge import _credentials, origin_allowed
from services.http.parts import Access, Part, Policy


def test_access_is_deny_by_default_and_the_longest_prefix_decides() -> None:
    policy = Policy.of(
        [
            Part("a", [], access={"/health": Access.PUBLIC, "/app/*": Access.PUBLIC}),
            Part(
                "b",
                [],
                access={"/metrics": Access.OPERATOR, "/app/admin/*": Access.OPERATOR},
                orders=frozenset({"/x"}),
            ),
        ]
    )
    assert policy.access("/health") is Access.PUBLIC
    assert policy.access("/health/") is Access.ACCOUNT
    assert policy.access("/app/app.js") is Access.PUBLIC
    assert policy.access("/app/admin/x") is Access.OPERATOR
    assert policy.access("/metrics") is Access.OPERATOR
    assert policy.access("/api/orders") is Access.ACCOUNT
    assert policy.access("/anything-new") is Access.ACCOUNT
    assert policy.orders == {"/x"}


def _h(**headers: str) -> Headers:
    return Headers({k.replace("_", "-"): v for k, v in headers.items()})


def test_the_key_comes_from_the_bearer_header_or_a_websocket_subprotocol() -> None:
    assert _credentials(_h(authorization="Bearer k1"), "http") == ("k1", None)
    assert _credentials(_h(authorization="bearer   k1 "), "http") == ("k1", None)
    assert _credentials(_h(authorization="Basic k1"), "http") == (None, None)
    assert _credentials(_h(sec_websocket_protocol="oee.v1, bearer.k2"), "http") == (None, None)
    assert _credentials(_h(sec_websocket_protocol="oee.v1, bearer.k2"), "websocket") == ("k2", "oee.v1")
    assert _credentials(_h(sec_websocket_protocol="bearer.k2"), "websocket") == ("k2", None)
    both = _h(authorization="Bearer k1", sec_websocket_protocol="oee.v1, bearer.k2")
    assert _credentials(both, "websocket") == ("k1", "oee.v1")


def test_origins() -> None:
    assert origin_allowed(_h(host="api:3000"), ())  # no Origin: not a browser
    assert origin_allowed(_h(host="api:3000", origin="http://api:3000"), ())
    assert origin_allowed(_h(host="API:3000", origin="https://api:3000/"), ())
    assert not origin_allowed(_h(host="api:3000", origin="http://api:3001"), ())
    assert not origin_allowed(_h(host="api:3000", origin="https://evil.example"), ())
    assert not origin_allowed(_h(host="api:3000", origin="null"), ())
    assert origin_allowed(_h(host="api:3000", origin="https://desk.example"), ("https://desk.example",))
    assert origin_allowed(_h(host="api:3000", origin="https://any.example"), ("*",))


def test_auth_mode_and_origins_from_the_environment() -> None:
    assert AccountsOptions.from_env({}).auth == "off"
    options = AccountsOptions.from_env(
        {"AUTH": "keys", "WS_ALLOWED_ORIGINS": "https://A.example/, https://b.example"}
    )
    assert options.auth == "keys" and options.ws_origins == ("https://a.example", "https://b.example")
    with pytest.raises(ConfigError, match="AUTH='maybe' must be keys or off"):
        AccountsOptions.from_env({"AUTH": "maybe"})
    with pytest.raises(ConfigError, match="AUTH_CACHE_TTL_MS"):
        AccountsOptions.from_env({"AUTH_CACHE_TTL_MS": "60000"})  # more than 5 s would break the promise


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_auth_off_on_loopback_is_fine(host: str) -> None:
    AccountsOptions(auth="off").check_exposure("HOST", host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "api.example.com"])
def test_auth_off_on_another_address_refuses_to_start(host: str) -> None:
    with pytest.raises(ConfigError, match=f"AUTH=off on HOST={host} would let anyone"):
        AccountsOptions(auth="off").check_exposure("HOST", host)
    AccountsOptions(auth="keys").check_exposure("HOST", host)
