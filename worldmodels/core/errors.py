"""Errors a user can cause. The CLI prints their message and exits non-zero, no traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (flags, env spec, run directory, checkpoint), not a bug."""
