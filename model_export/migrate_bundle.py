"""Manifest format 1 -> 2 for a bundle you trust (its files still match their sha256).

Format 2 adds `bundle_id`, the sha256 of the canonical manifest (`runtime.bundle.seal_manifest`),
so an edited manifest no longer loads. Nothing else changes: no file is recompiled or rewritten
except manifest.json (written to a temporary file, fsynced, renamed). Used once for the shipped
bundles (models/bundles/*/manifest.json):

    python -c "from model_export.migrate_bundle import migrate_manifest as m; m('models/bundles/cv181x-bf16-w128')"
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from runtime.bundle import (SUPPORTED_FORMAT_VERSION, BundleError, bundle_file, read_json_capped,
                            seal_manifest, sha256_file)


def migrate_manifest(directory: str | Path) -> dict:
    """Seal a format-1 manifest as format 2 after checking every listed file's sha256; returns it."""
    directory = Path(directory)
    where = directory / "manifest.json"
    manifest = read_json_capped(where, "bundle manifest")
    if not isinstance(manifest, dict) or manifest.get("format_version") != 1:
        raise BundleError(f"{where}: not a format-1 manifest (format_version "
                          f"{manifest.get('format_version') if isinstance(manifest, dict) else '?'}); nothing to migrate")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{where}: no files table; re-export instead")
    for name, want in files.items():
        if sha256_file(bundle_file(directory, name, "listed in manifest.json")) != want:
            raise BundleError(f"{directory / name}: sha256 mismatch: this bundle is not the one exported; "
                              "re-export instead of migrating")
    sealed = seal_manifest(manifest)
    assert sealed["format_version"] == SUPPORTED_FORMAT_VERSION
    temporary = where.with_name(f".manifest.json.tmp{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(json.dumps(sealed, indent=1) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, where)
    return sealed
