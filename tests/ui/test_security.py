"""What the page promises about data others wrote: escaped, no inline scripts, loopback only."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.helpers import Written

import replicate
from ui.helpers import RunningUI, get

XSS = "<img src=x onerror=alert(1)>"


def write_hostile(tmp_path: Path) -> tuple[str, str, str]:
    """Two experiments whose param names, values and metric names are HTML."""
    url = (tmp_path / "repo").as_uri()
    ids = []
    for value in ("<script>alert(2)</script>", "b"):
        experiment = replicate.init(
            params={XSS: value, "plain": 1}, repository=url, project_dir=tmp_path
        )
        experiment.checkpoint(metrics={"<b>loss</b>": 1.0}, quiet=True)
        experiment.stop()
        ids.append(experiment.id)
    return url, ids[0], ids[1]


class TestEscaping:
    def test_repository_values_are_text(
        self, tmp_path: Path, serve: Callable[..., RunningUI]
    ) -> None:
        """Param names and values, and metric names, never appear as markup on any page."""
        url, a, b = write_hostile(tmp_path)
        ui = serve(url)
        for path in ("/", f"/experiments/{a}", f"/compare?id={a}&id={b}"):
            text = get(ui.base, path).text
            assert "<img" not in text and "<script>alert" not in text and "<b>loss" not in text
            assert "&lt;img src=x onerror=alert(1)&gt;" in text
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in get(ui.base, f"/experiments/{a}").text


class TestHeaders:
    def test_every_response_has_the_csp(
        self, shared_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """Pages, JSON, errors, downloads and static files all forbid inline scripts."""
        ui = serve(shared_disk.url)
        first = shared_disk.checkpoints["adam"][0]
        for path in (
            "/",
            "/api/experiments",
            "/experiments/nothex",
            f"/checkpoints/{first}/files/model.pth",
            "/static/app.js",
            "/no/such/route",
        ):
            reply = get(ui.base, path)
            csp = reply.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
            assert "unsafe-inline" not in csp
            assert reply.headers["X-Content-Type-Options"] == "nosniff"

    def test_pages_have_no_inline_script_or_style(
        self, shared_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """Every script is a file of the page's own origin; no inline handlers or styles."""
        ui = serve(shared_disk.url)
        adam, sgd = shared_disk.adam, shared_disk.sgd
        for path in ("/", f"/experiments/{adam}", f"/compare?id={adam}&id={sgd}"):
            text = get(ui.base, path).text
            scripts = re.findall(r"<script([^>]*)>", text)
            assert scripts and all('src="/static/' in s for s in scripts)
            assert not re.search(r"\son[a-z]+=", text)
            assert " style=" not in text and "http://" not in text.replace(shared_disk.url, "")

    def test_read_only(self, shared_disk: Written, serve: Callable[..., RunningUI]) -> None:
        """Only GET and HEAD: anything that could change the repository is refused."""
        ui = serve(shared_disk.url)
        for method in ("POST", "PUT", "DELETE"):
            reply = get(ui.base, f"/experiments/{shared_disk.adam}", method=method)
            assert reply.status == 405

    def test_foreign_host_header_is_refused(
        self, shared_disk: Written, serve: Callable[..., RunningUI]
    ) -> None:
        """On loopback, a request naming another host (DNS rebinding) gets nothing."""
        ui = serve(shared_disk.url)
        reply = get(ui.base, "/api/experiments", headers={"Host": "evil.example:8866"})
        assert reply.status == 421
        assert shared_disk.adam not in reply.text
        assert get(ui.base, "/", headers={"Host": "localhost:8866"}).status == 200
