"""Settings shared by every test folder."""

from __future__ import annotations

import os

# Keep each test process's fork launcher for the whole run (by default it leaves 5 s after
# a driver's last node stops, and a later init then spawns fresh interpreters, which is
# slow). Tests that check for leftover processes already allow for the launcher.
os.environ.setdefault("MICRORAY_LAUNCHER_IDLE_S", "3600")
