"""Tests whose heavy part is a whole fresh process compiling from an empty cache start it beside
the rest of the suite, which compiles on one CPU at a time while CI has two.

Such a test is marked ``@pytest.mark.background.with_args(start)``: when collection ends (and the test is
among the collected), ``start(folder)`` is called with an empty folder of its own and starts the
processes; the test gets its return value from the ``background`` fixture and waits for them.
Such tests run last, so that their processes have the whole suite's time to finish.
Processes still running when the session ends are killed, and the folders removed.
"""
import shutil
import subprocess
import tempfile

import pytest

_STARTED = pytest.StashKey[object]()
_folders = []
_processes = []


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)     # stable


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    for item in session.items:
        marker = item.get_closest_marker("background")
        if marker is None:
            continue
        folder = tempfile.mkdtemp(prefix="fastbp-test-")
        _folders.append(folder)
        started = marker.args[0](folder)
        _processes.extend(_popens(started))
        item.stash[_STARTED] = started


def _popens(started):
    """The processes in what a start function returned (a Popen, or lists and tuples holding them)."""
    if isinstance(started, subprocess.Popen):
        return [started]
    if isinstance(started, (list, tuple)):
        return [p for x in started for p in _popens(x)]
    return []


def pytest_sessionfinish(session):
    for p in _processes:
        if p.poll() is None:
            p.kill()
            p.wait()
    for folder in _folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def background(request):
    """What this test's ``background`` marker started (see the module docstring)."""
    return request.node.stash[_STARTED]
