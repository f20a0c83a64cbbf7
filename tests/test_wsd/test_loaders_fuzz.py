"""Python's loaders meet fuzzed files: a sampler table, tensor-cache.json, tokenizer files.
Each either loads or fails with one line naming the file (a WsdError), never another exception."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsd.errors import WsdError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=10,
)
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def mutated(doc):
    """Any field of a valid document replaced by any JSON value (or the document by one)."""
    all_paths = list(paths(doc))

    def put(args):
        where, value = args
        if not where:
            return value
        copy = json.loads(json.dumps(doc))
        node = copy
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        return copy

    return st.tuples(st.sampled_from(all_paths), JSON).map(put)


def one_line(exc: Exception) -> bool:
    return "\n" not in str(exc)


@pytest.fixture(scope="module")
def llvm_dist(tmp_path_factory):
    from wsd.build import BuildOptions, build

    out = tmp_path_factory.mktemp("native")
    return build(BuildOptions("sd15-tiny", random_init=True, target="llvm"), out, echo=lambda *_: None, progress=False)


def test_sampler_tables(llvm_dist):
    from wsd.schedulers import check_table

    table = json.loads((llvm_dist.out / "schedulers" / "pndm-4.json").read_text())
    check_table(table, "pndm-4.json")
    short = json.loads(json.dumps(table))
    short["coeffs"].pop()  # rows that disagree in length would run a wrong loop
    with pytest.raises(WsdError, match='"coeffs" must be'):
        check_table(short, "pndm-4.json")

    @settings(max_examples=300, deadline=None)
    @given(mutated(table))
    def prop(doc):
        try:
            check_table(doc, "pndm-4.json")
        except WsdError as exc:
            assert one_line(exc) and "pndm-4.json" in str(exc)

    prop()


@SLOW
@given(data=st.data())
def test_tensor_cache(llvm_dist, tmp_path_factory, data):
    from wsd.native import NativeModel

    dist = tmp_path_factory.mktemp("tc") / "m"
    shutil.copytree(llvm_dist.out, dist)
    doc = json.loads((dist / "tensor-cache.json").read_text())
    doc["records"][0]["records"] = doc["records"][0]["records"][:3]  # keep the paths to fuzz few
    (dist / "tensor-cache.json").write_text(json.dumps(data.draw(mutated(doc))))
    try:
        NativeModel(dist)
    except WsdError as exc:
        assert one_line(exc) and "tensor-cache.json" in str(exc)


@SLOW
@given(vocab=st.one_of(JSON, st.dictionaries(st.text(max_size=5), JSON, max_size=6)), merges=st.text(max_size=60))
def test_tokenizer_files(tiny_folder, tmp_path_factory, vocab, merges):
    from wsd.models.folder import _load_tokenizer

    root = tmp_path_factory.mktemp("tok")
    shutil.copytree(tiny_folder / "tokenizer", root / "tokenizer")
    (root / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (root / "tokenizer" / "merges.txt").write_text(merges)
    try:
        tok = _load_tokenizer(root, "tokenizer", 77)
    except WsdError as exc:
        assert one_line(exc) and "tokenizer" in str(exc)
    else:
        ids = tok("a photo", padding="max_length", max_length=77, truncation=True).input_ids
        assert len(ids) == 77 and all(isinstance(i, int) for i in ids)
