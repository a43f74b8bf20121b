"""``microray start --labels``: a JSON object or k=v pairs; anything else is refused naming it."""

from __future__ import annotations

import click
import pytest

from microray.cli import _parse_labels


@pytest.mark.parametrize("text, labels", [
    ('{"zone": "a", "rack": 3}', {"zone": "a", "rack": "3"}),
    ("zone=a,rack=3", {"zone": "a", "rack": "3"}),
    (" zone = a , ", {"zone": "a"}),
    ("gpu=", {"gpu": ""}),
    ("", {}),
])
def test_labels_are_read_from_json_or_pairs(text, labels):
    assert _parse_labels(text) == labels


@pytest.mark.parametrize("text", ["zone", "=a", '{"zone": ', "[1]"])
def test_bad_labels_are_refused_naming_them(text):
    with pytest.raises(click.BadParameter, match="--labels"):
        _parse_labels(text)
