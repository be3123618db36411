"""One Redis round trip as data, and the two runners that make it. The model's operations are
written once, as a `Call` or as steps (a generator yielding calls and receiving their
results); the API runs them on an asyncio client, the worker and the CLI on a blocking one."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from inspect import isfunction
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

import redis
import redis.asyncio as aioredis

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """A Lua script with its keys and arguments, or commands (several run as one MULTI/EXEC
    transaction); `parse` turns the reply (for commands, the list of their replies) into
    the result."""

    parse: Callable[[Any], T]
    script: str | None = None
    keys: Sequence[str] = ()
    args: Sequence[Any] = ()
    commands: Sequence[Sequence[Any]] = ()


Steps = Generator[Call[Any], Any, T]
Operation = Call[T] | Steps[T]


def first(replies: list[Any]) -> Any:
    return replies[0]


def text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def pairs(values: dict[str, str]) -> list[str]:
    """A mapping as the flat name, value, … list that HSET and the scripts take."""
    return [item for pair in values.items() for item in pair]


def flat_hash(flat: list[bytes]) -> dict[bytes, bytes]:
    """A hash as HGETALL replies it inside a script: a flat list of names and values."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _steps(operation: Operation[T]) -> Steps[T]:
    """The operation as steps: a lone call is one step."""
    if isinstance(operation, Call):
        return (yield operation)
    return (yield from operation)


class _Runner:
    """Sends calls. An adapter (a subclass) names the modules of the model it serves: each of their
    operations runs as the adapter's method of the same name (`store.get_build(...)`)."""

    modules: ClassVar[tuple[ModuleType, ...]] = ()

    def __init__(self, client: redis.Redis | aioredis.Redis) -> None:
        self.redis = client
        self._scripts: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        for module in self.modules:
            operation = getattr(module, name, None)
            if isfunction(operation) and operation.__module__ == module.__name__:
                return lambda *args, **kwargs: self.run(operation(*args, **kwargs))
        raise AttributeError(name)

    def _request(self, call: Call[Any]) -> Any:
        """Sends the script, a lone command, or the commands as one MULTI/EXEC transaction:
        returns the reply, or on the asyncio client an awaitable of it."""
        if call.script is not None:
            if call.script not in self._scripts:
                self._scripts[call.script] = self.redis.register_script(call.script)
            return self._scripts[call.script](keys=call.keys, args=call.args)
        if len(call.commands) == 1:
            # Without a pipeline: one costs about a third more time per call.
            return self.redis.execute_command(*call.commands[0])
        pipe = self.redis.pipeline(transaction=True)
        for command in call.commands:
            pipe.execute_command(*command)
        return pipe.execute()

    @staticmethod
    def _result(call: Call[T], reply: Any) -> T:
        lone_command = call.script is None and len(call.commands) == 1
        return call.parse([reply] if lone_command else reply)


class SyncRunner(_Runner):
    """Runs operations on a blocking client (worker, CLI)."""

    def run(self, operation: Operation[T]) -> T:
        steps, reply = _steps(operation), None
        while True:
            try:
                call = steps.send(reply)
            except StopIteration as done:
                return done.value
            reply = self._result(call, self._request(call))


class AsyncRunner(_Runner):
    """Runs operations on an asyncio client (API)."""

    async def run(self, operation: Operation[T]) -> T:
        steps, reply = _steps(operation), None
        while True:
            try:
                call = steps.send(reply)
            except StopIteration as done:
                return done.value
            reply = self._result(call, await self._request(call))
