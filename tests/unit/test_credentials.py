"""The cluster token and the tls config key, without processes or sockets: what a
Credentials shows and refuses, and what the tls key accepts."""

from __future__ import annotations

import stat

import pytest

from microray import rpc, session
from microray.config import resolve
from microray.exceptions import ConfigError


def test_credentials_never_print_the_token() -> None:
    creds = rpc.Credentials("s3cret-token-value")
    assert "s3cret" not in repr(creds) and "s3cret" not in str(creds)
    assert creds.metadata == ((rpc.TOKEN_KEY, "s3cret-token-value"),)
    assert creds.metadata is creds.metadata  # built once, shared by every call


@pytest.mark.parametrize("token", ["", None])
def test_a_token_is_required(token) -> None:
    with pytest.raises(ValueError, match="cluster token is required"):
        rpc.Credentials(token)  # type: ignore[arg-type]


def test_token_file_is_private(tmp_path) -> None:
    token = session.new_token()
    assert len(token) >= 32 and token != session.new_token()
    path = session.write_token(str(tmp_path), token)
    assert stat.S_IMODE((tmp_path / session.TOKEN_FILE).stat().st_mode) == 0o600
    assert session.read_token(str(tmp_path)) == token
    (tmp_path / session.TOKEN_FILE).chmod(0o644)
    with pytest.raises(PermissionError, match="mode 0600"):
        session.read_token(str(tmp_path))
    assert path.endswith(session.TOKEN_FILE)


def test_tls_key_accepts_a_table_of_files(tmp_path) -> None:
    tls = {"cert_file": "a.crt", "key_file": "a.key", "ca_file": "ca.crt", "require_client_cert": True,
           "server_name": "node"}
    assert resolve({"tls": tls}, cwd=tmp_path, environ={}).tls == tls
    assert resolve(cwd=tmp_path, environ={"MICRORAY_TLS": '{"cert_file": "c", "key_file": "k"}'}).tls == {
        "cert_file": "c", "key_file": "k"}
    assert resolve(cwd=tmp_path, environ={}).tls == {}


@pytest.mark.parametrize("tls, words", [
    ({"cert": "a"}, "a table of cert_file"),
    ({"cert_file": 5, "key_file": "k"}, "a table of cert_file"),
    ({"cert_file": "c", "key_file": "k", "require_client_cert": "yes"}, "a table of cert_file"),
    ({"cert_file": "c"}, "needs both cert_file and key_file"),
    ({"cert_file": "c", "key_file": "k", "require_client_cert": True}, "needs ca_file"),
    ("on", "a table/dict"),
])
def test_tls_key_refuses_nonsense(tmp_path, tls, words) -> None:
    with pytest.raises(ConfigError, match=words):
        resolve({"tls": tls}, cwd=tmp_path, environ={})


def test_the_token_variable_is_not_a_config_key(tmp_path) -> None:
    assert resolve(cwd=tmp_path, environ={"MICRORAY_TOKEN": "x"}) == resolve(cwd=tmp_path, environ={})
