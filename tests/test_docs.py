"""The prose of the repository: README.md, docs/*.md and benchmarks/README.md link to what exists,
name the benchmark results they quote, and carry no development history; each benchmark script
answers --help."""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted([os.path.join(ROOT, "README.md"), os.path.join(ROOT, "benchmarks", "README.md")]
               + glob.glob(os.path.join(ROOT, "docs", "*.md")))
IDS = [os.path.relpath(p, ROOT) for p in PAGES]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_relative_links_point_to_files(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(page)):
        if re.match(r"[a-z]+:", target):
            continue                                        # an absolute URL
        assert os.path.exists(os.path.join(os.path.dirname(page), target)), f"{target} does not exist"


HISTORY = [r"\bsession\s+\d", r"\bone-off\b", r"\bthe run before\b", r"\bearlier runs?\b",
           r"\bwas\b[^.\n]{0,60}\bnow\b", r"\bno longer\b", r"\.\./shared", r"\bbefore this change\b"]


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_no_development_history(page):
    text = read(page)
    for pattern in HISTORY:
        found = re.search(pattern, text, re.I)
        assert not found, f"history in prose ({pattern!r}): {text[max(0, found.start() - 60):found.end() + 60]!r}"


def test_the_readme_opens_with_the_two_setup_commands_and_ci_runs_the_second():
    lines = read(os.path.join(ROOT, "README.md")).splitlines()
    assert lines[0].startswith("# ") and lines[1] == "" and lines[2] == "```bash" and lines[5] == "```"
    assert lines[3].endswith("# the main job") and lines[4].endswith("# the tests")
    tests_command = lines[4].split("#")[0].strip()
    assert tests_command in read(os.path.join(ROOT, ".ci", "run")).splitlines()
    assert len(lines) <= 300


def test_benchmarks_readme_covers_every_script_and_names_existing_results():
    text = read(os.path.join(ROOT, "benchmarks", "README.md"))
    for script in glob.glob(os.path.join(ROOT, "benchmarks", "bench_*.py")):
        assert f"`{os.path.basename(script)}`" in text, f"{os.path.basename(script)} is not described"
    named = set(re.findall(r"results/[\w.-]+\.jsonl", text))
    assert named
    for path in named:
        assert os.path.exists(os.path.join(ROOT, "benchmarks", path)), f"{path} does not exist"


SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "bench_*.py")))


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_benchmark_scripts_answer_help_from_the_repository_root(script):
    done = subprocess.run([sys.executable, os.path.relpath(script, ROOT), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and "--output" in done.stdout


@pytest.mark.parametrize("script", SCRIPTS + [os.path.join(ROOT, "benchmarks", "_common.py")], ids=os.path.basename)
def test_benchmark_scripts_name_no_paths_outside_the_repository(script):
    text = read(script)
    outside = os.path.join("..", "shared")         # the folder beside the repository, never part of it
    assert outside not in text
    found = re.search(r"""["'](/(?:work|root|home|tmp|opt)/[^"']*)""", text)
    assert not found, f"an absolute path of one machine: {found.group(1)}"
