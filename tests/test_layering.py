"""The architecture stays visible: one sync/async boundary, async code never reaches up."""

from __future__ import annotations

import ast
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


def calls_anyio_run(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "run"
        and isinstance(node.value, ast.Name)
        and node.value.id == "anyio"
        for node in ast.walk(tree)
    )


class TestLayering:
    def test_only_the_daemon_crosses_threads_into_the_loop(self) -> None:
        """Only daemon/daemon.py imports anyio.from_thread or starts a loop with anyio.run."""
        crossing = sorted(
            str(path.relative_to(PACKAGE))
            for path in PACKAGE.rglob("*.py")
            if any(name.startswith("anyio.from_thread") for name in imports(path))
            or calls_anyio_run(path)
        )
        assert crossing == ["daemon/daemon.py"]

    def test_async_modules_never_import_the_sync_layer(self) -> None:
        """Storage, repository and worker code never import the API, the CLI or the readers."""
        for path in ASYNC_MODULES:
            bad = [name for name in imports(path) if name.startswith(SYNC_LAYER)]
            assert bad == [], f"{path.name} imports {bad}"


class TestPublicSurface:
    def test_all_is_sorted_and_complete(self) -> None:
        """replicate.__all__ lists exactly the public names, sorted."""
        public = sorted(n for n in vars(replicate) if not n.startswith("_") and n[0].isupper())
        assert replicate.__all__ == sorted(replicate.__all__)
        assert set(public) <= set(replicate.__all__)

    def test_every_error_has_one_root(self) -> None:
        """Every exception replicate exports derives from ReplicateError."""
        errors = [getattr(replicate, n) for n in replicate.__all__ if n.endswith(("Error", "ID"))]
        errors += [replicate.DoesNotExist, replicate.UploadFailed, replicate.DaemonClosed]
        assert all(issubclass(e, replicate.ReplicateError) for e in errors)
