"""``microray.dag.output_node``: where Ray's documentation imports ``MultiOutputNode`` from."""

from microray.dag import MultiOutputNode

__all__ = ["MultiOutputNode"]
