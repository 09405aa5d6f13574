"""Gust from Python (stdlib only): image definitions (Image), apps of Python functions
(App, @app.function, .remote / .spawn / .map / .starmap / .for_each / .local), classes
(@app.cls, enter / exit / method) and secrets (Secret)."""
from .app import (App, Cls, ContainerCrashError, enter, exit, method, Function, FunctionCall, FunctionTimeoutError, GustError,
                  InvalidError, OutOfMemoryError, RemoteError, Retries)
from .image import BuildError, Image
from .secret import Secret, SecretError

__all__ = ["App", "Function", "FunctionCall", "Image", "BuildError", "GustError", "RemoteError",
           "FunctionTimeoutError", "OutOfMemoryError", "ContainerCrashError", "InvalidError", "Retries", "Cls", "enter",
           "exit", "method", "Secret", "SecretError"]
