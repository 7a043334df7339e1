"""The command lines of docs/cli.md run as written: the page's Python blocks first (they write the
data files its commands read), then every ``minirnn ...`` line of its bash blocks, in one folder, with
the installed command line; each must succeed and leave what its comment says it writes."""

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "cli.md")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P needs Python 3.11")]


def blocks(kind):
    text = open(PAGE, encoding="utf-8").read()
    return [m.group(1) for m in re.finditer(rf"^```{kind}\n(.*?)^```", text, re.S | re.M)]


def command_lines():
    lines = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("minirnn "):
                lines.append(line)
    return lines


def test_the_pages_commands_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for code in blocks("python"):                   # they write vowels_*.ts, vitals_*.csv and runs/vitals
        exec(compile(code, PAGE, "exec"), {"__name__": "__example__"})
    lines = command_lines()
    assert len(lines) >= 8, lines
    env = dict(os.environ, MINIRNN_PROGRESS="0")
    for line in lines:
        done = subprocess.run([sys.executable, "-P", "-m", "minirnn", *shlex.split(line)[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, (line, done.stderr[-2000:])
        words = shlex.split(line)
        if words[1] == "export":                    # "prints the bundle's path"
            assert os.path.isfile(os.path.join(done.stdout.strip().splitlines()[-1], "model.h5")), done.stdout
        if words[1] == "plot":                      # "writes and prints runs/vitals_es/training.png"
            assert done.stdout.strip().endswith("training.png") and os.path.getsize(done.stdout.strip()) > 10000
        for flag in ("-o", "--plot"):               # the files a command is told to write
            if flag in words:
                assert os.path.getsize(words[words.index(flag) + 1]) > 0, line
