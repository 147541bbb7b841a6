"""docs/PYTHON.md's examples are the files in bindings/python/examples (each block after an
`<!-- example: PATH -->` line equals that file), and they run."""
import os
import re
import subprocess
import sys

import pytest

from conftest import BINDING, REPO

DOC = os.path.join(REPO, "docs", "PYTHON.md")


def doc_examples():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"<!-- example: (\S+) -->\n```python\n(.*?)```\n", text, re.S)


def test_the_guide_shows_the_example_files():
    examples = doc_examples()
    assert {path for path, _ in examples} >= {"bindings/python/examples/quickstart.py",
                                              "bindings/python/examples/npc_loop.py"}
    for path, block in examples:
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            assert block == f.read(), path + " differs from its copy in docs/PYTHON.md"


@pytest.mark.parametrize("name", ["npc_loop.py"])
def test_the_examples_run(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if os.environ.get("SIBYL_EXPECT_INSTALLED") != "1":
        env["PYTHONPATH"] = os.path.join(BINDING, "src")
    out = subprocess.run([sys.executable, os.path.join(BINDING, "examples", name)], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'347 + 589 = 936.' (eos)" in out.stdout
    assert "'49 times 4 is 196.' (eos)" in out.stdout
