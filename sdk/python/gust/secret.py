"""Secrets: environment variables gustd stores and injects into a function's
containers, never logged and never shown back (only names and keys are).

    @app.function(secrets=[gust.Secret.from_name("openai", required_keys=["API_KEY"]),
                           gust.Secret.from_dict({"MODE": "prod"})])

from_name refers to a secret made with `gust secret create` (or Secret.create);
from_dict and from_local_environ are stored by the deploy under a name of the app's
("inline.APP.N"), replaced on every deploy, and deleted when `gust run` ends. A later secret in the list wins over
an earlier one, and secrets win over the function's env."""
from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from . import _net


class SecretError(Exception):
    pass


class Secret:
    def __init__(self, name: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                 required_keys: Iterable[str] = ()) -> None:
        self.name = name
        self._env = env
        self.required_keys = list(required_keys)

    @classmethod
    def from_name(cls, name: str, required_keys: Sequence[str] = ()) -> Secret:
        return cls(name=name, required_keys=required_keys)

    @classmethod
    def from_dict(cls, env: Mapping[str, str]) -> Secret:
        env = dict(env)
        for k, v in env.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"Secret.from_dict: keys and values must be strings, got {k!r}: {type(v).__name__}")
        return cls(env=env)

    @classmethod
    def from_local_environ(cls, env_keys: Sequence[str]) -> Secret:
        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise SecretError(f"Secret.from_local_environ: not set here: {', '.join(missing)}")
        return cls(env={k: os.environ[k] for k in env_keys})

    @staticmethod
    def create(name: str, env: Mapping[str, str], addr: Optional[str] = None) -> List[str]:
        """Creates or replaces secret name on gustd; returns its keys."""
        st, _, body = _net.request(addr, "PUT", "/v1/secrets/" + urllib.parse.quote(name, safe=""),
                                   json.dumps({"env": dict(env)}).encode(), {"Content-Type": "application/json"})
        if st != 200:
            raise SecretError(_message(st, body))
        return json.loads(body)["keys"]

    @staticmethod
    def list(addr: Optional[str] = None) -> List[Dict[str, Any]]:
        st, _, body = _net.request(addr, "GET", "/v1/secrets")
        if st != 200:
            raise SecretError(_message(st, body))
        return json.loads(body)["secrets"]

    def __repr__(self) -> str:
        return f"Secret.from_name({self.name!r})" if self._env is None else f"Secret.from_dict(<{len(self._env)} keys>)"


def _message(status, body):
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {body[:200]!r}"


def resolve(app_name: str, secrets: Optional[Iterable[Secret]], addr: Optional[str],
            counter: Dict[int, str]) -> List[str]:
    """Stores inline secrets and checks named ones; returns the names to put in the
    spec. counter: a dict the app shares across its functions (inline object id -> name)."""
    names: List[Any] = []  # Secret() without a name or env gives None, which gustd refuses
    known: Optional[Dict[str, set]] = None
    for s in secrets or ():
        if not isinstance(s, Secret):
            raise TypeError(f"secrets: expected gust.Secret objects, got {type(s).__name__}")
        if s._env is not None:
            name = counter.get(id(s))
            if name is None:
                name = counter[id(s)] = f"inline.{app_name}.{len(counter)}"
                Secret.create(name, s._env, addr)
            names.append(name)
            continue
        if s.required_keys:
            if known is None:
                known = {x["name"]: set(x["keys"]) for x in Secret.list(addr)}
            if s.name not in known:
                raise SecretError(f"secret {s.name!r} does not exist on gustd; create it with "
                                  f"`gust secret create {s.name} KEY=VALUE`")
            lack = [k for k in s.required_keys if k not in known[s.name]]
            if lack:
                raise SecretError(f"secret {s.name!r} lacks required keys: {', '.join(lack)}")
        names.append(s.name)
    return names
