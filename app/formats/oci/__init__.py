"""OCI images and Docker images: the distribution API, local repositories for now."""

from app.formats.oci.plugin import OciFormat

__all__ = ["OciFormat"]
