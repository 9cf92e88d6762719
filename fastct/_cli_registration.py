"""Sub-commands of fastct.registration (placeholder until the commands exist)."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add this module's sub-commands to the fastct parser."""
