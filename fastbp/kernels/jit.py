"""How every kernel is compiled: numba's njit with its options pinned, and the named flag sets.

numba compiles a callee with its caller's ``fastmath`` and ``error_model`` unless the callee
states them, then reuses (and caches on disk) that copy for every later caller with the same
argument types. A kernel shared by callers with different options would then round one way or
the other depending on which caller happened to be compiled first, even in an earlier process.
So every kernel states both, by naming one of the flag sets below (IEEE by default).

numba compiles every kernel called from another kernel on its own, then again into each caller
(it links the callee's code into the caller's module and generates machine code for the whole
module), so a deep call tree is compiled over and over on a first run. Helpers therefore carry
``inline="always"``: their code is compiled only inside the entry points that use them. Only
a callee with other flags, or a parallel region, must stay a kernel of its own; a large helper
that one entry point reaches from several places (the optimizers' loops) is one too, as it would
otherwise be typed and lowered again at each of them. The minibatch loop calls its large
callees (the layer task and its parallel region, the loss, the update) by address instead
(calls.py), so their code is generated once, not again inside each caller, and, their return
types declared, it compiles at the same time as they do.
"""
import contextlib
import functools
import gc
import hashlib
import os
import signal
import sys

import numba
from numba import njit, types
from numba.core import caching, event
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import intrinsic

try:
    import fcntl
except ImportError:                 # Windows: numba's own unlocked files
    fcntl = None

# The flag sets. None has nnan/ninf, so NaN and inf checks keep working, and all take numpy's
# error model: no division-by-zero checks (a kernel never relies on Python's ZeroDivisionError),
# so loops stay free of branches and kernels of the same set can be inlined into one another.
# IEEE arithmetic.
IEEE = {"fastmath": False, "error_model": "numpy"}
# Fused multiply-adds allowed: polynomials and products get faster and no less accurate.
FMA = {"fastmath": {"contract"}, "error_model": "numpy"}
# Reassociation too: LLVM may vectorize reductions (in a fixed order for a given build).
VECTORIZE = {"fastmath": {"contract", "reassoc"}, "error_model": "numpy"}


@intrinsic
def wide_vectors(typingctx):
    """Called first in a kernel: LLVM may vectorize its loops 512 bits wide on a CPU with
    AVX-512, where it otherwise keeps to 256-bit vectors (its tuning for those CPUs), and the
    elementwise passes of a layer (activations, norms, dropout, updates) take half the
    instructions. In a kernel without reassociation (IEEE, FMA) each lane computes what the
    scalar code would, so the width changes no result. A VECTORIZE kernel's sums change their
    order with it: of those only layer norm's row sums take it, not the small networks'
    kernels, whose bits are pinned."""
    def codegen(context, builder, signature, args):
        # a string attribute, which llvmlite's attribute set does not list (it refuses unknown
        # names); an llvmlite whose attribute set were no set would keep LLVM's default width
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except TypeError:
            pass
        return context.get_dummy_value()
    return types.none(), codegen


def options(flags=IEEE, **overrides):
    """jit options of a kernel: cached, the given flag set, then ``overrides``."""
    return {"cache": True, **flags, **overrides}


def kernel(fn=None, *, flags=IEEE, **overrides):
    """``@kernel`` or ``@kernel(flags=VECTORIZE, parallel=True, ...)``: njit with ``options``,
    its on-disk cache kept by ``package_cache``."""
    if fn is None:
        return lambda f: kernel(f, flags=flags, **overrides)
    return package_cache(njit(fn, **options(flags, **overrides)))


class LockedCacheFile(caching.IndexDataCacheFile):
    """numba's index and data files of one kernel's cache, saved under an exclusive lock and
    loaded under a shared one.

    numba's own saving is not safe for two processes at once (two fastbp programs started
    together from an empty cache, test runners in parallel, MPI ranks on a shared file system):
    each reads the index, both take data file N for different signatures, and the index then
    names the other's code, which crashes the process that loads it. Loading also starts numba's
    threading layer first (see ``load``).
    """

    def save(self, key, data):
        with _flock(self._index_path, exclusive=True):
            super().save(key, data)

    def load(self, key):
        # Code loaded from the cache is linked against numba's parallel runtime (numba_parallel_for
        # and the rest), whose symbols exist only once numba has started its threading layer.
        # numba starts it when it loads a parallel kernel, but not for a kernel that calls one it
        # had itself loaded from the cache when it was compiled (a layer kernel compiled apart,
        # or by another program): that code would call address 0. Starting it is idempotent.
        numba.get_num_threads()
        with _flock(self._index_path, exclusive=False):
            return super().load(key)


@contextlib.contextmanager
def _flock(index_path, exclusive):
    """An flock on ``index_path``.lock for the block; none where the folder cannot hold one (a
    read-only cache is only read) or the platform has no flock."""
    try:
        f = open(index_path + ".lock", "ab") if fcntl is not None else None
    except OSError:
        f = None
    if f is None:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def package_cache(dispatcher):
    """``dispatcher`` (an njit kernel) with its on-disk cache files a LockedCacheFile, valid only
    for the sources they were compiled from: every ``.py`` file of the kernel's folder.

    numba stamps a kernel's cache with its own file only, but a kernel's cached code holds the
    code of every kernel it calls, from other files too: after a change to a callee's file (a
    new version of one module, a checkout), numba would go on loading the caller with the old
    callee inside, and with the argument types of the old one.
    """
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if type(cache_file) is caching.IndexDataCacheFile:
        cache_file.__class__ = LockedCacheFile
        locator = getattr(getattr(cache, "_impl", None), "locator", None)
        py_file = getattr(locator, "_py_file", None)
        if py_file is not None:
            cache_file._source_stamp = (cache_file._source_stamp, folder_stamp(os.path.dirname(py_file)))
    return dispatcher


