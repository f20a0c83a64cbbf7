"""One list of fault names: every fault the compiler can inject (wsd/faults.py KINDS) is a
harness fault of the same name (conformance/faults.py), rebuilt with `--inject NAME@ENTRY`."""

from __future__ import annotations

from conformance import faults
from wsd import faults as compiler_faults


def test_every_compiler_fault_is_a_harness_fault_of_the_same_name():
    rebuilt = {f.name for f in faults.FAULTS if f.rebuilds}
    assert set(compiler_faults.KINDS) == rebuilt


def test_a_rebuilt_fault_injects_its_own_name():
    for fault in faults.FAULTS:
        if fault.rebuilds:
            kind, entry = compiler_faults.parse(fault.inject)
            assert kind == fault.name and entry == fault.apply.entry
        else:
            assert fault.inject == ""


def test_shared_code_faults_are_those_wsd_patches():
    shared = {f.name for f in faults.FAULTS if f.shared_code}
    assert shared == set(compiler_faults.SHARED_CODE_FAULTS)
