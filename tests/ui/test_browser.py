"""The page in a real headless Chromium (Debian's), driven by Playwright for Python."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli.helpers import Written
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

import replicate
from ui.conftest import spool_of
from ui.helpers import RunningUI

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Set to a directory to keep the README's screenshots there (docs/images).
SCREENSHOTS_ENV = "REPLICATE_UI_SCREENSHOTS"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module, with a fresh user-data dir."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True, accept_downloads=True
        )
        assert context.browser is not None or context.pages is not None
        yield context  # type: ignore[misc]
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    """A fresh tab that fails the test on a dialog (alert) or a page error."""
    tab: Page = browser.new_page()
    problems: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on(
        "console",
        lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
    )
    yield tab
    tab.close()
    assert problems == []


def drawn_pixels(page: Page, selector: str) -> int:
    """Non-transparent pixels of the first canvas under ``selector``."""
    return int(
        page.eval_on_selector(
            selector + " canvas",
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""",
        )
    )


class TestList:
    def test_list_and_filter(
        self, shared_disk: Written, serve: Callable[..., RunningUI], page: Page
    ) -> None:
        """The list shows the written experiments; the filter box narrows it to one."""
        ui = serve(shared_disk.url, spool_of(shared_disk))
        page.goto(ui.base)
        rows = page.locator("#experiments tbody tr")
        expect(rows).to_have_count(2)
        expect(page.locator("#experiments")).to_contain_text(shared_disk.adam[:7])
        page.fill("#filter", "optimizer = sgd")
        page.press("#filter", "Enter")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(shared_disk.sgd[:7])

    def test_new_checkpoint_appears_without_reload(
        self, tmp_path: Path, serve: Callable[..., RunningUI], page: Page
    ) -> None:
        """A running experiment's new checkpoint shows on the open page with no navigation."""
        url = (tmp_path / "repo").as_uri()
        experiment = replicate.init(params={"lr": 1}, repository=url, project_dir=tmp_path)
        try:
            experiment.checkpoint(step=1, metrics={"loss": 1.0}, quiet=True).wait(60)
            ui = serve(url, tmp_path / ".replicate" / "spool")
            page.goto(ui.base)
            expect(page.locator("#experiments")).to_contain_text("running")
            page.evaluate("window.__same_document = true")
            second = experiment.checkpoint(
                step=2, metrics={"loss": 0.5}, primary_metric=("loss", "minimize"), quiet=True
            )
            second.wait(60)
            expect(page.locator("#experiments")).to_contain_text(f"{second.id[:7]} (step 2)")
            page.goto(f"{ui.base}experiments/{experiment.id}")
            page.evaluate("window.__same_document = true")
            third = experiment.checkpoint(step=3, metrics={"loss": 0.25}, quiet=True)
            third.wait(60)
            expect(page.locator("#checkpoints")).to_contain_text(third.id[:7])
            assert page.evaluate("window.__same_document") is True
        finally:
            experiment.stop()


class TestExperiment:
    def test_chart_draws_and_download_matches(
        self, shared_disk: Written, serve: Callable[..., RunningUI], page: Page, tmp_path: Path
    ) -> None:
        """Each metric gets a chart with drawn pixels; a downloaded file equals what was saved."""
        ui = serve(shared_disk.url)
        page.goto(f"{ui.base}experiments/{shared_disk.adam[:7]}")
        expect(page.locator("#charts .chart")).to_have_count(2)  # loss, accuracy
        assert drawn_pixels(page, "#charts .chart:first-child") > 100
        expect(page.locator("#checkpoints tbody tr")).to_have_count(4)
        expect(page.locator("#checkpoints .best")).to_have_count(1)
        first = shared_disk.checkpoints["adam"][0]
        page.goto(f"{ui.base}checkpoints/{first}/files")
        with page.expect_download() as info:
            page.click("text=model.pth")
        target = tmp_path / "downloaded"
        info.value.save_as(target)
        assert target.read_bytes() == b"adam weights at step 0\n"


class TestCompare:
    def test_compare_overlays_and_lists_differences(
        self, shared_disk: Written, serve: Callable[..., RunningUI], page: Page
    ) -> None:
        """Two runs picked in the list: their curves share a chart; lr and optimizer differ."""
        ui = serve(shared_disk.url)
        page.goto(ui.base)
        page.check(f"input[value='{shared_disk.adam}']")
        page.check(f"input[value='{shared_disk.sgd}']")
        page.click("#compare-button")
        expect(page.locator("#charts .chart")).to_have_count(2)
        legend = page.locator("#charts .chart:first-child .u-legend .u-series")
        expect(legend).to_have_count(3)  # step + the two runs
        expect(legend.nth(1)).to_contain_text(shared_disk.adam[:7])
        expect(legend.nth(2)).to_contain_text(shared_disk.sgd[:7])
        assert drawn_pixels(page, "#charts .chart:first-child") > 100
        diff = page.locator("#diff")
        expect(diff).to_contain_text("lr")
        expect(diff).to_contain_text("optimizer")
        expect(page.locator("#scatter")).to_have_attribute("data-points", "2")


class TestXSS:
    def test_hostile_param_does_not_run(
        self, tmp_path: Path, serve: Callable[..., RunningUI], page: Page
    ) -> None:
        """A param named <img src=x onerror=...> shows as text on every page and never runs."""
        from ui.test_security import XSS, write_hostile

        url, a, b = write_hostile(tmp_path)
        ui = serve(url)
        for path in ("", f"experiments/{a}", f"compare?id={a}&id={b}"):
            page.goto(ui.base + path)
            page.wait_for_load_state("load")
            expect(page.locator("main")).to_contain_text(XSS)
            assert page.locator("main img").count() == 0
        # the `page` fixture fails the test if an alert() ran


class TestScreenshots:
    def test_screenshots_of_a_demo_repository(
        self, tmp_path: Path, serve: Callable[..., RunningUI], page: Page
    ) -> None:
        """The README's pictures: the list, an experiment and a comparison of demo-like runs."""
        url = (tmp_path / "repo").as_uri()
        ids = []
        for lr in (0.1, 0.03, 0.01):
            experiment = replicate.init(
                params={"learning_rate": lr, "num_epochs": 30},
                repository=url,
                project_dir=tmp_path,
            )
            loss = 2.0
            for epoch in range(30):
                loss *= 1 - lr * 2
                experiment.checkpoint(
                    step=epoch,
                    metrics={"loss": loss, "accuracy": 1 - loss / 2.5},
                    primary_metric=("loss", "minimize"),
                    quiet=True,
                )
            experiment.stop()
            ids.append(experiment.id)
        out = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screens")
        out.mkdir(parents=True, exist_ok=True)
        ui = serve(url)
        page.set_viewport_size({"width": 1100, "height": 720})
        shots = {
            "ui-list.png": ("", "#experiments tbody tr"),
            "ui-experiment.png": (f"experiments/{ids[0]}", "#charts canvas"),
            "ui-compare.png": (f"compare?id={ids[0]}&id={ids[2]}", "#scatter canvas"),
        }
        for name, (path, ready) in shots.items():
            page.goto(ui.base + path)
            page.locator(ready).first.wait_for()
            page.screenshot(path=str(out / name), full_page=True)
            assert (out / name).stat().st_size > 10_000
