"""Byte compatibility of wsd's runtime support headers with what libtvm writes.

Two links: the Python model (serial_ref) decodes libtvm's real output, and the C++
shim, compiled natively into a probe, reads and re-writes exactly the bytes the model
writes, for values hypothesis generates. The browser tests close the loop: executables
serialized by libtvm load and run in the wasm runtime built with these headers.
"""

from __future__ import annotations

import base64
import struct
import subprocess
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import serial_ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SHIM = Path(__file__).resolve().parents[2] / "wsd" / "webrt" / "shim"
PROBE_SRC = Path(__file__).resolve().parents[1] / "native" / "serializer_probe.cc"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="session")
def probe(tmp_path_factory):
    ffi = Path(find_spec("tvm_ffi").submodule_search_locations[0])
    exe = tmp_path_factory.mktemp("probe") / "serializer_probe"
    cmd = [
        "g++",
        "-std=c++17",
        "-O1",
        f"-I{SHIM}",
        f"-I{SHIM / 'include'}",
        f"-I{SHIM / '3rdparty' / 'compiler-rt'}",
        f"-I{ffi / 'include'}",
        f"-I{ffi / '3rdparty' / 'dlpack' / 'include'}",
        str(PROBE_SRC),
        "-o",
        str(exe),
        f"-L{ffi / 'lib'}",
        "-ltvm_ffi",
        f"-Wl,-rpath,{ffi / 'lib'}",
    ]
    subprocess.run(cmd, check=True)

    def call(mode: str, data: bytes) -> tuple[int, bytes]:
        proc = subprocess.run([str(exe), mode], input=data, capture_output=True, timeout=30)
        return proc.returncode, proc.stdout

    return call


text = st.text(max_size=40)
i64 = st.integers(-(2**63), 2**63 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
dtype = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535))
VALUES = {
    "i32": i32,
    "u64": st.integers(0, 2**64 - 1),
    "f64": st.floats(allow_nan=False),
    "dtype": dtype,
    "device": st.tuples(i32, i32),
    "str": text,
    "vec<str>": st.lists(text, max_size=8),
    "vec<i64>": st.lists(i64, max_size=20),
    "vec<vec<i32>>": st.lists(st.lists(i32, max_size=5), max_size=5),
    "pair<str,i32>": st.tuples(text, i32),
    "map<i64,str>": st.dictionaries(i64, text, max_size=6),
    "map<str,str>": st.dictionaries(text, text, max_size=6),
    "arr<fstr>": st.lists(text, max_size=8),
    "arr<dtype>": st.lists(dtype, max_size=8),
    "fmap<fstr,fstr>": st.dictionaries(text, text, max_size=6),
}


@pytest.mark.parametrize("typ", sorted(VALUES))
def test_shim_reads_and_rewrites_the_reference_bytes(probe, typ):
    @FAST
    @given(VALUES[typ])
    def check(value):
        data = serial_ref.encode(typ, value)
        rc, out = probe(typ, data)
        assert rc == 0, f"shim failed to decode {typ} (rc {rc})"
        if typ.startswith(("map", "fmap")):  # hash-map iteration order is the container's own
            decoded, end = serial_ref.decode(typ, out)
            assert end == len(out) and decoded == value
        else:
            assert out == data

    check()


@pytest.mark.parametrize("typ", ["str", "vec<str>", "vec<i64>", "map<str,str>", "arr<fstr>", "dtype"])
def test_shim_refuses_truncated_input(probe, typ):
    @FAST
    @given(VALUES[typ], st.data())
    def check(value, data):
        blob = serial_ref.encode(typ, value)
        cut = data.draw(st.integers(0, len(blob) - 1))
        rc, _ = probe(typ, blob[:cut])
        assert rc == 3, f"a {typ} cut to {cut}/{len(blob)} bytes must fail to decode"

    check()


def test_shim_refuses_an_absurd_length_without_allocating_it(probe):
    rc, _ = probe("vec<i64>", struct.pack("<Q", 2**62) + b"\0" * 16)
    assert rc == 3


