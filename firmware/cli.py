"""`edgetype firmware overlay` (see docs/board.md and firmware/README.md)."""
from __future__ import annotations

import json

from firmware.images import DEFAULT_IMAGE, IMAGES


def cmd_firmware_overlay(args) -> int:
    from firmware.overlay import build_overlay

    record = build_overlay(args.board, args.output, bundle=args.bundle,
                           with_bundle=not args.no_bundle, image=args.image)
    if args.json:
        summary = {k: v for k, v in record.items() if k != "files"}
        summary["file_count"] = len(record["files"])
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"{record['output']}: {record['bytes']} bytes, {len(record['files'])} files, "
              f"board {record['board']} ({record['chip']} {record['quant']}), "
              f"image {record['image']}, "
              f"sha256 {record['sha256'][:16]}")
    return 0


def register(subparsers, groups):
    """Add this package's subcommands; `groups` holds the shared `eval`/`bench`/`board` groups."""
    firmware = subparsers.add_parser("firmware", help="build what goes onto a board's file system")
    commands = firmware.add_subparsers(dest="firmware_command", metavar="WHAT")
    firmware.set_defaults(func=lambda args: (firmware.print_help(), 2)[1])
    overlay = commands.add_parser("overlay", help="rootfs overlay: init script, packages, bundle")
    overlay.add_argument("--board", required=True, choices=["duo", "duo256m", "licheerv-nano"])
    overlay.add_argument("--image", choices=sorted(IMAGES),
                         help="the board's operating system image (firmware/README.md); default: "
                              + ", ".join(f"{b} {i}" for b, i in DEFAULT_IMAGE.items()))
    overlay.add_argument("-o", "--output", required=True, metavar="FILE.tar.gz")
    overlay.add_argument("--bundle", metavar="DIR",
                         help="bundle directory (default models/bundles/<chip>-<quant>-w128)")
    overlay.add_argument("--no-bundle", action="store_true",
                         help="leave the bundle out (copy it onto the board separately)")
    overlay.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    overlay.set_defaults(func=cmd_firmware_overlay)
