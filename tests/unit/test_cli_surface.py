"""The CLI's surface, without a cluster: every option says what it does, filters that
cannot match are refused, and the forms Ray users type are there."""

from __future__ import annotations

import os

import click
import pytest
from click.testing import CliRunner

from microray.cli import cli
from microray.util import state


def _walk(group: click.Command, path: str = "microray"):
    yield path, group
    if isinstance(group, click.Group):
        for name, sub in group.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_command_and_option_has_help():
    missing = []
    for path, cmd in _walk(cli):
        if not (cmd.help or cmd.short_help):
            missing.append(f"{path} (the command)")
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{path} {param.opts[0]}")
    assert not missing, f"options without help text: {missing}"


def test_start_has_rays_flags():
    opts = {o for p in cli.commands["start"].params for o in getattr(p, "opts", [])}
    assert {"--dashboard-host", "--dashboard-port", "--temp-dir", "--scheduling-policy-option"} <= opts


def test_no_later_issue_in_help():
    for path, cmd in _walk(cli):
        text = " ".join([cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]).lower()
        assert "issue" not in text, f"{path} speaks of issues: {text}"


@pytest.mark.parametrize("flt", ["nme=x", "bogus=1"])
def test_unknown_filter_key_is_a_usage_error_listing_the_keys(flt):
    result = CliRunner().invoke(cli, ["list", "tasks", "--filter", flt, "--address", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert "valid keys" in result.output and "func_or_class_name" in result.output and "state" in result.output
    assert "0 tasks" not in result.output


def test_filter_enum_values_are_case_insensitive():
    assert state.check_filters("tasks", [("state", "=", "finished")]) == [("state", "=", "FINISHED")]
    assert state.check_filters("tasks", [("type", "!=", "normal_task")]) == [("type", "!=", "NORMAL_TASK")]
    assert state.check_filters("jobs", [("status", "=", "Running")]) == [("status", "=", "RUNNING")]
    assert state.check_filters("nodes", [("is_head_node", "=", "true")]) == [("is_head_node", "=", "True")]
    assert state.check_filters("tasks", [("name", "=", "MixedCase")]) == [("name", "=", "MixedCase")]


@pytest.mark.parametrize("kind", sorted(state.FILTER_KEYS))
def test_state_api_refuses_unknown_keys(kind):
    with pytest.raises(state.InvalidFilterError, match="valid keys"):
        getattr(state, f"list_{kind}")(address="127.0.0.1:1", filters=[("nme", "=", "x")])


def test_state_api_refuses_unknown_operators():
    with pytest.raises(state.InvalidFilterError, match="'=' or '!='"):
        state.check_filters("tasks", [("state", ">", "x")])


def test_no_cluster_error_names_the_cli_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("MICRORAY_SESSION_ROOT", str(tmp_path))  # an empty root: no cluster here
    for args in (["list", "nodes"], ["status"], ["job", "list"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert "--address" in result.output and "address=" not in result.output, result.output


def test_formats_include_yaml():
    for name in ("list", "summary", "memory"):
        fmt = next(p for p in cli.commands[name].params if p.name == "fmt")
        assert "yaml" in fmt.type.choices


def test_session_root_of_another_user_falls_back_to_a_per_user_root(tmp_path):
    from microray import config as config_mod
    from microray import session

    base = str(tmp_path / "microray-sessions")
    assert config_mod.default_session_root(base) == base  # not there: ours to create
    session.ensure_root(base)
    assert config_mod.default_session_root(base) == base  # ours
    other_uid = os.getuid() + 4242  # as seen by that user: the folder belongs to someone else
    alt = config_mod.default_session_root(base, uid=other_uid)
    assert alt == f"{base}-{other_uid}"


def test_default_session_root_is_resolved_through_the_fallback(monkeypatch):
    from microray import config as config_mod

    monkeypatch.delenv("MICRORAY_SESSION_ROOT", raising=False)
    monkeypatch.setattr(config_mod, "default_session_root", lambda: "/tmp/microray-sessions-elsewhere")
    assert config_mod.resolve({}).session_root == "/tmp/microray-sessions-elsewhere"
    assert config_mod.resolve({"session_root": "/x"}).session_root == "/x"
