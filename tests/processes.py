"""Python processes tests start: beside the suite (tests/conftest.py, ``background``), read back
once they end from files in a folder of the test's own; or run to the end in a folder of
modules (``python_in``)."""
import os
import subprocess
import sys


def start_python(code, folder, *args, name="run", env=None):
    """``python -c code args`` with numba's cache in ``folder``/cache, its output in files there;
    ``env``: more environment variables (NUMBA_CACHE_DIR among them, another cache)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(folder, "cache"), **(env or {})}
    with open(os.path.join(folder, name + ".out"), "w") as out, open(os.path.join(folder, name + ".err"), "w") as err:
        return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=out, stderr=err, text=True)


def finished(proc, folder, name="run"):
    """(stdout, stderr) of a process start_python started, once it has ended well."""
    proc.wait(timeout=1800)
    out, err = (open(os.path.join(folder, f"{name}.{kind}")).read() for kind in ("out", "err"))
    assert proc.returncode == 0, err[-5000:]
    return out, err


def python_in(folder, code, check=False):
    """``python -c code`` in ``folder``, importing its modules, numba's cache beside them."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder)] + sys.path))
    env.pop("NUMBA_CACHE_DIR", None)
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          check=check)
