"""The code is lint-clean and formatted (ruff, settings in pyproject.toml): run `ruff format .` and
`ruff check --fix .` to make it so."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    assert importlib.util.find_spec("ruff"), (
        "ruff is not installed: it is pinned in requirements.txt (pip install -r requirements.txt)"
    )
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing():
    result = _ruff("check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted():
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, f"run `ruff format .`:\n{result.stdout}{result.stderr}"


def test_every_module_ends_with_its_main_block():
    """Code after ``if __name__ == "__main__":`` is defined only after the command has run (features.describe was)."""
    import ast

    for path in sorted((ROOT / "lib" / "flickr_retrieval").rglob("*.py")):
        body = ast.parse(path.read_text()).body
        mains = [n for n, node in enumerate(body) if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
        assert not mains or mains[-1] == len(body) - 1, f"{path.name}: code after the __main__ block"


def test_the_package_map_is_what_the_code_says():
    """docs/package.md is generated from the imports (scripts/package_map.py): it cannot drift."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "scripts/package_map.py", "--check"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, "docs/package.md is out of date: run python scripts/package_map.py"
