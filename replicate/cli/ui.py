"""``replicate ui``: serve the experiments, their curves and comparisons as a local web page."""

from __future__ import annotations

import webbrowser

import click

from replicate.cli._context import CliState, repository_option
from replicate.config import display_url


@click.command("ui")
@repository_option
@click.option("--port", default=8866, show_default=True, help="Port to listen on (0: any free).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The page has no login: keep it on 127.0.0.1 unless you mean it.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
def ui_command(state: CliState, port: int, host: str, open_browser: bool) -> None:
    """Look at experiments in a web browser: list, charts, downloads, comparisons.

    Read-only, straight from the repository; stop it with Ctrl-C.
    """
    from replicate.ui import make_app, serve

    config = state.config
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: the page has no login: anyone who can reach {host}:{port} can read "
            f"{display_url(config.repository)}",
            err=True,
        )
    app = make_app(config.repository, config.spool_dir, host=host)

    def ready(url: str) -> None:
        click.echo(f"replicate ui: {display_url(config.repository)} at {url} (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(url)

    try:
        serve(app, host, port, ready)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): pick another with --port"
        ) from None
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


COMMANDS = (ui_command,)
