"""`python -m bench --baseline REV`: the product as it was at another commit, measured in the
same run as the tree's, so that every figure has its ratio to that commit and no change gives
back speed unnoticed (a figure from another day, on this shared machine, would not tell).

The commit's product packages are exported (`git archive`) to a folder of their own. Its edge
runs from there, and its producers import it instead of the tree's (`use_code`), so both ends
speak that commit's protocol; the harness (bench/), the load clients and the virtualenv stay
the tree's. A commit whose dependencies differ from the tree's is measured with the tree's.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Every package of the product: what `pip install .` installs (bench/ and tests/ are not).
PRODUCT_PACKAGES = tuple(
    pattern.rstrip("*")
    for pattern in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
)


def checkout(revision: str) -> tuple[str, Path]:
    """The commit's short id, and a folder holding its product packages (made once)."""
    commit = _git("rev-parse", "--short", f"{revision}^{{commit}}").strip()
    folder = Path(tempfile.gettempdir()) / f"insight-baseline-{commit}"
    if not (folder / "edge").is_dir():
        present = set(_git("ls-tree", "--name-only", commit).split())
        packages = [p for p in PRODUCT_PACKAGES if p in present]
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, *packages],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit, folder


def use_code(code: Path) -> None:
    """From now on this process imports the product from `code` (a spawned producer, before
    it imports `realtime`): the tree's modules it imported already are forgotten."""
    if sys.path[:1] != [str(code)]:
        sys.path.insert(0, str(code))
    for name in list(sys.modules):
        if name.partition(".")[0] in PRODUCT_PACKAGES:
            del sys.modules[name]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout
