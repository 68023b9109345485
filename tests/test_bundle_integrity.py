"""Bundle integrity end to end (issue 17, item 2): the manifest is covered by its bundle_id, the
runtime, `verify` and `firmware overlay` refuse the same bundles through the same check
(runtime.bundle.load_bundle), the cvimodel's own header outranks the manifest, and the overlay packs
exactly the manifest's files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from firmware.overlay import build_overlay
from runtime.bundle import BundleError, load_bundle, manifest_digest
from runtime.errors import UserError
from test_bundle import make_tiny_bundle

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "bundles"


def bundle_members(tarball: Path) -> set[str]:
    with tarfile.open(tarball) as tar:
        return {m.name for m in tar.getmembers() if m.name.startswith("opt/edgetype/bundle/")}


@pytest.mark.parametrize("name", ["cv181x-int8-w128", "cv180x-int8-w128"])
def test_shipped_bundles_are_sealed_and_load(name):
    bundle = load_bundle(SHIPPED / name)
    assert bundle.manifest["format_version"] == 2
    assert bundle.manifest["bundle_id"] == manifest_digest(bundle.manifest)


def test_overlay_packs_exactly_the_manifest_files_and_nothing_stray(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", chip="cv181x")
    (bundle / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (bundle / ".git").mkdir()
    (bundle / ".git" / "config").write_text("[core]\n")
    (bundle / "notes.txt").write_text("draft")
    build_overlay("duo256m", tmp_path / "o.tar.gz", bundle=bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert bundle_members(tmp_path / "o.tar.gz") == {f"opt/edgetype/bundle/{n}"
                                                     for n in ["manifest.json", *manifest["files"]]}


def test_overlay_refuses_a_file_linked_out_of_the_bundle(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", chip="cv181x")
    (bundle / "config.json").unlink()
    (bundle / "config.json").symlink_to("/etc/passwd")
    with pytest.raises(UserError, match="config.json"):
        build_overlay("duo256m", tmp_path / "o.tar.gz", bundle=bundle)
    assert not (tmp_path / "o.tar.gz").exists()


@pytest.mark.parametrize("breakage", [
    lambda b: (b / "model.cvimodel").write_bytes((b / "model.cvimodel").read_bytes()[:1000]),
    lambda b: (b / "weights.npz").write_bytes((b / "weights.npz").read_bytes() + b"\0"),
    lambda b: (b / "manifest.json").write_text((b / "manifest.json").read_text().replace('"quant": "bf16"',
                                                                                        '"quant": "int8"')),
], ids=["truncated-cvimodel", "wrong-sha256", "edited-manifest"])
def test_runtime_and_overlay_refuse_the_same_bundle_for_the_same_reason(tmp_path, breakage):
    bundle = make_tiny_bundle(tmp_path / "b", chip="cv181x")
    breakage(bundle)
    with pytest.raises(UserError) as runtime_error:
        load_bundle(bundle)
    with pytest.raises(UserError) as overlay_error:
        build_overlay("duo256m", tmp_path / "o.tar.gz", bundle=bundle)
    assert str(runtime_error.value) == str(overlay_error.value)
    assert not (tmp_path / "o.tar.gz").exists()


def test_verify_refuses_a_shipped_bundle_whose_manifest_chip_was_edited(tmp_path):
    """The issue's case: manifest chip cv181x -> cv180x made verify report cv180x while the simulator
    ran cv181x. Sealed again (a careful forger), the cvimodel's own header still says cv181x."""
    from runtime.bundle import seal_manifest

    copy = tmp_path / "bundle"
    shutil.copytree(SHIPPED / "cv181x-int8-w128", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for sealed in (False, True):
        edited = dict(manifest, chip="cv180x")
        (copy / "manifest.json").write_text(json.dumps(seal_manifest(edited) if sealed else edited))
        result = subprocess.run([sys.executable, "-m", "runtime.cli", "verify", str(copy), "--steps", "4"],
                                cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert ("compiled for cv181x" if sealed else "bundle_id does not match") in result.stderr
