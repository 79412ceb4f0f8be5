"""The README's Python quick start runs as written, and its performance table is the committed benchmark output."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_snippet_runs(tmp_path, monkeypatch):
    text = README.read_text()
    quick = text[text.index("## Quick start"):text.index("\n## ", text.index("## Quick start") + 1)]
    blocks = re.findall(r"```python\n(.*?)```", quick, re.S)
    assert blocks, "the quick start has a python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "model.fbp").exists()


def test_readme_commands_are_the_ones_ci_runs():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install . && fastbp train" in text
    test_cmd = 'pip install ".[test]" && python -m pytest'
    assert test_cmd in text and ci.strip().splitlines()[-1] == test_cmd


def test_readme_performance_table_is_made_from_the_committed_benchmark_output():
    import importlib.util

    spec = importlib.util.spec_from_file_location("perf_table", README.parent / "benchmarks" / "perf_table.py")
    perf_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_table)
    run = perf_table.read_peers()
    assert perf_table.readme_is_current(README.read_text(encoding="utf-8"), run), (
        "README.md's performance table differs from docs/performance/peers.txt: "
        "run python benchmarks/perf_table.py --update-readme")
