from .case import shout

__all__ = ["shout"]
