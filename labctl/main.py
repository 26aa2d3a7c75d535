"""labctl's entry point: global options and the command groups."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import typer

from labctl import audit, fleet, reports, runs
from labctl.client import DEFAULT_LAB, EXIT_USAGE, CliError, Ctx, report_error
from pilotlab.tls import ClientTls

PROG = "labctl"

app = typer.Typer(help="PilotLab command line: devices, suites, runs, reports and tokens.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(fleet.devices, name="devices")
app.add_typer(fleet.suites, name="suites")
app.add_typer(runs.app, name="run")
app.add_typer(reports.app, name="report")
app.add_typer(fleet.token, name="token")
app.add_typer(fleet.lab, name="lab")
app.add_typer(audit.app, name="audit")


@app.callback()
def _global(c: typer.Context,
            lab: str = typer.Option(DEFAULT_LAB, "--lab", envvar="LAB_ADDR", help="the lab's HOST:PORT"),
            token: str = typer.Option("", "--token", envvar="LAB_TOKEN", help="bearer token"),
            ca: Path | None = typer.Option(None, "--ca", envvar="LAB_CA",
                                           help="the CA the lab's TLS certificate chains to; enables TLS"),
            tls_cert: Path | None = typer.Option(None, "--tls-cert", envvar="LAB_TLS_CERT",
                                                 help="client certificate (PEM), for a lab that requires mutual TLS"),
            tls_key: Path | None = typer.Option(None, "--tls-key", envvar="LAB_TLS_KEY",
                                                help="the private key of --tls-cert (PEM)"),
            insecure: bool = typer.Option(False, "--insecure", envvar="LAB_INSECURE",
                                          help="allow plaintext to a lab not on this machine")) -> None:
    c.obj = Ctx(lab=lab, token=token, tls=ClientTls(ca or None, tls_cert or None, tls_key or None, insecure))


# Typer's parser errors are click's exception classes, wherever they live: typer that depends on click
# raises click.exceptions.*; newer typer (0.29 here) no longer depends on click and raises its vendored
# copy, typer._click.exceptions (whose ClickException derives from typer.TyperException). Recognise them
# by class name within those packages instead of importing either, so labctl never needs click itself.
_PARSER_PACKAGES = ("typer", "click")


def _raised_by_parser(e: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names and cls.__module__.partition(".")[0] in _PARSER_PACKAGES
               for cls in type(e).__mro__)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _usage_message(e: Exception) -> str:
    """What is wrong, in one line, starting lowercase and without a closing full stop."""
    try:
        msg = _one_line(e.format_message())  # type: ignore[attr-defined]
    except Exception:
        msg = _one_line(str(e))
    # Newer typer validates values with pydantic, whose message omits the value itself: add it.
    cause = e.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            given = first.get("input") if isinstance(first, dict) else None
        except Exception:
            given = None
        raw = _one_line(str(getattr(e, "message", "")))
        if isinstance(given, str) and repr(given) not in msg:
            if raw and msg.endswith(raw) and len(raw) > 1:  # "Invalid value for '--x': " + raw
                msg = f"{msg[:-len(raw)]}{given!r}: {raw[0].lower()}{raw[1:]}"
            else:
                msg = f"{msg} (got {given!r})"
    msg = msg.replace(" (env var: 'None')", "")  # typer 0.16 with click 8.2 names an unset env var
    msg = msg.rstrip(". ")
    if len(msg) > 1 and msg[0].isupper() and not msg[1].isupper():
        msg = msg[0].lower() + msg[1:]
    return msg or "invalid usage"


def _error_context(e: Exception) -> typer.Context | None:
    """The context of the command whose arguments were wrong.

    Some parser errors (an option missing its value, a flag given one) are raised without it, as in
    click itself; then it is the innermost `ctx` of the parse that raised them.
    """
    ctx = getattr(e, "ctx", None)
    if ctx is not None:
        return ctx  # type: ignore[no-any-return]
    tb, found = e.__traceback__, None
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("ctx")
        if callable(getattr(candidate, "get_usage", None)) and hasattr(candidate, "command_path"):
            found = candidate
        tb = tb.tb_next
    return found


def _report_usage_error(e: Exception) -> int:
    """A usage line, then one line saying what is wrong and where the help is; exit 2."""
    ctx = _error_context(e)
    command = PROG
    if ctx is not None:
        try:
            print(ctx.get_usage(), file=sys.stderr)
            command = ctx.command_path or PROG
        except Exception:  # a usage line is a courtesy; never let it hide the error
            pass
    print(f"error: {_usage_message(e)}; try '{command} --help'", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's core logs a failed TLS handshake at info level on stderr, beside labctl's own one-line error.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        rv = app(args=None if argv is None else list(argv), prog_name=PROG, standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except CliError as e:
        return report_error(e)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        print("labctl: aborted", file=sys.stderr)
        return 130
    except Exception as e:
        if _raised_by_parser(e, "NoArgsIsHelpError"):
            # A group called without a command: the help is the answer. Rich help is printed while
            # the error is built; plain help is the error's message.
            text = e.format_message() if hasattr(e, "format_message") else ""
            if text.strip():
                print(text, file=sys.stderr)
            return EXIT_USAGE
        if _raised_by_parser(e, "UsageError"):
            return _report_usage_error(e)
        if _raised_by_parser(e, "ClickException", "TyperException"):
            msg = e.format_message() if hasattr(e, "format_message") else str(e)
            print(f"labctl: {_one_line(msg)}", file=sys.stderr)
            code = getattr(e, "exit_code", 1)
            return code if isinstance(code, int) else 1
        raise


if __name__ == "__main__":
    sys.exit(main())
