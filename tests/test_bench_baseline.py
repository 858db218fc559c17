"""`python -m bench --baseline REV` measures the product as it was at REV: a producer process
that switches to that commit's packages must import them, and nothing of the tree's it had
imported before (bench.baseline.use_code). Pure import mechanics, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.integration  # a Python process of its own, whose imports it changes

SWITCH = """
import sys
from pathlib import Path
import realtime                      # the tree's, as a spawned producer has it
from bench.baseline import use_code
use_code(Path(sys.argv[1]))
import realtime
from realtime.settings import MARK
print(realtime.__file__, MARK)
"""


def test_a_process_that_uses_a_baselines_code_imports_its_packages_not_the_trees(
    tmp_path: Path,
) -> None:
    package = tmp_path / "realtime"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text("MARK = 'the baseline'\n")
    run = subprocess.run(
        [sys.executable, "-c", SWITCH, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(package / "__init__.py"), "the", "baseline"]