@FAST
@given(st.binary(max_size=200))
def test_base64_matches_python(probe, blob):
    rc, enc = probe("b64enc", blob)
    assert rc == 0 and enc == base64.b64encode(blob)
    rc, dec = probe("b64dec", enc)
    assert rc == 0 and dec == blob


def test_base64_decoder_skips_whitespace_and_rejects_garbage(probe):
    assert probe("b64dec", b"YWJj\nZA==\n") == (0, b"abcd")
    rc, _ = probe("b64dec", b"YW*j")
    assert rc != 0


def test_every_half_widens_exactly(probe):
    halves = np.arange(65536, dtype=np.uint16)
    rc, out = probe("f16>f32", halves.tobytes())
    assert rc == 0
    got = np.frombuffer(out, dtype=np.float32)
    want = halves.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_float_narrowing_rounds_like_numpy(probe):
    rng = np.random.default_rng(0)
    floats = np.concatenate(
        [
            rng.standard_normal(20000).astype(np.float32) * np.float32(100),
            np.float32([0.0, -0.0, 65504.0, 65520.0, 1e-8, 6e-8, 5.96e-8, 1e9, -np.inf, np.inf]),
            (rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)).view(np.float32),
        ]
    )
    rc, out = probe("f32>f16", floats.tobytes())
    assert rc == 0
    got = np.frombuffer(out, dtype=np.uint16)
    with np.errstate(over="ignore"):
        want = floats.astype(np.float16)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got.view(np.float16)), nan)
    assert np.array_equal(got[~nan], want[~nan].view(np.uint16))


ring_ops = st.lists(
    st.one_of(
        st.tuples(st.just("W"), st.binary(min_size=1, max_size=3000)),
        st.tuples(st.just("R"), st.integers(0, 4000)),
        st.tuples(st.just("C"), st.integers(0, 4000)),
        st.tuples(st.just("F"), st.integers(0, 3000)),
    ),
    max_size=30,
)


@FAST
@given(ring_ops)
def test_ring_buffer_is_a_fifo(probe, ops):
    """Whatever the mix of pushes and pops, bytes come out in the order they went in."""
    pushed, script, exact = b"", b"", True
    for op, arg in ops:
        if op == "W":
            script += b"W" + struct.pack("<I", len(arg)) + arg
            pushed += arg
        elif op == "F":
            script += b"F" + struct.pack("<I", arg)
            pushed += b"\xab" * arg
        else:
            script += op.encode() + struct.pack("<I", arg)
            exact &= op == "R"  # a callback read may take less than asked
    rc, out = probe("ring", script)
    assert rc == 0
    popped, (avail,) = out[:-8], struct.unpack("<Q", out[-8:])
    assert pushed.startswith(popped)
    assert avail == len(pushed) - len(popped)
    if exact:  # only R pops: the model knows exactly how much each took
        model = 0
        for op, arg in ops:
            if op in "WF":
                model += len(arg) if op == "W" else arg
            else:
                model -= min(arg, model)
        assert avail == model


def test_arena_and_utils(probe):
    sizes = np.random.default_rng(1).integers(0, 2**32, 300, dtype=np.uint64).astype(np.uint32)
    assert probe("arena", sizes.tobytes()) == (0, b"ok")


def test_reference_model_reads_libtvm_param_blobs():
    """The Python model agrees with libtvm's real bytes (strings, vectors, tensor records)."""
    import tvm

    params = {
        "conv.weight": np.arange(24, dtype="float32").reshape(2, 3, 4),
        "idx": np.array([7, -1], "int64"),
        "ü-name": np.zeros((0,), "float16"),
    }
    blob = bytes(tvm.runtime.save_param_dict({k: tvm.runtime.tensor(v) for k, v in params.items()}))
    decoded = serial_ref.decode_params(blob)
    assert set(decoded) == set(params)
    for name, array in params.items():
        (code, bits, lanes), shape, raw = decoded[name]
        assert shape == list(array.shape) and bits == array.dtype.itemsize * 8 and lanes == 1
        assert raw == array.tobytes()
