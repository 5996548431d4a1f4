"""What a command gets to work with: its arguments, where to print, and the project on demand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .render import Output, TerminalReporter

if TYPE_CHECKING:
    from ..app import App
    from ..engine.base import Engine
    from ..project.settings import Options


class Context:
    """One run of one command. The engine and the project are made when a command asks for them:
    ``store ls`` needs neither, ``watch start -f Dockerfile`` no engine."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: Output,
        reporter: TerminalReporter,
        engine: Engine | None = None,
    ) -> None:
        self.args = args
        self.out = out
        self.reporter = reporter
        self._engine = engine
        self._apps: list[App] = []

    def engine(self, *, reachable: bool = True) -> Engine:
        """The Docker engine; with ``reachable``, an EngineError now if none answers."""
        if self._engine is None:
            from ..engine.docker import Docker

            self._engine = Docker.local()
        if reachable:
            from ..engine.base import unsupported

            if note := unsupported(self._engine.engine()):
                self.reporter.warn(note)
        return self._engine

    def options(self) -> Options:
        """What the command line says about the project; options a command does not take are unset."""
        from ..project.settings import Options
        from ..project.values import build_args

        args = self.args
        return Options(
            project_dir=Path(args.project_dir),
            compose_files=getattr(args, "compose_file", None) or (),
            dockerfile=getattr(args, "file", None),
            context=getattr(args, "context", None),
            build_args=build_args(getattr(args, "build_arg", None) or []),
            store=getattr(args, "store", None),
            save=bool(getattr(args, "save", False)),
            repository=getattr(args, "repository", None),
            project_name=getattr(args, "project_name", None),
            profiles=getattr(args, "profile", None) or (),
            env_files=getattr(args, "env_file", None) or (),
        )

    def app(self, *, reachable: bool = True) -> App:
        """The project, read through the engine (a compose file is read by ``docker compose``)."""
        from ..app import App

        app = App.load(self.options(), self.engine(reachable=reachable), self.reporter)
        self._apps.append(app)
        return app

    def close(self, *, cancel: bool = False) -> None:
        """End the command's background work: wait for its saves into the store, or (``cancel``:
        interrupted, failed) stop them cleanly."""
        for app in self._apps:
            app.close(cancel=cancel)
