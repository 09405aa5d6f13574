"""Gust from Python (stdlib only): image definitions (Image), apps of Python functions
(App, @app.function, .remote / .spawn / .map / .starmap / .for_each / .local)."""
from .app import (App, Cls, ContainerCrashError, enter, exit, method, Function, FunctionCall, FunctionTimeoutError, GustError,
                  OutOfMemoryError, RemoteError, Retries)
from .image import BuildError, Image

__all__ = ["App", "Function", "FunctionCall", "Image", "BuildError", "GustError", "RemoteError",
           "FunctionTimeoutError", "OutOfMemoryError", "ContainerCrashError", "Retries", "Cls", "enter",
           "exit", "method"]
