"""How the library reports progress: a small protocol the CLI implements; silent by default."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def step(self, target: str, message: str) -> None:
        """A step of the work on a target started or finished."""

    def warn(self, message: str) -> None:
        """Something the user should know; the work goes on."""

    def transfer(self, label: str, done: int, total: int | None) -> None:
        """Bytes moved so far in a long copy (save, load); ``done == total`` ends it."""


class Silent:
    def step(self, target: str, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def transfer(self, label: str, done: int, total: int | None) -> None:
        pass
