#!/usr/bin/env python3
"""The performance tables of the docs and the README, made from committed benchmark output.

No figure in the docs or the README is typed by hand: this script reads

- ``docs/performance/peers.txt``: the text output of the team's peer-comparison script
  (``peers.py``), preceded by two comment lines saying where and how it ran::

      # machine: a 2-core Intel Xeon virtual machine (x86_64 Linux)
      # command: python ../shared/bench/peers.py tiny mnist wide --rounds 3 --peer-python .peers/bin/python
      # 2026-12-02 03:55  cpus=2  rounds=3  epochs/process=3
      workload system       samples/s  first epoch s  fastbp ×
      tiny     fastbp         7800634          0.204      1.00
      ...

- ``docs/throughput_vs_width.csv``: written by ``benchmarks/plot_width.py``,

and writes the reStructuredText tables that the docs include (``docs/_generated/``; the docs
build runs this script from ``docs/conf.py``) and the README's headline table, between its
``<!-- BEGIN performance table ...`` and ``<!-- END performance table -->`` lines::

    python benchmarks/perf_table.py                  # docs tables; fails if the README's table is stale
    python benchmarks/perf_table.py --update-readme  # also rewrite the README's table

Any run of ``peers.py`` works: any subset of workloads and systems, skipped or failed systems,
``--predict`` (inference) and ``--startup`` (whole-process seconds) runs.
"""
import argparse
import csv
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_TXT = os.path.join(ROOT, "docs", "performance", "peers.txt")
WIDTH_CSV = os.path.join(ROOT, "docs", "throughput_vs_width.csv")
GENERATED = os.path.join(ROOT, "docs", "_generated")
README = os.path.join(ROOT, "README.md")

NAMES = {"fastbp": "fastbp", "jax": "JAX", "torch": "PyTorch", "sklearn": "scikit-learn",
         "gemm_floor": "GEMM floor"}
BEGIN = "<!-- BEGIN performance table: made by benchmarks/perf_table.py from docs/performance/peers.txt -->"
END = "<!-- END performance table -->"

_STAMP = re.compile(r"#\s*(\d{4}-\d{2}-\d{2})\s+(\d{2}:\d{2})\s+cpus=(\d+)\s+rounds=(\d+)\s+epochs/process=(\d+)")
_ROW = re.compile(r"(\S+)\s+(\S+)\s+([0-9.]+)( s)?\s+([0-9.]+)\s+(\S+)(\s+\S+)?\s*$")


class FormatError(ValueError):
    """The benchmark output is not what peers.py writes (or lacks the machine/command lines)."""


def parse_peers(text):
    """The run described by peers.py's output ``text``, as a dict.

    Keys: ``date``, ``time``, ``cpus``, ``rounds``, ``epochs``, ``machine``, ``command``,
    ``mode`` ("train", "predict" or "startup"), ``workloads`` and ``systems`` (in file order),
    and ``cells``: {(workload, system): {"value": float or None, "ratio": float or None,
    "first_s": float or None, "status": "ok" | "skipped" | "error", "note": str}}.
    """
    run = {"machine": None, "command": None, "mode": "train", "workloads": [], "systems": [], "cells": {}}
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = _STAMP.match(s)
            if m:
                run.update(date=m[1], time=m[2], cpus=int(m[3]), rounds=int(m[4]), epochs=int(m[5]))
            elif s.startswith("# machine:"):
                run["machine"] = s.split(":", 1)[1].strip()
            elif s.startswith("# command:"):
                run["command"] = s.split(":", 1)[1].strip()
            elif s.startswith("# --startup"):
                run["mode"] = "startup"
            continue
        if s.split()[:2] == ["workload", "system"]:
            continue
        parts = s.split(None, 2)
        if len(parts) < 3:
            raise FormatError(f"unexpected line {line!r}")
        workload, system, rest = parts
        if system.endswith("_predict"):
            system, run["mode"] = system[:-len("_predict")], "predict"
        m = _ROW.match(s)
        if m:
            cell = {"value": float(m[3]), "first_s": float(m[5]), "status": "ok", "note": ""}
            ratio = float(m[6])
            cell["ratio"] = None if math.isnan(ratio) else ratio
            if m[4]:
                run["mode"] = "startup"
        else:                                   # "skipped", "skipped: why" or "error: message"
            status = "error" if rest.startswith("error") else "skipped"
            cell = {"value": None, "first_s": None, "ratio": None, "status": status, "note": rest}
        if workload not in run["workloads"]:
            run["workloads"].append(workload)
        if system not in run["systems"]:
            run["systems"].append(system)
        run["cells"][(workload, system)] = cell
    missing = [k for k in ("date", "machine", "command") if run.get(k) is None]
    if missing:
        raise FormatError(
            "benchmark output lacks " + ", ".join(missing) + ": keep peers.py's first line "
            "('# YYYY-MM-DD HH:MM  cpus=...') and put '# machine: ...' and '# command: ...' lines above it")
    if not run["cells"]:
        raise FormatError("benchmark output has no result rows")
    return run


def read_peers(path=PEERS_TXT):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return parse_peers(text)
    except FormatError as e:
        raise FormatError(f"{os.path.relpath(path, ROOT)}: {e}") from None


