"""``microray.dag.input_node``: where Ray's documentation imports ``InputNode`` from."""

from microray.dag import InputAttributeNode, InputNode

__all__ = ["InputAttributeNode", "InputNode"]
