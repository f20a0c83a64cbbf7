"""An independent Python model of the byte format that libtvm writes and wsd's shim reads.

Written from the format's description (wsd/webrt/shim/include/tvm/support/serializer.h),
and checked against libtvm's own output in test_webrt_shim.py, so it can judge the C++.
Types are small expressions: i32 u64 f64 dtype device str vec<T> pair<A,B> map<K,V>
(arr<T>, fstr and fmap<K,V> are the ffi:: containers, same bytes).
"""

from __future__ import annotations

import struct

SCALARS = {"i32": "<i", "u64": "<Q", "i64": "<q", "f64": "<d", "u8": "<B", "u16": "<H"}
STRUCTS = {"dtype": "<BBH", "device": "<ii"}


def _split_args(inner: str) -> list[str]:
    depth, parts, cur = 0, [], ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "<"
        depth -= ch == ">"
        cur += ch
    return parts + [cur]


def parse(typ: str) -> tuple[str, list[str]]:
    if "<" not in typ:
        return typ, []
    head, inner = typ.split("<", 1)
    return head, _split_args(inner[:-1])


def encode(typ: str, value) -> bytes:
    head, args = parse(typ)
    if head in SCALARS:
        return struct.pack(SCALARS[head], value)
    if head in STRUCTS:
        return struct.pack(STRUCTS[head], *value)
    if head in ("str", "fstr"):
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return struct.pack("<Q", len(raw)) + raw
    if head in ("vec", "arr"):
        return struct.pack("<Q", len(value)) + b"".join(encode(args[0], v) for v in value)
    if head == "pair":
        return encode(args[0], value[0]) + encode(args[1], value[1])
    if head in ("map", "fmap"):
        return struct.pack("<Q", len(value)) + b"".join(
            encode(args[0], k) + encode(args[1], v) for k, v in value.items()
        )
    raise ValueError(f"unknown type {typ}")


def decode(typ: str, data: bytes, pos: int = 0):
    """Returns (value, new_pos); raises ValueError on short input."""
    head, args = parse(typ)

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise ValueError("short read")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    if head in SCALARS:
        fmt = SCALARS[head]
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0], pos
    if head in STRUCTS:
        fmt = STRUCTS[head]
        return struct.unpack(fmt, take(struct.calcsize(fmt))), pos
    if head in ("str", "fstr"):
        (n,) = struct.unpack("<Q", take(8))
        return take(n).decode(), pos
    if head in ("vec", "arr"):
        (n,) = struct.unpack("<Q", take(8))
        items = []
        for _ in range(n):
            item, pos = decode(args[0], data, pos)
            items.append(item)
        return items, pos
    if head == "pair":
        a, pos = decode(args[0], data, pos)
        b, pos = decode(args[1], data, pos)
        return (a, b), pos
    if head in ("map", "fmap"):
        (n,) = struct.unpack("<Q", take(8))
        out = {}
        for _ in range(n):
            k, pos = decode(args[0], data, pos)
            v, pos = decode(args[1], data, pos)
            out[k] = v
        return out, pos
    raise ValueError(f"unknown type {typ}")


TENSOR_MAGIC = 0xDD5E40F096B4A13F
TENSOR_LIST_MAGIC = 0xF7E58D4F05049CB7


def decode_tensor(data: bytes, pos: int):
    """One SaveDLTensor record -> (dtype tuple, shape, raw bytes), new pos."""
    magic, pos = decode("u64", data, pos)
    if magic != TENSOR_MAGIC:
        raise ValueError("bad tensor magic")
    _reserved, pos = decode("u64", data, pos)
    _device, pos = decode("device", data, pos)
    ndim, pos = decode("i32", data, pos)
    dtype, pos = decode("dtype", data, pos)
    shape = list(struct.unpack(f"<{ndim}q", data[pos : pos + 8 * ndim]))
    pos += 8 * ndim
    nbytes, pos = decode("i64", data, pos)
    return (dtype, shape, data[pos : pos + nbytes]), pos + nbytes


def decode_params(blob: bytes) -> dict:
    """A libtvm parameter blob (save_param_dict): list magic, reserved, names, tensors."""
    magic, pos = decode("u64", blob)
    if magic != TENSOR_LIST_MAGIC:
        raise ValueError("bad tensor-list magic")
    _reserved, pos = decode("u64", blob, pos)
    names, pos = decode("vec<str>", blob, pos)
    count, pos = decode("u64", blob, pos)
    tensors = []
    for _ in range(count):
        tensor, pos = decode_tensor(blob, pos)
        tensors.append(tensor)
    if pos != len(blob):
        raise ValueError("trailing bytes")
    return dict(zip(names, tensors, strict=False))
