"""Progress reporting: the only way library code talks to the person running it.

Library functions take a `Reporter`; the default one is silent. The CLI passes one
that draws rich progress bars.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


class Reporter:
    """Silent reporter; subclasses draw bars or log lines."""

    def note(self, message: str) -> None:
        pass

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """Context for one long step; yields `advance(n)`."""
        yield lambda n=1: None


class RichReporter(Reporter):
    def __init__(self):
        from rich.console import Console

        self.console = Console(stderr=True)

    def note(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)  # messages quote user text

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, \
            TimeElapsedColumn, TimeRemainingColumn

        columns = [SpinnerColumn(), TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(name, total=total)
            yield lambda n=1: bar.advance(task, n)
            if total is not None:
                bar.update(task, completed=total)
