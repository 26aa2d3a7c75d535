"""labctl's entry point: global options and the command groups."""

from __future__ import annotations

import sys

import typer

from labctl import fleet, reports, runs
from labctl.client import DEFAULT_LAB, CliError, Ctx, report_error

app = typer.Typer(help="PilotLab command line: devices, suites, runs, reports and tokens.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(fleet.devices, name="devices")
app.add_typer(fleet.suites, name="suites")
app.add_typer(runs.app, name="run")
app.add_typer(reports.app, name="report")
app.add_typer(fleet.token, name="token")
app.add_typer(fleet.lab, name="lab")


@app.callback()
def _global(c: typer.Context,
            lab: str = typer.Option(DEFAULT_LAB, "--lab", envvar="LAB_ADDR", help="the lab's HOST:PORT"),
            token: str = typer.Option("", "--token", envvar="LAB_TOKEN", help="bearer token")) -> None:
    c.obj = Ctx(lab=lab, token=token)


def main(argv: list[str] | None = None) -> int:
    try:
        rv = app(args=argv, standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except CliError as e:
        return report_error(e)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        print("labctl: aborted", file=sys.stderr)
        return 130
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.UsageError):
            print(f"labctl: {e.format_message()}", file=sys.stderr)
            return 2
        if isinstance(e, click.exceptions.ClickException):
            print(f"labctl: {e.format_message()}", file=sys.stderr)
            return e.exit_code
        raise


if __name__ == "__main__":
    sys.exit(main())
