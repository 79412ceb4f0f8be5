"""Ctrl-C during `MLP.fit`, seen only at points where the training state is whole.

The minibatch loop is compiled: Python's KeyboardInterrupt can only be raised once a kernel
call returns, and then at whichever bytecode comes next, possibly in the middle of fit's own
bookkeeping. So while fit runs (in the main thread, with Python's default SIGINT handler in
place) the first Ctrl-C only sets a flag, which fit reads between chunks of minibatches and
between epochs. The handler puts the previous one back at once, so a second Ctrl-C raises
KeyboardInterrupt as usual, for a callback that hangs.
"""
import signal
import threading


class DeferredSigint:
    """Context manager: ``.hit`` becomes True at the first SIGINT received inside it."""

    def __init__(self):
        self.hit = False
        self._old = None

    def start(self):
        """Install the handler (when possible); returns self."""
        self.hit = False
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        self.hit = True
        signal.signal(signal.SIGINT, self._old)

    def stop(self):
        """Put the previous handler back (unless someone replaced ours meanwhile); returns None."""
        if self._old is not None and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, self._old)
        self._old = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
