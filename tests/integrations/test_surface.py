"""What the integrations promise whatever the framework: light imports, one-line errors, layering."""

from __future__ import annotations

import ast
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

import replicate
from replicate.integrations._common import flatten_params

FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "transformers", "keras", "tensorflow")
INTEGRATIONS = Path(replicate.__file__).parent / "integrations"
#: All an integration may import of replicate: the public API (and the read API's types),
#: its errors, its stderr lines.
ALLOWED = {
    "replicate",
    "replicate.read",
    "replicate.errors",
    "replicate.console",
    "replicate.maintenance",
    "replicate.integrations._common",
}


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


class TestImports:
    def test_import_replicate_imports_no_framework(self) -> None:
        """`import replicate` (and the read API) loads none of torch, lightning, HF, keras, TF."""
        code = (
            "import sys, replicate, replicate.read.cache, replicate.integrations\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))"
        )
        result = run(code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"

    @pytest.mark.parametrize(
        ("module", "blocked", "extra"),
        [
            ("lightning", "lightning", "lightning"),
            ("transformers", "transformers", "transformers"),
            ("keras", "keras", "keras"),
        ],
    )
    def test_missing_framework_names_the_extra(self, module: str, blocked: str, extra: str) -> None:
        """Without its framework, importing an integration fails in one line naming the extra."""
        code = (
            f"import sys; sys.modules[{blocked!r}] = None\n"
            "import replicate\n"
            "try:\n"
            f"    import replicate.integrations.{module}\n"
            "except replicate.MissingExtra as exc:\n"
            "    print(exc)\n"
        )
        result = run(code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("\n") == 1
        assert f"pip install 'replicate[{extra}]'" in result.stdout

    def test_integrations_use_the_public_api_only(self) -> None:
        """Integration modules import nothing of replicate below its public API."""
        for path in INTEGRATIONS.glob("*.py"):
            tree = ast.parse(path.read_text())
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {
                n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
            }
            ours = {n for n in names if n.split(".")[0] == "replicate"}
            assert ours <= ALLOWED, f"{path.name} imports {sorted(ours - ALLOWED)}"


class TestParams:
    def test_nested_dicts_and_namespaces_flatten(self) -> None:
        """Nesting becomes `a/b` keys; secrets are redacted; non-JSON values become text."""
        params = flatten_params(
            {
                "lr": 0.1,
                "optim": {"name": "adam", "betas": (0.9, 0.99)},
                "data": Namespace(root="/d", sizes={"train": 10}),
                "hub_token": "hf_x",
                "pad_token_id": 0,
                "dtype": complex(1, 2),
                "empty": {},
            }
        )
        assert params == {
            "lr": 0.1,
            "optim/name": "adam",
            "optim/betas": [0.9, 0.99],
            "data/root": "/d",
            "data/sizes/train": 10,
            "hub_token": "[redacted]",
            "pad_token_id": 0,
            "dtype": "(1+2j)",
            "empty": {},
        }

    def test_no_params_are_no_params(self) -> None:
        """None or {} gives no params at all (not an empty-named key)."""
        assert flatten_params(None) == {} and flatten_params({}) == {}
        assert flatten_params({"a": {}}) == {"a": {}}
