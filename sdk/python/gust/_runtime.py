"""Where the code runs, as Modal's functions of the same names tell it: is_local(),
current_input_id() and current_function_call_id(). The container's runner
(gust._container.runner) marks the process as a container before it imports the
user's module, and sets the input being served around each call of the function.

A context variable rather than a thread-local: an input served in a thread of its
own (max_inputs > 1) and asyncio tasks started while serving it see their input."""
import contextvars
import os
from typing import Optional, Tuple

# (input id, call id) of the input the current code serves.
_input: contextvars.ContextVar = contextvars.ContextVar("gust_input", default=None)

IN_CONTAINER_ENV = "GUST_IN_CONTAINER"


def is_local() -> bool:
    """False inside a Gust container (while the module is imported there too, and
    in an Image.run_function build step), True elsewhere."""
    return os.environ.get(IN_CONTAINER_ENV) != "1"


def current_input_id() -> Optional[str]:
    """The id of the input this code serves ("in-N": gustd's number for this attempt
    of the call; a retry gets a new one), or None outside an input."""
    cur: Optional[Tuple[str, Optional[str]]] = _input.get()
    return cur[0] if cur else None


def current_function_call_id() -> Optional[str]:
    """The id of the call ("fc-...", what .spawn() returned as object_id) whose input
    this code serves, or None outside an input."""
    cur: Optional[Tuple[str, Optional[str]]] = _input.get()
    return cur[1] if cur else None


def input_name(input_id: int) -> str:
    """What current_input_id() says for the runner's input input_id."""
    return f"in-{input_id}"


def enter_input(input_id: int, call_id: Optional[str]) -> contextvars.Token:
    """The runner: the current code serves input input_id of call call_id, until
    leave_input(the token returned)."""
    return _input.set((input_name(input_id), call_id))


def leave_input(token: contextvars.Token) -> None:
    _input.reset(token)
