"""The README's Python quick start runs as written."""
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
