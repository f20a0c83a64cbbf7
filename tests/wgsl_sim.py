"""Runs a GEMM shader's WGSL (tensor-core or tiled) on the CPU, for tests: no machine here has subgroup
matrices (SwiftShader lacks them and f16), and the WGSL the build swaps in must still be proven.

The function body is translated statement by statement into a Python generator per invocation
(`workgroupBarrier()` yields, so every invocation of a workgroup reaches a barrier before any goes
on); subgroup-matrix builtins act on 16x16 numpy blocks, each invocation computing the whole
fragment, and every call is checked to get the same arguments from all invocations of its
subgroup, as the hardware requires. It covers the WGSL subset the build's generator writes
(let/var, for, if, &&, select, exp/log/max, blocks, array indexing, halves packed to, from and
across words),
not WGSL at large.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

FRAG = 16
_BINDING = re.compile(r"^@group\(0\) @binding\(\d+\) var<storage[^>]*> (\w+) : array<([^;]+)>;$", re.M)
_SHARED = re.compile(r"^var<workgroup> (\w+) : array<(\w+), (\d+)>;$", re.M)


class Word:
    """A u32 holding two halves (x: the low 16 bits, y: the high): the bit operations the WGSL
    uses to move halves between words; the literal 0u is a word of two zero halves."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    @staticmethod
    def of(w):
        if isinstance(w, Word):
            return w
        assert w == 0, f"a word that is no pair of halves: {w!r}"
        return Word(0.0, 0.0)

    def __rshift__(self, n):
        assert n == 16
        return Word(self.y, 0.0)

    def __lshift__(self, n):
        assert n == 16
        return Word(0.0, self.x)

    def __or__(self, other):
        o = Word.of(other)
        assert (self.x == 0 or o.x == 0) and (self.y == 0 or o.y == 0), "or of overlapping halves"
        return Word(self.x + o.x, self.y + o.y)

    __ror__ = __or__


class Vec4Words:
    """A storage buffer read as array<vec4<u32>>: each element is 16 bytes, 4 words of 2 halves
    (`halves`) or of one float each."""

    def __init__(self, values: np.ndarray, halves: bool = True):
        self.values, self.per = values.reshape(-1), 8 if halves else 4

    def __getitem__(self, i):
        v = self.values[self.per * i : self.per * (i + 1)]
        if i < 0 or len(v) != self.per:
            raise IndexError(f"vec4 {i} outside the buffer's {len(self.values)} elements")
        return [Word(v[2 * q], v[2 * q + 1]) for q in range(4)] if self.per == 8 else list(v)

    def __setitem__(self, i, words):
        assert self.per == 8, "the kernels store halves only"
        if i < 0 or 8 * i + 8 > len(self.values):
            raise IndexError(f"vec4 {i} outside the buffer's {len(self.values)} halves")
        self.values[8 * i : 8 * i + 8] = [h for w in words for h in (Word.of(w).x, Word.of(w).y)]


class Strict:
    """A storage buffer as a flat array whose scalar reads must be in bounds: numpy would wrap a
    negative index (an unsigned underflow on the GPU) around to the end."""

    def __init__(self, values: np.ndarray):
        self.values = values.reshape(-1)

    def __getitem__(self, i):
        if isinstance(i, int) and not 0 <= i < len(self.values):
            raise IndexError(f"index {i} outside the buffer's {len(self.values)} elements")
        return self.values[i]

    def __setitem__(self, i, v):
        self.values[i] = v

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


class Invocation:
    """One invocation's view of the subgroup-matrix builtins; `seen` is shared by its subgroup.
    A fragment stored to workgroup memory waits in `pending` (shared by the workgroup) until the
    next barrier: every invocation stores the whole fragment here, so without the wait a lane
    reading it back before a barrier would find it written, where the GPU promises nothing."""

    def __init__(self, sg: int, seen: dict, pending: list | None = None, shared_ids: frozenset = frozenset()):
        self.sg, self.seen, self.calls = sg, seen, 0
        self.pending, self.shared_ids = pending, shared_ids

    def _uniform(self, what, *args):
        key = (self.sg, self.calls)
        self.calls += 1
        first = self.seen.setdefault(key, (what, args))
        if first != (what, args):
            raise AssertionError(
                f"subgroup {self.sg}: {what} call {key[1]} differs between invocations: {first} vs {args}"
            )

    @staticmethod
    def _at(offset, col_major, stride):
        rows, cols = np.arange(FRAG)[:, None], np.arange(FRAG)[None, :]
        return offset + (cols * stride + rows if col_major else rows * stride + cols)

    def load(self, buf, offset, col_major, stride):
        self._uniform("load", id(buf), offset, col_major, stride)
        return np.asarray(buf, dtype=np.float64)[self._at(offset, col_major, stride)]

    def mma(self, a, b, c):
        self._uniform("mma")
        return c + a @ b

    def store(self, buf, offset, frag, col_major, stride):
        self._uniform("store", id(buf), offset, col_major, stride)
        if self.pending is not None and id(buf) in self.shared_ids:
            self.pending.append((buf, self._at(offset, col_major, stride), frag))
            return
        buf[self._at(offset, col_major, stride)] = frag


