"""The committed stubs are what generate.py makes of proto/ today."""

import filecmp
import os
import subprocess
import sys

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = os.path.join(SDK, "src", "pmdaemon", "_gen")


def tree(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root)
        for f in files
        if "__pycache__" not in d
    )


def test_committed_stubs_are_fresh(tmp_path):
    fresh = str(tmp_path / "_gen")
    subprocess.run([sys.executable, os.path.join(SDK, "generate.py"), "--out", fresh], check=True)
    hint = "the stubs are stale: run `python sdk/python/generate.py` and commit src/pmdaemon/_gen"
    assert tree(fresh) == tree(COMMITTED), hint
    differ = [f for f in tree(fresh) if not filecmp.cmp(os.path.join(fresh, f), os.path.join(COMMITTED, f), shallow=False)]
    assert not differ, f"{hint} ({', '.join(differ)} differ)"