def human(v):
    """3 significant digits with k / M / G: 7800634 -> '7.80 M', 413897 -> '414 k'."""
    units = [(1, ""), (1e3, " k"), (1e6, " M"), (1e9, " G")]
    i = max(k for k, (div, _) in enumerate(units) if v >= div or k == 0)
    x = v / units[i][0]
    text = f"{x:.{max(0, 2 - int(math.floor(math.log10(x)))) if x > 0 else 0}f}"
    if float(text) >= 1000 and i + 1 < len(units):      # 999.7 k rounds to 1000 k: 1.00 M
        return "1.00" + units[i + 1][1]
    return text + units[i][1]


def _cell(run, workload, system, space=" "):
    c = run["cells"].get((workload, system))
    if c is None:
        return "—"
    if c["status"] != "ok":
        return c["status"]
    value = f"{c['value']:.3f} s" if run["mode"] == "startup" else human(c["value"])
    value = value.replace(" ", space)
    if system == "fastbp" or c["ratio"] is None:
        return value
    return f"{value} ({c['ratio']:.2f}×)"


def table_rows(run, space=" "):
    """Header and rows of the summary table: one row per workload, one column per system.
    ``space`` goes between a number and its unit (a no-break space keeps them on one line)."""
    systems = sorted(run["systems"], key=lambda s: s != "fastbp")         # fastbp first, then file order
    header = ["workload"] + [NAMES.get(s, s) for s in systems]
    rows = [[w] + [_cell(run, w, s, space) for s in systems] for w in run["workloads"]]
    return header, rows


def caption(run):
    """What the figures are, when, where and how they were measured (ends before the command)."""
    rounds, epochs = run["rounds"], run["epochs"]
    what = {
        "train": f"Training throughput, samples/s: the median over {rounds} rounds; each round trains "
                 f"every system in a fresh process for {epochs} epochs and counts its fastest epoch "
                 f"after the first.",
        "predict": f"Inference throughput, samples/s (predict over the whole data set): the median "
                   f"over {rounds} rounds, each system in a fresh process.",
        "startup": f"Seconds for a whole fresh process (import, compile or cache load, one epoch): "
                   f"the median over {rounds} rounds.",
    }[run["mode"]]
    return (f"{what} In parentheses, the system's time over fastbp's (above 1: fastbp is faster). "
            f"Measured {run['date']} on {run['machine']}, with")


def rst_table(run):
    """The summary table as a reStructuredText fragment (caption, command, list-table)."""
    header, rows = table_rows(run, space="\u00a0")
    out = [caption(run) + ":", "", ".. code-block:: bash", "", "   " + run["command"], "",
           ".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        out.append("   * - " + row[0])
        out.extend("     - " + c for c in row[1:])
    return "\n".join(out) + "\n"


def markdown_table(run):
    """The summary table as Markdown, for the README (caption, table, command)."""
    header, rows = table_rows(run)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([caption(run) + ":", "", "```bash", run["command"], "```", ""] + out) + "\n"


def width_rst(path=WIDTH_CSV):
    """The figure's numbers (plot_width.py's CSV) as a list-table: thousand samples/s per width."""
    with open(path, encoding="utf-8") as f:
        lines = [l for l in f if not l.startswith("#")]
    data, widths, systems = {}, [], []
    for r in csv.DictReader(lines):
        w = int(r["width"])
        widths += [w] if w not in widths else []
        systems += [r["system"]] if r["system"] not in systems else []
        data[r["system"], w] = float(r["samples_per_s"])
    widths.sort()
    out = [".. list-table:: Thousand samples/s against the hidden layer's width",
           "   :header-rows: 1", "", "   * - width"]
    out += [f"     - {w}" for w in widths]
    for s in systems:
        out.append(f"   * - {NAMES.get(s, s)}")
        out += [f"     - {data[s, w] / 1e3:.0f}" if (s, w) in data else "     - —" for w in widths]
    return "\n".join(out) + "\n"


def readme_block(run):
    return BEGIN + "\n" + markdown_table(run) + END


def replace_readme_table(readme_text, run):
    """``readme_text`` with the block between the markers replaced by the table of ``run``."""
    i, j = readme_text.find(BEGIN), readme_text.find(END)
    if i < 0 or j < i:
        raise FormatError("README.md has no performance table markers:\n" + BEGIN + "\n" + END)
    return readme_text[:i] + readme_block(run) + readme_text[j + len(END):]


def readme_is_current(readme_text, run):
    return replace_readme_table(readme_text, run) == readme_text


def _write_if_changed(path, text):
    old = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    if old != text:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def write_docs_tables(peers=PEERS_TXT, width_csv=WIDTH_CSV, out_dir=GENERATED):
    """Write performance_table.rst and width_table.rst into ``out_dir``; return the parsed run."""
    run = read_peers(peers)
    _write_if_changed(os.path.join(out_dir, "performance_table.rst"), rst_table(run))
    _write_if_changed(os.path.join(out_dir, "width_table.rst"), width_rst(width_csv))
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default=PEERS_TXT, help="peers.py output (default: %(default)s)")
    ap.add_argument("--update-readme", action="store_true", help="rewrite the README's headline table")
    a = ap.parse_args(argv)
    run = write_docs_tables(a.peers)
    with open(README, encoding="utf-8") as f:
        text = f.read()
    if a.update_readme:
        _write_if_changed(README, replace_readme_table(text, run))
    elif not readme_is_current(text, run):
        print("README.md's performance table differs from the benchmark output: "
              "run python benchmarks/perf_table.py --update-readme", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
