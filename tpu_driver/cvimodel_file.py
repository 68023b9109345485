"""Read a cvimodel's header and flatbuffer description in pure Python, before the runtime sees it.

The runtime (cviruntime `model.cpp`) trusts the file: it does not verify the md5 ("TODO") and
walks the flatbuffer unchecked, so a truncated or corrupt file can crash the process. We check
first. File layout (cviruntime `MODEL_HEADER`, 48 bytes, little-endian):

    char magic[8]      "CviModel"
    uint32 body_size   bytes of the flatbuffer body that follows the header
    char major, minor  cvimodel format version (1.4 from tpu-mlir 1.30.2)
    uint8 md5[16]      md5 of everything after the header (body + weight/cmdbuf sections)
    char chip[16]      "cv180x" / "cv181x" (NUL padded)
    char padding[2]

then the flatbuffer `cvi.model.Model` (tpu-mlir `include/tpu_mlir/Builder/CV18xx/proto/cvimodel.fbs`),
then the binary sections at `header + body_size + section.offset`.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

from tpu_driver.errors import ModelFileError

MAGIC = b"CviModel"
HEADER_FORMAT = "<8sIBB16s16s2s"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)  # 48
# fbs enum DType -> numpy-ish name
DTYPE_NAMES = {0: "float32", 1: "int32", 2: "uint32", 3: "bfloat16", 4: "int16", 5: "uint16", 6: "int8", 7: "uint8"}
# chip codenames the runtime also accepts in the header
CHIP_ALIASES = {"mars": "cv181x", "phobos": "cv180x"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # from the flatbuffer, as compiled
    dtype: str  # DTYPE_NAMES value
    qscale: float | None


@dataclass(frozen=True)
class ProgramInfo:
    inputs: tuple  # TensorInfo per input, in order
    outputs: tuple  # TensorInfo per output, in order
    tensor_dtypes: tuple = ()  # sorted dtype names of every tensor of the program (int8 => INT8 model)


@dataclass(frozen=True)
class CvimodelInfo:
    path: Path | None
    chip: str  # normalised: cv180x / cv181x / ...
    version: tuple  # (major, minor) of the header
    body_version: tuple  # (major, minor, sub_minor) of the flatbuffer
    name: str
    target: str | None
    mlir_version: str | None
    build_time: str | None
    programs: tuple = field(default_factory=tuple)  # ProgramInfo per program
    file_size: int = 0

    @property
    def tensor_dtypes(self) -> tuple:
        """Sorted dtype names over all programs' tensors (the quantisation the model was built with)."""
        return tuple(sorted({d for program in self.programs for d in program.tensor_dtypes}))


class _FlatBuffer:
    """Bounds-checked reader for the few flatbuffer tables we need (no external dependency)."""

    def __init__(self, data: bytes, what: str):
        self.data = data
        self.what = what

    def _bad(self, detail: str):
        return ModelFileError(f"{self.what}: corrupt cvimodel flatbuffer ({detail}); recompile or re-copy the file")

    def u8(self, pos):
        return self._unpack("<B", pos)

    def u16(self, pos):
        return self._unpack("<H", pos)

    def u32(self, pos):
        return self._unpack("<I", pos)

    def i32(self, pos):
        return self._unpack("<i", pos)

    def _unpack(self, fmt, pos):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise self._bad(f"read at {pos} past end {len(self.data)}")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return self.u32(0)

    def field_pos(self, table: int, index: int) -> int | None:
        """Absolute position of field `index` of the table at `table`, or None when absent."""
        vtable = table - self.i32(table)
        vtable_size = self.u16(vtable)
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = self.u16(vtable + slot)
        return table + offset if offset else None

    def ref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def string(self, table: int, index: int) -> str | None:
        pos = self.field_pos(table, index)
        if pos is None:
            return None
        start = self.ref(pos)
        length = self.u32(start)
        if start + 4 + length > len(self.data):
            raise self._bad("string past end")
        return self.data[start + 4:start + 4 + length].decode("utf-8", errors="replace")

    def vector(self, table: int, index: int) -> list[int]:
        """Positions of the elements of a vector of tables/strings (offsets resolved)."""
        pos = self.field_pos(table, index)
        if pos is None:
            return []
        start = self.ref(pos)
        count = self.u32(start)
        if count > len(self.data) // 4:
            raise self._bad(f"vector length {count}")
        return [self.ref(start + 4 + 4 * i) for i in range(count)]

    def scalar_vector(self, table: int, index: int, fmt: str) -> list:
        pos = self.field_pos(table, index)
        if pos is None:
            return []
        start = self.ref(pos)
        count = self.u32(start)
        size = struct.calcsize(fmt)
        if start + 4 + count * size > len(self.data):
            raise self._bad("vector past end")
        return list(struct.unpack_from(f"<{count}{fmt[-1]}", self.data, start + 4))


def parse_header(head: bytes, what: str) -> tuple:
    """(body_size, major, minor, md5, chip) from the first 48 bytes; ModelFileError when not a cvimodel."""
    if len(head) < HEADER_SIZE:
        raise ModelFileError(f"{what}: {len(head)} bytes is too short to be a cvimodel (header is {HEADER_SIZE})")
    magic, body_size, major, minor, md5, chip, _ = struct.unpack(HEADER_FORMAT, head[:HEADER_SIZE])
    if magic != MAGIC:
        raise ModelFileError(f"{what}: not a cvimodel (magic {magic[:8]!r}, expected {MAGIC!r}); "
                             "pass the .cvimodel written by model_deploy")
    chip_name = chip.split(b"\0", 1)[0].decode("ascii", errors="replace")
    return body_size, major, minor, md5, CHIP_ALIASES.get(chip_name, chip_name)


