"""Test support that third-party plugin authors can import (pytest is required)."""
