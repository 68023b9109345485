"""`edgetype board test` and `edgetype board deploy` (see docs/board.md)."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from runtime.argtypes import positive_seconds
from runtime.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def default_host_bundle() -> Path | None:
    """The bundle a simulated board gets when --bundle is not given (cv181x first: the cmodel)."""
    root = REPO / "models" / "bundles"
    candidates = sorted(root.glob("cv181x-*-w128")) + sorted(root.glob("*-w128"))
    for path in candidates:
        if (path / "manifest.json").is_file():
            return path
    return None


@contextlib.contextmanager
def board_session(port: str, *, user: str, password: str, login_timeout_s: float,
                  log_path: str | None = None, sim_bundle: str | None = None):
    """A logged-in BoardConsole on `port`; `sim://...` starts a simulated board first."""
    from board_tests.console import BoardConsole, open_port, progress

    board = None
    log = open(log_path, "w") if log_path else None
    try:
        if port.startswith("sim://"):
            from board_tests.simboard import SimulatedBoard

            board = SimulatedBoard.from_url(port)
            if board.bundle is None and sim_bundle:
                board.bundle = str(sim_bundle)
            device = board.start()
            progress(f"simulated board on {device} (sandbox {board.sandbox})")
        else:
            device = port
        console = BoardConsole(open_port(device), name=port, log=log, user=user, password=password)
        console.simulated_board = board  # None on a real port
        try:
            progress(f"logging in on {port}")
            console.login(timeout_s=login_timeout_s)
            yield console
        finally:
            console.close()
    finally:
        if board is not None:
            board.stop()
        if log is not None:
            log.close()


def _add_connection_options(parser) -> None:
    parser.add_argument("--port", required=True,
                        help="serial device or pyserial URL: /dev/ttyUSB0, socket://host:port, "
                             "spy://..., or sim:// for the simulated board")
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default="milkv")
    parser.add_argument("--login-timeout", type=positive_seconds, default=30.0, metavar="S")
    parser.add_argument("--log", metavar="FILE", help="copy everything the board prints here")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cmd_board_test(args) -> int:
    from board_tests.console import BoardError, progress
    from board_tests.suite import SuiteReport, build_suite_tarball, run_suite, suite_test_ids

    sim_bundle = args.bundle or default_host_bundle()
    env = {}
    if args.backend:
        env["EDGETYPE_BACKEND"] = args.backend
    if args.board_bundle:
        env["EDGETYPE_BUNDLE"] = args.board_bundle
    if args.port.startswith("sim://") and sim_bundle is None and "bundle=" not in args.port:
        progress("note: no bundle under models/bundles/ for the simulated board: the suite's "
                 "bundle tests will fail (pass --bundle DIR)")
    installed = args.installed or (args.port.startswith("sim://") and not args.suite
                                   and not args.upload and not args.no_packages)
    if installed and args.suite:
        raise UserError("--installed runs the suite the overlay installed: drop --suite")
    # what the run must account for (a missing/empty suite or a -k matching nothing fails here)
    expected = suite_test_ids(suite_dir=Path(args.suite) if args.suite else None, keyword=args.k)
    tarball = None if installed else build_suite_tarball(
        suite_dir=Path(args.suite) if args.suite else None, with_packages=not args.no_packages)
    try:
        with board_session(args.port, user=args.user, password=args.password,
                           login_timeout_s=args.login_timeout, log_path=args.log,
                           sim_bundle=sim_bundle) as console:
            report = run_suite(console, port=args.port, tarball=tarball, board_dir=args.board_dir,
                               env=env, keyword=args.k, python=args.python, timeout_s=args.timeout)
            report.expected = expected
            simulated = console.simulated_board
            if simulated is not None and report.tree is not None:
                report.tree["python"] = str(simulated.board_python)
                report.tree["image"] = simulated.image
                if simulated.overlay is not None:  # the overlay the simulated board has installed
                    report.tree["installed"] = simulated.overlay.describe()
    except BoardError as error:  # never got as far as running the suite
        report = SuiteReport(port=args.port, board_error=str(error))
    except UserError as error:  # the port could not be opened, a bad sim:// option
        if not args.json:
            raise
        report = SuiteReport(port=args.port, board_error=str(error))
        print(json.dumps(report.to_json(), sort_keys=True))
        print(f"edgetype: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), sort_keys=True))
        print(report.summary_text(), file=sys.stderr)
    else:
        print(report.summary_text())
    return 0 if report.ok else 1


def cmd_board_deploy(args) -> int:
    from board_tests.deploy import deploy_overlay

    if args.overlay:  # before any board is touched: a missing file is the user's, not the board's
        overlay = Path(args.overlay)
        if not overlay.is_file():
            raise UserError(f"--overlay {overlay}: no such file; build one with `edgetype firmware overlay`")
        try:
            overlay.open("rb").close()
        except OSError as error:
            raise UserError(f"--overlay {overlay}: cannot read ({error.strerror})") from None

    with board_session(args.port, user=args.user, password=args.password,
                       login_timeout_s=args.login_timeout, log_path=args.log) as console:
        result = deploy_overlay(console, board=args.board, overlay=args.overlay,
                                bundle=args.bundle, with_bundle=not args.no_bundle,
                                start=not args.no_start, timeout_s=args.timeout)
    result["port"] = args.port
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"deployed {result['overlay_bytes']} bytes to {args.port} ({result['init']}); "
              f"service: {result['service']}")
    return 0


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    board = groups["board"]

    test = board.add_parser("test", help="run the on-board test suite over the serial console")
    _add_connection_options(test)
    test.add_argument("--backend", help="backend on the board (default: tpu; cmodel on sim://)")
    test.add_argument("--board-bundle", metavar="PATH",
                      help="bundle directory on the board (default /opt/edgetype/bundle)")
    test.add_argument("--bundle", metavar="DIR",
                      help="host bundle a sim:// board sees as /opt/edgetype/bundle "
                           "(default models/bundles/cv181x-*-w128)")
    test.add_argument("--board-dir", metavar="PATH",
                      help="where the suite is unpacked on the board (default $HOME/edgetype-test)")
    test.add_argument("--suite", metavar="DIR",
                      help="run these test_*.py files instead of board_tests/onboard's")
    test.add_argument("--no-packages", action="store_true",
                      help="do not upload runtime/ tpu_driver/ ...: use those installed on the board")
    test.add_argument("--installed", action="store_true",
                      help="upload nothing: run the suite the firmware overlay installed "
                           "(/opt/edgetype/lib); the default on sim://, whose board has the "
                           "overlay of this checkout installed")
    test.add_argument("--upload", action="store_true",
                      help="on sim://: upload the suite and packages instead (as on a bare board)")
    test.add_argument("-k", metavar="SUBSTRING", help="only tests whose id contains this")
    test.add_argument("--python", default="python3", help="python on the board")
    test.add_argument("--timeout", type=positive_seconds, default=900.0, metavar="S",
                      help="deadline for the whole suite on the board")
    test.set_defaults(func=cmd_board_test)

    deploy = board.add_parser("deploy", help="install the firmware overlay over the serial console")
    _add_connection_options(deploy)
    deploy.add_argument("--board", default="duo256m", choices=["duo", "duo256m", "licheerv-nano"])
    deploy.add_argument("--overlay", metavar="FILE.tar.gz",
                        help="an overlay built by `edgetype firmware overlay` (default: build one)")
    deploy.add_argument("--bundle", metavar="DIR", help="bundle to put in a freshly built overlay")
    deploy.add_argument("--no-bundle", action="store_true",
                        help="leave the bundle out (copy it on the SD card: faster than 115200 baud)")
    deploy.add_argument("--no-start", action="store_true", help="install and enable, do not start")
    deploy.add_argument("--timeout", type=positive_seconds, default=3600.0, metavar="S")
    deploy.set_defaults(func=cmd_board_deploy)

