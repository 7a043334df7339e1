"""Every Python example in the README and in docs/*.md runs (and checks what its text states)."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def python_blocks(path):
    """The ```python blocks of a Markdown file, each with the line it starts on."""
    text = open(path, encoding="utf-8").read()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]


EXAMPLES = [(os.path.relpath(path, ROOT), line, code) for path in PAGES for line, code in python_blocks(path)]


def test_the_readme_has_examples():
    assert any(page == "README.md" for page, _, _ in EXAMPLES)


@pytest.mark.parametrize("page, line, code", EXAMPLES, ids=[f"{page}:{line}" for page, line, _ in EXAMPLES])
def test_example_runs(page, line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                   # examples that write files write them here
    # pad with newlines so that a traceback names the line of the Markdown file
    exec(compile("\n" * (line - 1) + code, os.path.join(ROOT, page), "exec"), {"__name__": "__example__"})
