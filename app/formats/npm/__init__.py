"""The npm format."""

from app.formats.npm.plugin import NpmFormat

__all__ = ["NpmFormat"]
