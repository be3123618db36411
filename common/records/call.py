"""One Redis round trip as data, and the two runners that make it. The model's operations are
written once, as a `Call` or as steps (a generator yielding calls and receiving their
results); the API runs them on an asyncio client, the worker and the CLI on a blocking one."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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


class SyncRunner:
    """Runs operations on a blocking client (worker, CLI)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._scripts: dict[str, Any] = {}

    def run(self, operation: Operation[T]) -> T:
        if isinstance(operation, Call):
            return self._round_trip(operation)
        reply = None
        while True:
            try:
                call = operation.send(reply)
            except StopIteration as done:
                return done.value
            reply = self._round_trip(call)

    def _round_trip(self, call: Call[T]) -> T:
        if call.script is not None:
            if call.script not in self._scripts:
                self._scripts[call.script] = self.redis.register_script(call.script)
            return call.parse(self._scripts[call.script](keys=call.keys, args=call.args))
        if len(call.commands) == 1:
            return call.parse([self.redis.execute_command(*call.commands[0])])
        with self.redis.pipeline(transaction=True) as pipe:
            for command in call.commands:
                pipe.execute_command(*command)
            return call.parse(pipe.execute())


class AsyncRunner:
    """Runs operations on an asyncio client (API)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._scripts: dict[str, Any] = {}

    async def run(self, operation: Operation[T]) -> T:
        if isinstance(operation, Call):
            return await self._round_trip(operation)
        reply = None
        while True:
            try:
                call = operation.send(reply)
            except StopIteration as done:
                return done.value
            reply = await self._round_trip(call)

    async def _round_trip(self, call: Call[T]) -> T:
        if call.script is not None:
            if call.script not in self._scripts:
                self._scripts[call.script] = self.redis.register_script(call.script)
            return call.parse(await self._scripts[call.script](keys=call.keys, args=call.args))
        if len(call.commands) == 1:
            return call.parse([await self.redis.execute_command(*call.commands[0])])
        async with self.redis.pipeline(transaction=True) as pipe:
            for command in call.commands:
                pipe.execute_command(*command)
            return call.parse(await pipe.execute())
