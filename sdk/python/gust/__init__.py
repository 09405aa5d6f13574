"""Gust from Python (stdlib only). This release has the image builder; functions and
apps come with the SDK issue."""
from .image import BuildError, Image

__all__ = ["Image", "BuildError"]
