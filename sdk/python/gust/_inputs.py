"""How a container takes its inputs, with Modal's decorators (stacked under
@app.function(), or for classes: @gust.concurrent on the class, @gust.batched on its
one method):

- @gust.concurrent(max_inputs=, target_inputs=): up to max_inputs inputs at once per
  container (sync ones in threads, async ones as tasks of the container's event loop);
  the scheduler sizes the function's containers for target_inputs each (default
  max_inputs) and lets a container take up to max_inputs when no other can start.
- @gust.batched(max_batch_size=, wait_ms=): the function takes lists (each argument a
  list of the callers' values) and returns a list of as many results; the container's
  runner collects up to max_batch_size inputs, waiting at most wait_ms after the first,
  and calls it once with them. Callers call it with single values.

Both only mark the function (or class); Function.spec turns the marks into the spec's
scaling fields and the runner (gust._container.runner) reads them from the function."""
import inspect
from typing import Any, Callable, Optional

from .exception import InvalidError

# Modal's bounds (modal-client partial_function.py: MAX_MAX_BATCH_SIZE,
# MAX_BATCH_WAIT_MS): a batch of at most 999 inputs, a wait under 10 minutes.
MAX_MAX_BATCH_SIZE = 1000
MAX_BATCH_WAIT_MS = 10 * 60 * 1000
# The spec's bound of scaling.max_inputs (src/spec/spec.c).
MAX_CONCURRENT_INPUTS = 1000


def _raw(f: Any) -> Any:
    return getattr(f, "raw_f", f)  # a gust Function wraps the plain function


def batched(_warn_parentheses_missing: Any = None, *, max_batch_size: int, wait_ms: int) -> Callable[[Any], Any]:
    """Dynamic batching, as Modal's: the function (or a class's one method, instead of
    @gust.method()) takes a list per argument and returns a list of the same length;
    each caller passes single values (.remote(x), .map(xs)) and gets its own element."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("Positional arguments are not allowed. Did you forget parentheses? "
                           "Suggestion: `@gust.batched()`.")
    if not isinstance(max_batch_size, int) or isinstance(max_batch_size, bool) or max_batch_size < 1:
        raise InvalidError(f"max_batch_size must be a positive integer, got {max_batch_size!r}.")
    if max_batch_size >= MAX_MAX_BATCH_SIZE:
        raise InvalidError(f"max_batch_size must be less than {MAX_MAX_BATCH_SIZE}, got {max_batch_size}.")
    if not isinstance(wait_ms, int) or isinstance(wait_ms, bool) or wait_ms < 0:
        raise InvalidError(f"wait_ms must be a non-negative integer, got {wait_ms!r}.")
    if wait_ms >= MAX_BATCH_WAIT_MS:
        raise InvalidError(f"wait_ms must be less than {MAX_BATCH_WAIT_MS}, got {wait_ms}.")

    def wrap(f: Any) -> Any:
        raw = _raw(f)
        if not callable(raw) or isinstance(raw, type):
            raise InvalidError("Cannot apply `@gust.batched` to a class. Hint: apply it to a method instead.")
        name = getattr(raw, "__name__", "?")
        if inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw):
            raise InvalidError(f"Gust batched function {name} cannot return generators")
        for p in inspect.signature(raw).parameters.values():
            if p.default is not inspect.Parameter.empty:
                raise InvalidError(f"Gust batched function {name} does not accept default arguments.")
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise InvalidError(f"Gust batched function {name} takes named parameters only (no *{p.name}).")
        raw._gust_batched = {"max_batch_size": max_batch_size, "wait_ms": wait_ms}
        raw._gust_method = True  # on a class it is the callable method, as in Modal
        return f
    return wrap


def concurrent(_warn_parentheses_missing: Any = None, *, max_inputs: int,
               target_inputs: Optional[int] = None) -> Callable[[Any], Any]:
    """Many inputs at once per container, as Modal's: up to max_inputs (sync handlers
    in threads, which must be thread-safe; async ones as tasks of one event loop); the
    autoscaler aims at target_inputs per container (default max_inputs)."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("Positional arguments are not allowed. Did you forget parentheses? "
                           "Suggestion: `@gust.concurrent()`.")
    if not isinstance(max_inputs, int) or isinstance(max_inputs, bool) or not 1 <= max_inputs <= MAX_CONCURRENT_INPUTS:
        raise InvalidError(f"max_inputs must be an integer from 1 to {MAX_CONCURRENT_INPUTS}, got {max_inputs!r}.")
    if target_inputs is not None:
        if not isinstance(target_inputs, int) or isinstance(target_inputs, bool) or target_inputs < 1:
            raise InvalidError(f"target_inputs must be a positive integer, got {target_inputs!r}.")
        if target_inputs > max_inputs:
            raise InvalidError("`target_inputs` parameter cannot be greater than `max_inputs`.")

    def wrap(f: Any) -> Any:
        raw = _raw(f)
        if getattr(raw, "_gust_method", False) and not isinstance(raw, type):
            raise InvalidError("The `@gust.concurrent` decorator cannot be used on methods; decorate the class "
                               "instead.")
        raw._gust_concurrent = {"max_inputs": max_inputs, "target_inputs": target_inputs}
        return f
    return wrap


def batch_of(obj: Any) -> Optional[dict]:
    """The batched mark of a function, or of a class's batched method; None if none.
    A class may have one batched method and no other method (as in Modal)."""
    if not isinstance(obj, type):
        return getattr(obj, "_gust_batched", None)
    marked = [(n, getattr(obj, n)._gust_batched) for n in dir(obj)
              if getattr(getattr(obj, n, None), "_gust_batched", None)]
    if not marked:
        return None
    if len(marked) > 1:
        raise InvalidError(f"Gust class {obj.__name__} can only have one batched function.")
    methods = [n for n in dir(obj) if getattr(getattr(obj, n, None), "_gust_method", False)]
    if len(methods) > 1:
        raise InvalidError(f"Gust class {obj.__name__} with a gust batched function cannot have other gust methods.")
    return dict(marked[0][1], method=marked[0][0])


def scaling_of(obj: Any) -> dict:
    """The spec's scaling fields the marks set: max_inputs (a batch's inputs are in the
    container at once), target_inputs."""
    batch = batch_of(obj)
    conc = getattr(obj, "_gust_concurrent", None)
    if batch and conc:
        raise InvalidError(f"{getattr(obj, '__name__', '?')}: @gust.batched and @gust.concurrent cannot be "
                           f"combined (a batched function takes max_batch_size inputs at once)")
    if batch:
        return {"max_inputs": batch["max_batch_size"]}
    if conc:
        out = {"max_inputs": conc["max_inputs"]}
        if conc["target_inputs"] is not None:
            out["target_inputs"] = conc["target_inputs"]
        return out
    return {}
