"""Errors of the SDK, under Modal's names (modal.exception), so that code written for
Modal catches the same failures here: `import gust as modal` then
`except modal.exception.FunctionTimeoutError`.

How gustd's failures map onto them (the error's code, as docs/API.md lists them):
  timeout                              FunctionTimeoutError (a TimeoutError)
  oom                                  OutOfMemoryError (an ExecutionError)
  crashed                              ContainerCrashError (an ExecutionError)
  exit_status, function_error,
  spawn_failed                         ExecutionError
  cancelled                            CallCancelledError (an InputCancellation)
  not_found                            NotFoundError; OutputExpiredError for a result
                                       gustd no longer keeps (FunctionCall.get)
  unauthorized, forbidden              AuthError
  bad_request, invalid_spec,
  invalid_argument, unschedulable      InvalidError
  others                               Error
An exception the function raised is raised here as itself (its type is importable
here) or as RemoteError (it is not). Every one of them is an Error (GustError, the
SDK's older name), and carries gustd's code and the call id where there is one, except
InputCancellation, a BaseException as in Modal."""
from typing import Dict, Optional


class GustError(Exception):
    """gustd refused a request, or a call failed in a way that is not the function's
    own exception. code: gustd's error code."""

    def __init__(self, message: str, code: Optional[str] = None, call_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.call_id = call_id


Error = GustError  # Modal's name of the base class


class TimeoutError(GustError):  # noqa: A001 - Modal's name; the builtin stays builtins.TimeoutError
    """Base class of the timeouts below."""


class FunctionTimeoutError(TimeoutError):
    """The input ran past the function's timeout and was stopped."""


class NotFoundError(GustError):
    """No such app, function, class or call."""


class OutputExpiredError(TimeoutError, NotFoundError):
    """The call's result is no longer kept (gustd keeps finished calls 7 days), or the
    call id was never gustd's."""


class ExecutionError(GustError):
    """The function's container failed while running the input."""


class OutOfMemoryError(ExecutionError):
    """The container ran out of its memory limit while running the input."""


class ContainerCrashError(ExecutionError):
    """The function's process died (a signal, or it exited) while running the input."""


class RemoteError(GustError):
    """The function raised an exception that cannot be rebuilt here."""


class InvalidError(GustError):
    """Something given to the SDK or gustd is not valid (the message names it)."""


class AuthError(GustError):
    """gustd refused the token (none, unknown, expired) or its role."""


class InputCancellation(BaseException):
    """The input was cancelled. A BaseException, as in Modal, so that a bare
    `except Exception` meant for retries does not swallow it."""


class CallCancelledError(GustError, InputCancellation):
    """A call that was cancelled (FunctionCall.cancel, `gust stop`): catch it as
    InputCancellation (Modal's name) or as an Error."""


ERRORS_BY_CODE: Dict[Optional[str], type] = {
    "timeout": FunctionTimeoutError, "oom": OutOfMemoryError, "crashed": ContainerCrashError,
    "exit_status": ExecutionError, "function_error": ExecutionError, "spawn_failed": ExecutionError,
    "cancelled": CallCancelledError, "not_found": NotFoundError, "unauthorized": AuthError, "forbidden": AuthError,
    "bad_request": InvalidError, "invalid_spec": InvalidError, "invalid_argument": InvalidError,
    "unschedulable": InvalidError, "not_generator": InvalidError, "not_generator_call": InvalidError,
}