def read_cvimodel_info(source, verify_md5: bool = True) -> CvimodelInfo:
    """Parse and check a cvimodel (path or bytes). Raises ModelFileError naming the problem."""
    path = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        what = "cvimodel buffer"
    else:
        path = Path(source)
        what = str(path)
        if not path.exists():
            raise ModelFileError(f"{what}: no such cvimodel file")
        if not path.is_file():
            raise ModelFileError(f"{what}: is not a regular file")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ModelFileError(f"{what}: cannot read ({error.strerror}); check its permissions") from None
    body_size, major, minor, md5, chip = parse_header(data, what)
    if major == 1 and minor == 0:
        raise ModelFileError(f"{what}: cvimodel format 1.0 (cv183x era) is not supported; recompile with tpu-mlir")
    if HEADER_SIZE + body_size > len(data):
        raise ModelFileError(f"{what}: truncated: header says {HEADER_SIZE + body_size}+ bytes, file has "
                             f"{len(data)}; re-copy or recompile it")
    if verify_md5 and hashlib.md5(data[HEADER_SIZE:]).digest() != md5:
        raise ModelFileError(f"{what}: md5 mismatch (file truncated or corrupt; or straight from `model_tool "
                             "--combine`, which leaves the md5 unset: see cvimodel_file.rewrite_md5); re-copy "
                             "or recompile it")
    fb = _FlatBuffer(data[HEADER_SIZE:HEADER_SIZE + body_size], what)
    try:
        return _parse_body(fb, data, path, what, (major, minor), chip, body_size)
    except (struct.error, IndexError, ValueError, OverflowError, RecursionError) as error:
        raise fb._bad(f"{type(error).__name__}: {str(error)[:60]}") from None


def _parse_body(fb: _FlatBuffer, data: bytes, path, what: str, version: tuple, chip: str,
                body_size: int) -> CvimodelInfo:
    """The flatbuffer walk of read_cvimodel_info (every read bounds-checked by _FlatBuffer)."""
    model = fb.root()
    version_pos = fb.field_pos(model, 0)
    if version_pos is None:
        raise fb._bad("no version")
    body_version = (fb.u8(version_pos), fb.u8(version_pos + 1), fb.u8(version_pos + 2))
    programs = []
    for program in fb.vector(model, 6):
        tensors = {}
        for tensor in fb.vector(program, 4):
            name = fb.string(tensor, 1) or ""
            dtype_pos = fb.field_pos(tensor, 3)
            dtype = DTYPE_NAMES.get(fb.u8(dtype_pos) if dtype_pos is not None else 0, "unknown")
            shape_pos = fb.field_pos(tensor, 4)
            shape = tuple(fb.scalar_vector(fb.ref(shape_pos), 0, "q")) if shape_pos is not None else ()
            quant_pos = fb.field_pos(tensor, 6)
            qscale = None
            if quant_pos is not None:
                qscale_pos = fb.field_pos(fb.ref(quant_pos), 4)
                qscale = struct.unpack_from("<f", fb.data, qscale_pos)[0] if qscale_pos is not None else None
            tensors[name] = TensorInfo(name, shape, dtype, qscale)
        inputs = tuple(tensors.get(n, TensorInfo(n, (), "unknown", None)) for n in _strings(fb, program, 2))
        outputs = tuple(tensors.get(n, TensorInfo(n, (), "unknown", None)) for n in _strings(fb, program, 3))
        programs.append(ProgramInfo(inputs, outputs, tuple(sorted({t.dtype for t in tensors.values()}))))
    if not programs:
        raise fb._bad("no programs")
    section_end = HEADER_SIZE + body_size
    for section in fb.vector(model, 7):
        size_pos, offset_pos = fb.field_pos(section, 2), fb.field_pos(section, 3)
        size = fb.u32(size_pos) if size_pos is not None else 0
        offset = fb.u32(offset_pos) if offset_pos is not None else 0
        if section_end + offset + size > len(data):
            raise ModelFileError(f"{what}: truncated: section {fb.string(section, 1)!r} ends past the file end; "
                                 "re-copy or recompile it")
    return CvimodelInfo(path=path, chip=chip, version=version, body_version=body_version,
                        name=fb.string(model, 1) or "", target=fb.string(model, 8),
                        mlir_version=fb.string(model, 9), build_time=fb.string(model, 2),
                        programs=tuple(programs), file_size=len(data))


def rewrite_md5(path) -> None:
    """Set the header md5 to md5(everything after the header), as model_deploy writes it.

    For files from `model_tool --combine` (tpu-mlir 1.30.2), which leaves the field unset. Parses the
    file afterwards (without the md5) so a structurally broken file is still refused.
    """
    path = Path(path)
    data = bytearray(path.read_bytes())
    parse_header(bytes(data[:HEADER_SIZE]), str(path))
    data[14:30] = hashlib.md5(bytes(data[HEADER_SIZE:])).digest()
    read_cvimodel_info(bytes(data), verify_md5=False)
    path.write_bytes(bytes(data))


def _strings(fb: _FlatBuffer, table: int, index: int) -> list[str]:
    out = []
    for start in fb.vector(table, index):
        length = fb.u32(start)
        out.append(fb.data[start + 4:start + 4 + length].decode("utf-8", errors="replace"))
    return out
