"""Data Docs work offline: real GX Data Docs, after clever.data_docs_offline.make_offline,
load every script, style, font and image from the site itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clever.data_docs_offline import make_offline


class _References(HTMLParser):
    """Every src/href of a page, by tag, and the url(...)s of its inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, rel, url)
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self._in_style = tag == "style"
        for name in ("src", "href"):
            if attributes.get(name):
                self.refs.append((tag, attributes.get("rel") or "", attributes[name]))

    def handle_data(self, data):
        if self._in_style:
            self.refs += [("style", "", url) for url in re.findall(r"url\(['\"]?([^'\")]+)", data)]

    def handle_endtag(self, tag):
        self._in_style = False


def _references(page: Path) -> list[tuple[str, str, str]]:
    parser = _References()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    """A site built as clever.validation.run_suites builds one, on a pandas frame."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    docs_dir = tmp_path_factory.mktemp("data_docs")
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={"run": {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }}))
    batch = context.data_sources.add_pandas("frames").add_dataframe_asset("users").add_batch_definition_whole_dataframe(
        "all")
    # A dotted suite name nests its pages a level deeper.
    suite = context.suites.add(gx.ExpectationSuite(name="clever.users", expectations=[
        gx.expectations.ExpectColumnValuesToNotBeNull(column="id"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="role", value_set=["student", "teacher"])]))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name="run_1", validation_definitions=[context.validation_definitions.add(
            gx.ValidationDefinition(name="users_run_1", data=batch, suite=suite))],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["run"])]))
    checkpoint.run(batch_parameters={"dataframe": pd.DataFrame({"id": [1, None], "role": ["student", "x"]})})
    assert any("https://" in p.read_text(encoding="utf-8") for p in docs_dir.rglob("*.html"))  # GX's CDN links
    make_offline(docs_dir)
    return docs_dir


def test_pages_load_nothing_from_the_network(docs):
    pages = sorted(docs.rglob("*.html"))
    assert {p.parent.relative_to(docs).parts[:1] for p in pages} == {(), ("expectations",), ("validations",)}
    remote = [(p.relative_to(docs), tag, url) for p in pages for tag, rel, url in _references(p)
              if re.match(r"(https?:)?//", url) and tag != "a"]  # links to GX's site are fine
    assert remote == []


def test_every_local_reference_resolves(docs):
    checked = 0
    for page in docs.rglob("*.html"):
        for _tag, _rel, url in _references(page):
            if re.match(r"(https?:|#|mailto:|javascript:)", url):
                continue
            assert (page.parent / url.split("?")[0].split("#")[0]).resolve().is_file(), (page, url)
            checked += 1
    for css in (docs / "static" / "vendor").rglob("*.css"):  # Font Awesome's webfonts
        for url in re.findall(r"url\(['\"]?([^'\")]+)", css.read_text(encoding="utf-8")):
            if not url.startswith("data:"):
                assert (css.parent / url.split("?")[0].split("#")[0]).is_file(), (css, url)
                checked += 1
    assert checked > 30


def test_index_page_has_what_draws_its_table(docs):
    scripts = [url for tag, _rel, url in _references(docs / "index.html") if tag == "script"]
    styles = [url for tag, rel, url in _references(docs / "index.html") if tag == "link" and rel == "stylesheet"]
    assert any(url.endswith("/jquery.min.js") for url in scripts)
    assert any(url.endswith("/bootstrap.min.css") for url in styles)
    table = [url for url in scripts if "$.fn.bootstrapTable" in (docs / url).read_text(encoding="utf-8")]
    assert table, scripts
    assert scripts.index(table[0]) > scripts.index(next(u for u in scripts if u.endswith("/jquery.min.js")))


def test_make_offline_is_idempotent(docs):
    before = {p: p.read_bytes() for p in docs.rglob("*") if p.is_file()}
    make_offline(docs)
    assert {p: p.read_bytes() for p in docs.rglob("*") if p.is_file()} == before


def test_module_imports_nothing_heavy():
    """It is in the Airflow plugins folder, imported by every scheduler and worker."""
    code = "import sys, clever.data_docs_offline; print(*sys.modules)"
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # (XStatic-Bootstrap's .pth file registers the xstatic namespaces at start-up.)
    assert [m for m in modules if m.startswith(("great_expectations", "pandas", "xstatic.pkg."))] == []
