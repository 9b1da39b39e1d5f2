"""The pypi format."""

from app.formats.pypi.plugin import PypiFormat

__all__ = ["PypiFormat"]
