"""What counts as a secret in config, and that it is masked wherever config is shown."""

from __future__ import annotations

import json

import pytest

from microray import config as config_mod
from microray.exceptions import ConfigError
from microray.redaction import MASK, mask_urls, redact, redact_config, redacted_json
from microray.registrations import GcsStoreRegistration, OptionSpec


def test_url_passwords_are_masked_in_any_string() -> None:
    assert mask_urls("redis://user:hunter2@host:6379/0") == "redis://user:***@host:6379/0"
    assert mask_urls("redis://:hunter2@host/0") == "redis://:***@host/0"
    assert mask_urls("connect to rediss://a:b@h and http://h:80/x") == "connect to rediss://a:***@h and http://h:80/x"
    assert mask_urls("redis://host:6379/0") == "redis://host:6379/0"


def test_redact_walks_tables_and_masks_secret_looking_keys() -> None:
    cfg = {"gcs_store_options": {"url": "redis://user:hunter2@host:6379/0", "password": "hunter2", "db": 0},
           "dashboard_port": 8265, "object_store_options": {"path": "/x", "nested": [{"api_token": "t0k"}]}}
    out = redact(cfg)
    assert "hunter2" not in repr(out) and "t0k" not in repr(out)
    assert out["gcs_store_options"]["url"] == "redis://user:***@host:6379/0"
    assert out["gcs_store_options"]["password"] == MASK
    assert out["gcs_store_options"]["db"] == 0 and out["dashboard_port"] == 8265
    assert out["object_store_options"]["path"] == "/x"
    assert redact({"password": ""}) == {"password": ""}  # nothing to hide


class _Registrations:
    """What ``redact_config`` asks of the plugin manager: ``select(family, name)``."""

    def __init__(self, reg):
        self.reg = reg

    def select(self, family, name):
        if family == "gcs_store" and name == self.reg.name:
            return self.reg
        raise LookupError(name)


def test_options_marked_secret_are_masked_whatever_their_name() -> None:
    reg = GcsStoreRegistration(
        name="vault", factory=dict,
        options={"dsn": OptionSpec(str, secret=True), "region": OptionSpec(str)},
    )
    cfg = config_mod.Config(gcs_store="vault", gcs_store_options={"dsn": "s3cr3t", "region": "eu"})
    shown = redact_config(cfg, _Registrations(reg))
    assert shown["gcs_store_options"] == {"dsn": MASK, "region": "eu"}
    assert "s3cr3t" in redact_config(cfg)["gcs_store_options"]["dsn"]  # unmarked without the registration
    assert json.loads(redacted_json(cfg, _Registrations(reg)))["gcs_store_options"]["dsn"] == MASK
    assert shown["task_history_cap"] == cfg.task_history_cap  # the rest as it is


def test_a_bad_secret_option_is_refused_without_showing_it() -> None:
    reg = GcsStoreRegistration(
        name="vault", factory=dict,
        options={"dsn": OptionSpec(int, secret=True, parse=int), "url": OptionSpec(int)},
    )
    with pytest.raises(ConfigError) as err:
        reg.validate_options("gcs_store", {"dsn": "s3cr3t"})
    assert "s3cr3t" not in str(err.value) and "gcs_store_options.dsn" in str(err.value)
    with pytest.raises(ConfigError) as err:
        reg.validate_options("gcs_store", {"url": "redis://:s3cr3t@h/0"})
    assert "s3cr3t" not in str(err.value) and "redis://:***@h/0" in str(err.value)


def test_a_malformed_options_table_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        config_mod.resolve({}, environ={"MICRORAY_GCS_STORE_OPTIONS": "url=redis://:s3cr3t@h/0"})
    assert "s3cr3t" not in str(err.value) and "gcs_store_options" in str(err.value)
