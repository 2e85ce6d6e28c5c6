"""The architecture stays visible: one sync/async boundary, async code never reaches up."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import replicate

PACKAGE = Path(replicate.__file__).parent
BOUNDARY = PACKAGE / "daemon" / "daemon.py"
ASYNC_MODULES = [
    *sorted((PACKAGE / "storage").glob("*.py")),
    PACKAGE / "repository.py",
    PACKAGE / "daemon" / "worker.py",
    PACKAGE / "daemon" / "heartbeat.py",
    PACKAGE / "daemon" / "pool.py",
]
SYNC_LAYER = (
    "replicate.api",
    "replicate.experiment",
    "replicate.checkpoint",
    "replicate.cli",
    "replicate.read",
)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


#: Ways into an event loop from another thread, or of starting one.
CROSSINGS = {("anyio", "run"), ("asyncio", "run"), ("asyncio", "run_coroutine_threadsafe")}


def crosses_into_a_loop(path: Path) -> bool:
    """True if the module starts a loop or hands work to one from another thread."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr == "call_soon_threadsafe":
            return True
        if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in CROSSINGS:
            return True
    return False


class TestLayering:
    def test_only_the_daemon_crosses_threads_into_the_loop(self) -> None:
        """Only daemon/daemon.py imports anyio.from_thread, starts a loop or calls into one."""
        crossing = sorted(
            str(path.relative_to(PACKAGE))
            for path in PACKAGE.rglob("*.py")
            if any(name.startswith("anyio.from_thread") for name in imports(path))
            or crosses_into_a_loop(path)
        )
        assert crossing == ["daemon/daemon.py"]

    def test_async_modules_never_import_the_sync_layer(self) -> None:
        """Storage, repository and worker code never import the API, the CLI or the readers."""
        for path in ASYNC_MODULES:
            bad = [name for name in imports(path) if name.startswith(SYNC_LAYER)]
            assert bad == [], f"{path.name} imports {bad}"

    def test_the_web_page_never_imports_the_cli(self) -> None:
        """replicate/ui reads through replicate/read like the CLI does, never through cli/."""
        for path in sorted((PACKAGE / "ui").rglob("*.py")):
            bad = [name for name in imports(path) if name.startswith("replicate.cli")]
            assert bad == [], f"ui/{path.name} imports {bad}"


class TestPublicSurface:
    def test_all_is_sorted_and_complete(self) -> None:
        """replicate.__all__ lists exactly the public names, sorted."""
        public = sorted(n for n in vars(replicate) if not n.startswith("_") and n[0].isupper())
        assert replicate.__all__ == sorted(replicate.__all__)
        assert set(public) <= set(replicate.__all__)

    def test_every_error_has_one_root(self) -> None:
        """Every exception class anywhere in the package is a ReplicateError from errors.py."""
        defined = []
        for path in PACKAGE.rglob("*.py"):
            if path.name == "__main__.py":  # runs the CLI when imported
                continue
            module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            for obj in vars(importlib.import_module(module)).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == module
                ):
                    defined.append(obj)
        assert defined, "no exception classes found: the walk is broken"
        assert {e.__module__ for e in defined} == {"replicate.errors"}
        assert all(issubclass(e, replicate.ReplicateError) for e in defined)

    def test_every_error_is_exported(self) -> None:
        """Every class in errors.py is in replicate.__all__."""
        from replicate import errors

        classes = {
            name
            for name, obj in vars(errors).items()
            if isinstance(obj, type) and obj.__module__ == "replicate.errors"
        }
        assert classes <= set(replicate.__all__)

    def test_a_group_of_errors_is_never_flattened(self) -> None:
        """collapse() keeps every real error of a group; a single one stays itself."""
        from replicate.errors import SeveralErrors, collapse

        one = ValueError("one")
        assert collapse(BaseExceptionGroup("g", [one])) is one
        two = KeyError("two")
        several = collapse(BaseExceptionGroup("g", [one, BaseExceptionGroup("h", [two])]))
        assert isinstance(several, SeveralErrors)
        assert several.errors == [one, two]
