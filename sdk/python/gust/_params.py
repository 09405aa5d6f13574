"""Class parameters, as Modal declares them:

    @app.cls()
    class Model:
        size: int = gust.parameter(default=1)
        name: str = gust.parameter()

Model(size=2, name="x") names an instance of the class for that parameter set; in the
container the instance gets the values (as attributes, no __init__ runs) before its
enter hooks. Each parameter set has containers of its own: the client deploys the
class's function again under a derived name with the values in its environment
(PARAMS_ENV, JSON), on first use (app.py, _Variant). The class's own deployed
function records the parameters' names, types and defaults (SCHEMA_ENV), so that a
Cls.from_name client can check the values it is given.

Values are str, int, bool or bytes, as in Modal."""
import base64
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .exception import InvalidError

PARAMS_ENV = "GUST_CLS_PARAMS"
SCHEMA_ENV = "GUST_CLS_PARAMETERS"
MAX_PARAMS_BYTES = 16 * 1024
TYPES = {"str": str, "int": int, "bool": bool, "bytes": bytes}


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default>"


NO_DEFAULT = _NoDefault()


class Parameter:
    """What gust.parameter() returns: a class attribute that reads as its default
    until the instance has its own value (the instance's attribute wins)."""

    def __init__(self, default: Any, init: bool) -> None:
        self.default = default
        self.init = init

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        if self.default is NO_DEFAULT:
            raise AttributeError(f"parameter {getattr(self, 'name', '?')} has no default and no value was given")
        return self.default


def parameter(*, default: Any = NO_DEFAULT, init: bool = True) -> Any:
    """A class parameter (a type annotation is required): x: int = gust.parameter(default=0).
    init=False: only a typed attribute, not a parameter (set by an enter hook, say)."""
    return Parameter(default, init)


def schema(user_cls: type) -> List[Dict[str, Any]]:
    """[{"name", "type", "default"?}] of user_cls's parameters, in declaration order;
    [] without any. Refused (InvalidError): a parameter without a type annotation or of
    another type than str/int/bool/bytes, a default of the wrong type, and parameters
    together with an __init__ of the class's own (Modal refuses both too)."""
    params = [(k, v) for k, v in vars(user_cls).items() if isinstance(v, Parameter) and v.init]
    if not params:
        return []
    if "__init__" in vars(user_cls):
        raise InvalidError(f"class {user_cls.__name__}: a class can't have both an __init__ and gust.parameter() "
                           f"attributes (instances get their parameter values without __init__)")
    hints = vars(user_cls).get("__annotations__", {})
    out = []
    for name, p in params:
        t = hints.get(name)
        if isinstance(t, str):  # from __future__ import annotations
            t = TYPES.get(t, t)
        tname = next((k for k, v in TYPES.items() if v is t), None)
        if tname is None:
            raise InvalidError(f"class {user_cls.__name__}: parameter {name} needs a type annotation of str, int, "
                               f"bool or bytes, got {t!r}")
        entry: Dict[str, Any] = {"name": name, "type": tname}
        if p.default is not NO_DEFAULT:
            _check(user_cls.__name__, name, tname, p.default)
            entry["default"] = _wire(p.default)
        out.append(entry)
    return out


def _check(cls_name: str, name: str, tname: str, v: Any) -> None:
    ok = isinstance(v, TYPES[tname]) and (tname == "bool" or not isinstance(v, bool))
    if not ok:
        raise InvalidError(f"class {cls_name}: parameter {name} must be {tname}, got {type(v).__name__} ({v!r})")


def _wire(v: Any) -> Any:
    return {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v


def unwire(v: Any) -> Any:
    """A value as it was given, from its JSON form."""
    return base64.b64decode(v["b64"]) if isinstance(v, dict) else v


def bind(cls_name: str, sch: List[Dict[str, Any]], args: Tuple[Any, ...], kwargs: Mapping[str, Any]
         ) -> Tuple[Dict[str, Any], bool]:
    """(every parameter's value, JSON-ready; whether all are their defaults) for
    Model(*args, **kwargs), checked against the schema."""
    if len(args) > len(sch):
        raise InvalidError(f"{cls_name}() takes {len(sch)} parameters, got {len(args)} positional arguments")
    given = {sch[i]["name"]: a for i, a in enumerate(args)}
    for k, v in kwargs.items():
        if k in given:
            raise InvalidError(f"{cls_name}(): parameter {k} given twice")
        given[k] = v
    names = [p["name"] for p in sch]
    unknown = [k for k in given if k not in names]
    if unknown:
        have = ", ".join(names) or "none"
        raise InvalidError(f"{cls_name}(): unknown parameter {unknown[0]} (its parameters: {have})")
    out, defaults = {}, True
    for p in sch:
        if p["name"] in given:
            v = given[p["name"]]
            _check(cls_name, p["name"], p["type"], v)
            out[p["name"]] = _wire(v)
            defaults = defaults and "default" in p and _wire(v) == p["default"]
        elif "default" in p:
            out[p["name"]] = p["default"]
        else:
            raise InvalidError(f"{cls_name}(): parameter {p['name']} has no default; give it a value")
    if len(json.dumps(out)) > MAX_PARAMS_BYTES:
        raise InvalidError(f"{cls_name}(): the parameter values are over {MAX_PARAMS_BYTES} bytes (as JSON)")
    return out, defaults


def values(env_value: Optional[str]) -> Dict[str, Any]:
    """The container side: the parameter values of PARAMS_ENV's JSON."""
    if not env_value:
        return {}
    return {k: unwire(v) for k, v in json.loads(env_value).items()}


def new_instance(user_cls: type, env_value: Optional[str]) -> Any:
    """The container's instance of user_cls: with parameters, made without __init__
    and given the parameter set's values (Modal does the same); otherwise user_cls()."""
    if not any(isinstance(v, Parameter) and v.init for v in vars(user_cls).values()):
        return user_cls()
    inst = user_cls.__new__(user_cls)
    inst.__dict__.update(values(env_value))
    return inst