@functools.lru_cache(maxsize=None)
def folder_stamp(folder):
    """A digest of the names and contents of the ``.py`` files in ``folder`` (once a process);
    None where they cannot be read (then a kernel's cache is stamped by its own file only)."""
    digest = hashlib.sha256()
    try:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as f:
                    digest.update(name.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    except OSError:
        return None
    return digest.hexdigest()


# The event compile_apart raises while its child processes compile.
COMPILE_ELSEWHERE = "fastbp:compile_elsewhere"


class _FirstCompile(event.Listener):
    """Prints one line when the first kernel of a block starts compiling (not when kernels load
    from numba's on-disk cache, which raises no compile event)."""

    def __init__(self, message, file):
        self.message, self.file, self.seen = message, file, False

    def on_start(self, ev):
        if not self.seen:
            self.seen = True
            print(self.message, file=self.file, flush=True)

    def on_end(self, ev):
        pass


@contextlib.contextmanager
def compile_notice(message, file=None):
    """Inside the block, the first kernel compilation prints ``message`` (once) to ``file``
    (default: stderr). Yields an object whose ``seen`` says whether anything compiled."""
    listener = _FirstCompile(message, file or sys.stderr)
    with event.install_listener("numba:compile", listener), event.install_listener(COMPILE_ELSEWHERE, listener):
        yield listener


class _WouldCompile(Exception):
    pass


class _StopCompile(event.Listener):
    def __init__(self, dispatcher):
        self.dispatcher = dispatcher

    def on_start(self, ev):
        if ev.data["dispatcher"] is self.dispatcher:
            raise _WouldCompile

    def on_end(self, ev):
        pass


def load_cached(dispatcher, sig):
    """Make ``dispatcher``'s kernel for the argument types ``sig`` ready if that takes no
    compiling (it is in memory or in numba's on-disk cache); returns whether it is ready."""
    try:
        with event.install_listener("numba:compile", _StopCompile(dispatcher)):
            dispatcher.compile(tuple(sig))
    except _WouldCompile:      # raised as its compilation started, before anything changed
        return False
    return True


def compile_apart(groups, then=()):
    """Compile kernels in forked child processes, into numba's on-disk cache: each of ``groups``
    (lists of (dispatcher, argument types) pairs) in a child of its own, all at once, then the
    pairs of ``then`` in one more child once they are done (callers of the groups' kernels,
    which that child loads from the cache instead of compiling them: numba compiles one
    process's kernels one at a time). Returns with the kernels of ``then`` loaded here.

    This process compiles nothing itself, so the memory LLVM takes while compiling stays out of
    its resident size. Only worth it when compiling (an empty cache) and with a second CPU free.
    Where fork is missing, or a child could not save a kernel (a read-only cache), this process
    compiles what is missing itself; a child does nothing but compile, silently, and leaves with
    os._exit: no cleanup of this process runs twice. It forks holding numba's compiler lock, so
    that a thread of this process compiling at that moment finishes first. Listeners of
    COMPILE_ELSEWHERE events (compile_notice) hear of the children's compiling.

    The groups should not reach a common kernel: both children would compile it (the cache
    files themselves are safe, see LockedCacheFile). tests/test_warmup.py checks this for
    epoch.compile_ahead's groups.
    """
    groups = [[(k, tuple(sig)) for k, sig in g if tuple(sig) not in k.overloads] for g in groups]
    groups = [g for g in groups if g]
    apart = [pair for g in groups for pair in g]
    then = [(k, tuple(sig)) for k, sig in then if tuple(sig) not in k.overloads]
    if not hasattr(os, "fork"):
        for k, sig in apart + then:
            k.compile(sig)
        return
    stages = ([groups] if groups else []) + ([[then]] if then else [])
    if not stages:                            # everything is loaded already: nothing to announce
        return
    with event.trigger_event(COMPILE_ELSEWHERE, data={"kernels": [k for k, _ in apart]}):
        for stage in stages:
            pids = []
            try:
                # numba's compiler lock held across the forks: a child forked while another
                # thread of this process held it (compiling) would wait for it forever
                with global_compiler_lock:
                    for pairs in stage:
                        pid = os.fork()
                        if pid == 0:
                            _compile_and_exit(pairs)
                        pids.append(pid)
            finally:
                _reap(pids)
    for k, sig in then:
        load_cached(k, sig)


def _compile_and_exit(pairs):
    """A child's whole life: compile ``pairs``, silently (this process compiles what fails)."""
    # numba's compiling makes cyclic garbage fast enough to keep Python's collector busy for a
    # tenth of the time; a child that ends when it is done never needs it collected
    gc.disable()
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        for k, sig in pairs:
            k.compile(sig)
    finally:
        os._exit(0)


def _reap(pids):
    """Wait for the children ``pids``; on Ctrl-C (which they get too) end them first."""
    try:
        for pid in pids:
            os.waitpid(pid, 0)
    except BaseException:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        raise
