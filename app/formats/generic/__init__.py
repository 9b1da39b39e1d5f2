"""Generic files: any tree of files under ``/repository/<name>/<path>``."""

from app.formats.generic.plugin import GenericFormat

__all__ = ["GenericFormat"]
