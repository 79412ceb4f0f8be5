"""Calls from one kernel into another through the callee's address, given at run time.

numba compiles a kernel that calls another kernel by linking the callee's code into the
caller's module and generating machine code for all of it again (see jit.py): the entry points
at the top of a deep call tree spend most of their compile time on code that is compiled
already. A call made through ``by_address(callee)`` instead declares nothing of the callee in
the caller's module: the caller is typed against the callee's compiled signature (compiling
the callee first if needed, as a direct call does) and calls it at the address it is given at
run time, so the caller's code never holds the callee's. The address is an argument, not a
constant, so the caller stays cacheable; ``entry`` gives it from Python, with a key of the
argument types the call checks first.

The callee's calling convention is numba's own for kernels (what a direct call uses), so a
call by address costs what a direct call does, and errors raised in the callee propagate the
same way.

With the callee's return type declared (``by_address(callee, returns=...)``), the caller is
typed and compiled without compiling the callee at all, so the two can compile at once in two
processes (epoch.compile_ahead); ``entry`` then refuses code whose return type is not the one
declared.
"""
import hashlib

import numpy as np
from numba import typeof, types
from numba.core import cgutils
from numba.extending import intrinsic


def _compiled(dispatcher, argtypes):
    """The compile result of ``dispatcher`` for ``argtypes``, compiling (or loading) it if needed."""
    argtypes = tuple(argtypes)
    if argtypes not in dispatcher.overloads:
        dispatcher.compile(argtypes)
    return dispatcher.overloads[argtypes]


def signature_key(dispatcher, argtypes):
    """An int64 naming ``dispatcher`` and the argument types ``argtypes``, the same in every process."""
    text = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}{tuple(argtypes)}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


# {dispatcher: the return type a by_address call of it declared}
_DECLARED = {}


def entry(dispatcher, argtypes):
    """(address, key) of ``dispatcher``'s code for the argument types ``argtypes`` (numba types),
    compiled or loaded from the cache first if needed: what a ``by_address`` call of it takes."""
    cres = _compiled(dispatcher, argtypes)
    declared = _DECLARED.get(dispatcher)
    if declared is not None and cres.signature.return_type != declared:
        raise TypeError(f"{dispatcher.py_func.__name__} returns {cres.signature.return_type} for {tuple(argtypes)}, "
                        f"but its calls by address were compiled for {declared}")
    return (cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name),
            signature_key(dispatcher, cres.signature.args))


_ENTRIES = {}


def entry_for(dispatcher, args):
    """``entry`` of ``dispatcher`` for the types of the values ``args`` (a tuple), remembered by
    their ``type_key``."""
    key = (dispatcher, type_key(args))
    found = _ENTRIES.get(key)
    if found is None:
        found = _ENTRIES[key] = entry(dispatcher, tuple(typeof(a) for a in args))
    return found


def type_key(value):
    """A hashable key that differs wherever numba's argument types of two values differ (arrays:
    dtype, dimensions, layout, read-only and aligned; tuples and namedtuples: their items),
    much cheaper than numba.typeof: for memos of what depends on those types."""
    if isinstance(value, np.ndarray):
        f = value.flags
        return value.dtype, value.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned
    if isinstance(value, tuple):
        return (type(value),) + tuple(type_key(v) for v in value)
    return type(value)


def by_address(dispatcher, returns=None):
    """An intrinsic ``call(addr, key, args)`` that calls ``dispatcher`` with the tuple ``args``
    at ``addr`` and returns what it returns; (addr, key) is its ``entry`` for the types of
    ``args``. A key of other types (or a zero address) raises RuntimeError instead of calling:
    code compiled for other types would read its arguments wrongly. ``returns``: the callee's
    return type (a numba type), which spares compiling the callee to type the call."""
    name = f"{dispatcher.py_func.__name__} (called by address)"
    if returns is not None:
        _DECLARED[dispatcher] = returns

    @intrinsic
    def call(typingctx, addr, key, args):
        if not isinstance(addr, types.Integer) or not isinstance(key, types.Integer) \
                or not isinstance(args, types.BaseTuple):
            return None
        argtypes = tuple(args.types)
        if returns is None:
            cres = _compiled(dispatcher, argtypes)
            restype, fnargs, keyargs = cres.fndesc.restype, cres.fndesc.argtypes, cres.signature.args
        else:
            restype, fnargs, keyargs = returns, argtypes, argtypes
        expected = signature_key(dispatcher, keyargs)
        sig = restype(addr, key, args)

        def codegen(context, builder, signature, llargs):
            fnty = context.call_conv.get_function_type(restype, fnargs)
            wrong = builder.or_(cgutils.is_null(builder, llargs[0]),
                                builder.icmp_signed("!=", llargs[1], context.get_constant(types.int64, expected)))
            with cgutils.if_unlikely(builder, wrong):
                context.call_conv.return_user_exc(
                    builder, RuntimeError, (f"{name}: the address given is not of its code for {argtypes}",))
            fn = builder.inttoptr(llargs[0], fnty.as_pointer())
            values = [builder.extract_value(llargs[2], i) for i in range(len(argtypes))]
            status, res = context.call_conv.call_function(builder, fn, restype, fnargs, values)
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return res
        return sig, codegen

    return call
