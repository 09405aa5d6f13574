"""The two forms of a Python function's input, as the runner reads them: the SDK's
pickle((args, kwargs)), answered with pickle(result), and JSON_TAG + {"args": [...],
"kwargs": {...}} from clients without Python (`gust call`, `spawn`, `map`; the form is
src/client/pyjson.h's), answered with JSON_TAG + the result as JSON. An empty input
is a call with no arguments (a schedule's fire), answered as a pickled one."""
import json
import pickle

from .proto import JSON_TAG


def decode_input(payload):
    """(args, kwargs, encode) of an input, encode being what turns the function's
    result into the answer's bytes in the input's own form."""
    if not payload:
        # No input at all: a call with no arguments (gustd's scheduled calls).
        return (), {}, _pickle_result
    if not payload.startswith(JSON_TAG):
        args, kwargs = pickle.loads(payload)
        return args, kwargs, _pickle_result
    try:
        call = json.loads(payload[len(JSON_TAG):].decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError alike
        raise ValueError(f"the JSON input is malformed: {e}") from None
    args = call.get("args", []) if isinstance(call, dict) else None
    kwargs = call.get("kwargs", {}) if isinstance(call, dict) else None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise TypeError('a JSON input must be {"args": [...], "kwargs": {...}}')
    return args, kwargs, _json_result


def _pickle_result(value):
    return pickle.dumps(value, protocol=5)


def _json_result(value):
    """JSON_TAG + value as JSON on one line (UTF-8; \\u escapes only where a string
    holds what UTF-8 cannot, a lone surrogate). NaN and infinities are refused: JSON
    has no spelling for them."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = json.dumps(value, allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as e:
        kind = type(value)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise TypeError(f"the result (of type {name}) cannot be sent as JSON: {e}; return JSON types (dict, "
                        f"list, str, int, float, bool, None), or call the function from the Python SDK, "
                        f"which pickles results") from None
    return JSON_TAG + data
