"""Calls from a kernel into another through the callee's address (kernels/calls.py): the same
results and errors as a direct call, a refused call for an address of other argument types,
no callee code in the caller's, a caller typed against a declared return type without the
callee compiled, and a caller loaded from the cache in a new process."""
import numpy as np
import pytest
from numba import njit, typeof, types

from fastbp.kernels.calls import by_address, entry, entry_for, signature_key, type_key

from processes import python_in


@njit(cache=False)
def add_and_sum(a, k):
    if k > 5:
        raise ValueError("k is over 5")
    s = 0.0
    for i in range(a.shape[0]):
        a[i] += k
        s += a[i]
    return s


call_add_and_sum = by_address(add_and_sum)


@njit(cache=False)
def caller(fns, a, k):
    return call_add_and_sum(fns[0], fns[1], (a, k))


def fns_for(a, k):
    return np.array(entry(add_and_sum, (typeof(a), typeof(k))), np.int64)


def test_a_call_by_address_does_what_a_direct_call_does():
    a, b = np.arange(5.0), np.arange(5.0)
    assert caller(fns_for(a, 3), a, 3) == add_and_sum(b, 3)
    np.testing.assert_array_equal(a, b)


def test_an_error_in_the_callee_reaches_the_caller():
    with pytest.raises(ValueError, match="k is over 5"):
        caller(fns_for(np.zeros(3), 6), np.zeros(3), 6)


def test_an_address_of_other_types_or_none_is_refused_before_the_call():
    a = np.zeros(3)
    f32 = np.zeros(3, np.float32)
    add_and_sum(f32, 1)                              # a float32 version exists: its entry is real
    for fns in (np.array(entry(add_and_sum, (typeof(f32), types.int64)), np.int64), np.array([0, fns_for(a, 1)[1]])):
        with pytest.raises(RuntimeError, match="not of its code"):
            caller(fns, a, 1)
        assert not a.any()


def test_the_caller_holds_none_of_the_callees_code():
    a = np.zeros(3)
    caller(fns_for(a, 1), a, 1)
    ir = caller.overloads[caller.signatures[0]].library.get_llvm_str()
    defined = [line for line in ir.splitlines() if line.startswith("define")]
    assert defined and not any("add_and_sum" in line for line in defined)
    assert any(line.startswith("define") and "add_and_sum" in line
               for line in add_and_sum.overloads[(typeof(a), types.int64)].library.get_llvm_str().splitlines())


def test_keys_and_memo():
    a = np.zeros(3)
    assert signature_key(add_and_sum, (typeof(a), types.int64)) != signature_key(add_and_sum, (typeof(a), types.int32))
    assert entry_for(add_and_sum, (a, np.int64(1))) == tuple(fns_for(a, np.int64(1)))
    r = a.copy()
    r.flags.writeable = False
    assert type_key(a) != type_key(r) and type_key(a) == type_key(np.ones(7))
    assert type_key(a[::2]) != type_key(a)


@njit(cache=False)
def double(a):
    for i in range(a.shape[0]):
        a[i] *= 2.0


call_double = by_address(double, returns=types.none)


@njit(cache=False)
def declared_caller(fns, a):
    call_double(fns[0], fns[1], (a,))


def test_a_declared_return_type_types_the_caller_without_compiling_the_callee():
    a = np.ones(3)
    declared_caller.compile((typeof(np.zeros(2, np.int64)), typeof(a)))
    assert not double.overloads                    # so the two can compile at once, in two processes
    declared_caller(np.array(entry(double, (typeof(a),)), np.int64), a)
    np.testing.assert_array_equal(a, 2.0)


def test_entry_refuses_code_whose_return_type_is_not_the_declared_one():
    @njit(cache=False)
    def seven(a):
        return 7.0

    by_address(seven, returns=types.none)
    with pytest.raises(TypeError, match="returns float64"):
        entry(seven, (typeof(np.ones(2)),))


MODULE = """
import numpy as np
from numba import typeof
from fastbp.kernels.calls import by_address, entry
from fastbp.kernels.jit import kernel


@kernel
def scale(a, k):
    for i in range(a.shape[0]):
        a[i] *= k


call_scale = by_address(scale)


@kernel
def total(fns, a, k):
    call_scale(fns[0], fns[1], (a, k))
    return a.sum()


def run():
    a = np.ones(10)
    fns = np.array(entry(scale, (typeof(a), typeof(3.0))), np.int64)
    return total(fns, a, 3.0), len(total.stats.cache_hits)
"""


def test_a_cached_caller_loaded_in_a_new_process_calls_its_callee(tmp_path):
    (tmp_path / "calls_mod.py").write_text(MODULE)
    first = python_in(tmp_path, "import calls_mod; print(*calls_mod.run())", check=True).stdout.split()
    second = python_in(tmp_path, "import calls_mod; print(*calls_mod.run())", check=True).stdout.split()
    assert first == ["30.0", "0"] and second == ["30.0", "1"]
