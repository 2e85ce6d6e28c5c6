"""``replicate gc``: prune checkpoints of stopped experiments, keeping the best and the last."""

from __future__ import annotations

import click
from rich.filesize import decimal

from replicate import console
from replicate.cli import _render
from replicate.cli._context import CliState, repository_option
from replicate.cli.rm import run_removal
from replicate.ids import short_id
from replicate.maintenance import plan_gc


@click.command("gc")
@repository_option
@click.option(
    "--keep-best",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Keep this many best checkpoints of each experiment, by their primary metric.",
)
@click.option(
    "--keep-last",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Keep this many most recent checkpoints of each experiment.",
)
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@click.option("-f", "--force", is_flag=True, help="Delete without asking.")
def gc_command(state: CliState, keep_best: int, keep_last: int, dry_run: bool, force: bool) -> None:
    """Delete the checkpoints of stopped experiments that are neither best nor recent.

    Only checkpoints with files are pruned; metrics-only checkpoints cost no storage and keep
    the metric history. Running experiments are left alone.
    """
    plan = plan_gc(keep_best, keep_last, config=state.config)
    for exc in plan.corrupted:
        console.warn(f"skipped: {exc}")
    if plan.running:
        console.info(f"left {plan.running} running experiment(s) alone")
    doomed = plan.doomed
    if not doomed:
        _render.echo(
            f"Nothing to delete: every stopped experiment has at most {keep_best} best and "
            f"{keep_last} last checkpoint(s) with files."
        )
        return
    grid = _render.table("EXPERIMENT", "DELETE", "KEEP")
    for record in plan.records:
        chosen = plan.removal.checkpoints.get(record.id)
        if chosen:
            kept = [c for c in record.checkpoints if c.path and c.id not in chosen]
            grid.add_row(
                short_id(record.id),
                "\n".join(f"{short_id(c.id)} (step {c.step})" for c in chosen.values()),
                "\n".join(f"{short_id(c.id)} (step {c.step})" for c in kept),
            )
    _render.emit(_render.stdout(), grid)
    verb = "Would delete" if dry_run else "Deleting"
    _render.echo(
        f"{verb} {len(doomed)} checkpoint(s) of {len(plan.removal.checkpoints)} experiment(s), "
        f"{decimal(plan.size)}."
    )
    if dry_run:
        return
    _render.confirm(f"Delete {len(doomed)} checkpoint(s) from {state.url}?", force=force)
    run_removal(state, plan.removal)
    _render.echo(f"Deleted {len(doomed)} checkpoint(s).")


COMMANDS = (gc_command,)
