"""Registries: the names users pass (activations, losses, optimizers) and the integer codes the
kernels branch on, with what else each choice needs (its initializer, the outputs a loss takes).

Adding a choice is one entry here plus its arithmetic in the kernel module that owns the code;
every check, error message and command-line option reads the registry.
"""


class Entry:
    """One choice: its ``name``, its kernel ``code`` and any other facts as attributes."""

    def __init__(self, name, code, **facts):
        self.name = name
        self.code = code
        self.__dict__.update(facts)

    def __repr__(self):
        facts = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k not in ("name", "code"))
        return f"Entry({self.name!r}, {self.code}{', ' + facts if facts else ''})"


class Registry:
    """Names of one kind of choice (``kind``, e.g. "activation") mapped to their entries."""

    def __init__(self, kind, entries):
        self.kind = kind
        self._entries = {e.name: e for e in entries}

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def names(self):
        """The valid names, sorted."""
        return sorted(self._entries)

    def get(self, name, argument=None):
        """The entry called ``name``; TypeError/ValueError naming ``argument`` (default: the
        registry's kind) and listing the valid names otherwise."""
        argument = argument or self.kind
        if not isinstance(name, str):
            raise TypeError(f"{argument}: expected one of {self.names()}, got {type(name).__name__} {name!r}")
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"{argument}: unknown name {name!r}; expected one of {self.names()}") from None

    def code(self, name, argument=None):
        """The kernel code of ``name`` (checked as in ``get``)."""
        return self.get(name, argument).code

    def by_code(self, code):
        """The entry with kernel code ``code``."""
        for e in self._entries.values():
            if e.code == code:
                return e
        raise KeyError(code)
