"""Gust from Python (stdlib only): image definitions (Image), apps of Python functions
(App, @app.function, .remote / .spawn / .map / .starmap / .for_each / .spawn_map /
.local / .with_options), calls (FunctionCall: .get, .gather, .from_id), classes
(@app.cls, gust.parameter, enter / exit / method), secrets (Secret), errors
(gust.exception), dicts and queues (Dict, Queue), volumes (Volume), where code runs (is_local, current_input_id,
current_function_call_id), web endpoints (web_endpoint, fastapi_endpoint, asgi_app,
wsgi_app, web_server, Response; Function.get_web_url), how containers take inputs (batched,
concurrent). Names and semantics are Modal's: `import gust as modal`."""
from . import exception
from ._output import enable_output
from ._container.web import Response
from ._inputs import batched, concurrent
from ._params import parameter
from ._runtime import current_function_call_id, current_input_id, is_local
from .app import (App, Cls, ContainerCrashError, enter, exit, method, Function, FunctionCall, FunctionTimeoutError, GustError,
                  OutOfMemoryError, RemoteError, Retries)
from .exception import Error, InvalidError
from .image import BuildError, Image
from .schedule import Cron, Period
from ._kv import Dict, DictInfo, Queue, QueueInfo
from ._volume import FileEntry, FileEntryType, Volume
from .secret import Secret, SecretError
from ._web import asgi_app, fastapi_endpoint, web_endpoint, web_server, wsgi_app

__all__ = ["App", "Function", "FunctionCall", "Image", "BuildError", "GustError", "RemoteError",
           "FunctionTimeoutError", "OutOfMemoryError", "ContainerCrashError", "InvalidError", "Retries", "Cls",
           "enter", "exit", "method", "Secret", "SecretError", "Error", "exception", "parameter", "is_local",
           "current_input_id", "current_function_call_id", "enable_output", "web_endpoint", "fastapi_endpoint",
           "asgi_app", "wsgi_app", "web_server", "Response", "batched", "concurrent", "Cron", "Period", "Dict", "Queue",
           "DictInfo", "QueueInfo", "Volume", "FileEntry", "FileEntryType"]