def _expr(text: str) -> str:
    text = re.sub(r"(\d+)u\b", r"\1", text)
    text = re.sub(r"subgroupMatrixLoad<[^(]*>\(", "_t.load(", text)
    text = re.sub(r"subgroup_matrix_result<[^(]*>\(\)", "np.zeros((16, 16))", text)
    text = text.replace("subgroupMatrixMultiplyAccumulate(", "_t.mma(").replace("vec4<u32>()", "None")
    text = text.replace("bitcast<vec2<f16>>(", "_halves(").replace("bitcast<u32>(vec2<f16>(", "_pair((")
    text = text.replace("bitcast<f32>(", "_float(")
    text = text.replace("vec2<f32>(", "_f16s(")  # only ever converted to vec2<f16> here
    text = text.replace("vec4<u32>(", "_words(").replace("f16(", "_f16(").replace("&&", " and ")
    text = re.sub(r"&(\w+)", r"\1", text).replace("/", "//")
    return text.replace("true", "True").replace("false", "False")


def translate(body: str) -> str:
    """The body of a WGSL compute function as the body of a Python generator function."""
    out, depth = [], 1
    for raw in body.splitlines():
        line = raw.strip()
        pad = "    " * depth
        if not line:
            continue
        if m := re.fullmatch(r"if \((.*)\) \{ return; \}", line):
            out.append(f"{pad}if {_expr(m.group(1))}: return")
        elif m := re.fullmatch(r"for \(var (\w+) = (.*); \1 < (.*); \1 \+= (.*)\) \{", line):
            v, start, stop, step = m.groups()
            out.append(f"{pad}for {v} in range({_expr(start)}, {_expr(stop)}, {_expr(step)}):")
            depth += 1
        elif m := re.fullmatch(r"if \((.*)\) \{", line):
            out.append(f"{pad}if {_expr(m.group(1))}:")
            depth += 1
        elif line == "{":
            out.append(f"{pad}if True:")
            depth += 1
        elif line == "}":
            depth -= 1
        elif line == "workgroupBarrier();":
            out.append(f"{pad}yield")
        elif m := re.fullmatch(r"var (\w+) : [^=]+;", line):
            out.append(f"{pad}{m.group(1)} = None")
        elif m := re.fullmatch(r"(?:let |var )?([^=]+?) = (.*);", line):
            out.append(f"{pad}{_expr(m.group(1))} = {_expr(m.group(2))}")
        elif m := re.fullmatch(r"subgroupMatrixStore\((.*)\);", line):
            out.append(f"{pad}_t.store({_expr(m.group(1))})")
        else:
            raise ValueError(f"statement outside the simulated subset: {line!r}")
    return "\n".join(out)


def run(code: str, grid: tuple[int, int], buffers: dict[str, np.ndarray], subgroup: int = 32) -> dict:
    """Runs every workgroup of `grid` (x, y) over `buffers` (binding name -> float array of the
    values; written in place). Returns the buffers."""
    size = int(re.search(r"@workgroup_size\((\d+)", code).group(1))
    views = {}
    # a GEMM's operands read 16 bytes at a time hold halves or floats: what its workgroup arrays hold
    shared = _SHARED.findall(code)
    halves = not (shared and shared[0][1] == "f32")
    for name, kind in _BINDING.findall(code):
        views[name] = Vec4Words(buffers[name], halves) if kind == "vec4<u32>" else Strict(buffers[name])
    head = code.index("{", code.index("fn "))
    names = [
        "blockIdx",
        "gridDim",
        "podArgs",
        "li",
        "sg",
        "lane",
        "_t",
        *views,
        *(n for n, _, _ in _SHARED.findall(code)),
    ]
    source = f"def _invocation({', '.join(names)}):\n    if False:\n        yield\n{translate(code[head + 1 :])}\n"
    scope = {
        "np": np,
        "_halves": Word.of,
        "_pair": lambda h: Word(*h),  # two halves packed in a word
        "select": lambda f, t, cond: t if cond else f,
        "_words": lambda *w: list(w),
        "_f16": lambda v: float(np.float16(v)),
        "_f16s": lambda *v: tuple(float(np.float16(x)) for x in v),
        "f32": float,
        "fma": lambda a, b, c: a * b + c,
        "_float": lambda w: w,  # bitcast<f32> of a word that holds one float
        "exp": np.exp,
        "log": np.log,
    }
    exec(compile(source, "<wgsl>", "exec"), scope)  # noqa: S102 (the build's own WGSL, translated above)
    for y in range(grid[1]):
        for x in range(grid[0]):
            shared = {n: np.full(int(count), np.nan) for n, _, count in _SHARED.findall(code)}
            seen: dict = {}
            pending: list = []
            shared_ids = frozenset(id(a) for a in shared.values())
            block = SimpleNamespace(x=x, y=y, z=0)
            dims = SimpleNamespace(x=grid[0], y=grid[1], z=1)
            pod = SimpleNamespace(packGridDimX=grid[0])  # tvmjs: the grid's x before packing into z
            running = [
                scope["_invocation"](
                    block,
                    dims,
                    pod,
                    li,
                    li // subgroup,
                    li % subgroup,
                    Invocation(li // subgroup, seen, pending, shared_ids),
                    *views.values(),
                    *shared.values(),
                )
                for li in range(size)
            ]
            while running:
                alive = []
                for inv in running:
                    try:
                        next(inv)
                        alive.append(inv)
                    except StopIteration:
                        pass
                if alive and len(alive) != len(running):
                    raise AssertionError(f"workgroup ({x}, {y}): invocations reach different numbers of barriers")
                for buf, at, frag in pending:  # every invocation is at the barrier: stores land
                    buf[at] = frag
                pending.clear()
                running = alive
    return buffers
