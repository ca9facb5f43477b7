"""The error type for a user's mistake (a bad config value, a missing file): commands print it as one line, exit 2."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A problem with the user's config, overrides or files: reported as one line, exit status 2."""
