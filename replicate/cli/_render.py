"""Terminal output of the read commands: consoles, tables, cells, prompts, progress bars."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.segment import Segment, Segments
from rich.table import Table
from rich.text import Text

from replicate.console import printable
from replicate.read.format import checkpoint_label, primary_metric_text
from replicate.read.views import CheckpointView


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


class SafeConsole(Console):
    """A console that prints text others wrote harmlessly: control characters as escapes.

    Everything printed is cut into segments by :meth:`render`; the text of each one is made
    printable there, before rich adds its own styling codes. Markup is off: a ``[`` in a
    param name is text.
    """

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterator[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not segment.text:
                yield segment
            else:
                yield Segment(printable(segment.text), segment.style)


def stdout() -> Console:
    """A console on the current stdout (tables fold to the width; 80 when not a terminal)."""
    return SafeConsole(highlight=False, no_color=no_color(), soft_wrap=False, markup=False)


def stderr() -> Console:
    return SafeConsole(stderr=True, highlight=False, no_color=no_color(), markup=False)


def echo(message: str = "", *, err: bool = False) -> None:
    """``click.echo`` for every plain line the CLI prints: control characters as escapes."""
    click.echo(printable(message), err=err)


def table(*columns: str, wrap: Sequence[str] = (), **options: Any) -> Table:
    """A borderless table in the style of ``ls``: bold headers, two spaces between columns.

    Only the columns named in ``wrap`` fold when the terminal is too narrow (all of them
    when ``wrap`` is empty); the others keep their lines whole.
    """
    grid = Table(
        box=None,
        pad_edge=False,
        show_edge=False,
        header_style="bold",
        padding=(0, 2, 0, 0),
        **options,
    )
    for column in columns:
        folds = not wrap or column in wrap
        grid.add_column(column, overflow="fold", no_wrap=not folds)
    return grid


def emit(console: Console, renderable: Any) -> None:
    """Print ``renderable`` without the trailing spaces rich pads table cells with."""
    with console.capture() as capture:
        console.print(renderable)
    lines = capture.get().split("\n")
    console.file.write("\n".join(line.rstrip() for line in lines))
    console.file.flush()


class Grid:
    """Columns aligned by hand, so a row can be followed by a free line (ls's params).

    Rich tables cannot span a line across columns; this keeps rich's Text for styles and
    widths and does the padding itself. Lines never end in spaces.
    """

    def __init__(self, *columns: str, gap: int = 2) -> None:
        self.columns = columns
        self.gap = gap
        self.rows: list[tuple[list[Text], Text | None]] = []

    def add_row(self, *cells: Text | str, below: Text | None = None) -> None:
        self.rows.append(([c if isinstance(c, Text) else Text(c) for c in cells], below))

    def widths(self) -> list[int]:
        widths = [cell_len(c) for c in self.columns]
        for cells, _ in self.rows:
            for i, cell in enumerate(cells):
                widths[i] = max([widths[i], *(cell_len(line) for line in cell.plain.split("\n"))])
        return widths

    def width(self) -> int:
        return sum(self.widths()) + self.gap * (len(self.columns) - 1)

    def render(self, console: Console) -> None:
        """Print the grid in one go (one print per line is slow with 1,000 experiments)."""
        widths = self.widths()
        lines: list[Text] = []
        header = Text(style="bold")
        self._line(header, [Text(c) for c in self.columns], widths)
        lines.append(header)
        for cells, below in self.rows:
            split = [cell.split("\n") for cell in cells]
            for n in range(max(len(cell) for cell in split)):
                text = Text()
                self._line(text, [cell[n] if n < len(cell) else Text() for cell in split], widths)
                lines.append(text)
            if below is not None:
                lines.append(below)
        # Lines that fit are styled as they are; only the others go through rich's folding,
        # which splits and measures word by word (~1 s for 1,000 experiments otherwise).
        fold = console.options.update(overflow="fold")
        segments: list[Segment] = []
        for line in lines:
            if cell_len(line.plain) <= console.width and "\n" not in line.plain:
                segments += line.render(console)
                segments.append(Segment.line())
            else:
                segments += console.render(line, fold)
        console.print(Segments(segments), crop=False)

    def _line(self, out: Text, cells: list[Text], widths: list[int]) -> None:
        last = max((i for i, c in enumerate(cells) if c.plain), default=-1)
        for i, cell in enumerate(cells[: last + 1]):
            out.append_text(cell)
            if i < last:
                out.append(" " * (widths[i] - cell_len(cell.plain) + self.gap))


def section(console: Console, title: str) -> None:
    console.print()
    console.print(Text(title, style="bold"))


def fields(console: Console, rows: Sequence[tuple[str, Any]]) -> None:
    """``Name:  value`` lines with aligned values."""
    grid = table("", "", show_header=False)
    for name, value in rows:
        grid.add_row(Text(f"{name}:"), Text(value if isinstance(value, str) else str(value)))
    emit(console, grid)


def checkpoint_cell(checkpoint: CheckpointView | None, *, metric: bool = True) -> Text:
    """``5a9beec (step 2)`` and, below it, the primary metric; upload state if queued."""
    if checkpoint is None:
        return Text("")
    cell = Text(checkpoint_label(checkpoint))
    if checkpoint.upload_state:
        cell.append(f" ({checkpoint.upload_state})", style="yellow")
    primary = primary_metric_text(checkpoint)
    if metric and primary is not None:
        cell.append(f"\n{primary}")
    return cell


def stdin_is_interactive() -> bool:
    """True if a person can answer a prompt on stdin."""
    stream = sys.stdin
    try:
        return stream is not None and not stream.closed and stream.isatty()
    except ValueError:  # closed underneath us
        return False


def confirm(question: str, *, force: bool) -> None:
    """Ask ``question`` (default no) unless ``force``; abort with exit 1 if declined.

    With stdin closed or not a terminal there is nobody to ask: a clear error says to pass -f.
    """
    if force:
        return
    if not stdin_is_interactive():
        raise click.ClickException(
            f"{question.rstrip('?')}: refusing to ask without a terminal on stdin; "
            "pass -f/--force to go ahead"
        )
    if not click.confirm(printable(question), default=False, err=True):
        raise click.ClickException("cancelled, nothing was changed")


class Bar:
    """A progress bar's handle: set the total, advance it, or take it off the screen."""

    def __init__(self, progress: Progress, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None)

    def total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def advance(self, amount: int = 1) -> None:
        self._progress.update(self._task, advance=amount)

    def set(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)

    def describe(self, description: str) -> None:
        self._progress.update(self._task, description=description)

    def stop(self) -> None:
        self._progress.stop()


@contextmanager
def progress_bar(description: str, *, bytes_: bool) -> Iterator[Bar]:
    """A transient progress bar on stderr, drawn only when stderr is a terminal."""
    console = stderr()
    amount = DownloadColumn() if bytes_ else MofNCompleteColumn()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        amount,
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        yield Bar(progress, description)
