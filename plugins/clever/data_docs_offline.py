"""Make a GX Data Docs site work offline (school networks often cannot reach CDNs).

GX's page templates load jQuery, Bootstrap, Font Awesome, bootstrap-table, vega... from
CDNs, and the index page's table is drawn by JavaScript, so offline it is empty.
``make_offline`` copies what PyPI packages ship (the XStatic-* requirements) into
``<docs>/static/vendor`` and points every page there by a relative path. What no PyPI
package ships is dropped: bootstrap-table gets a small local stand-in that draws the
index tables, and vega charts (only the KL-divergence expectation draws one) say they
are unavailable. Kept light on purpose: this module is in the Airflow plugins folder.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
from pathlib import Path

VENDOR = "static/vendor"
FALLBACKS = f"{VENDOR}/offline-fallbacks.js"

# (xstatic.pkg module, file or folder of its data dir): copied to static/vendor/<module>/<path>
_ASSETS = [("jquery", "jquery.min.js"), ("bootstrap", "css/bootstrap.min.css"),
           ("bootstrap", "js/bootstrap.bundle.min.js"),
           ("font_awesome", "css/all.min.css"), ("font_awesome", "webfonts")]  # the css loads ../webfonts

# A CDN URL (whole match) -> its local copy under the docs root, or None to drop the tag.
_URLS = [(re.compile(pattern), target) for pattern, target in [
    (r"https://code\.jquery\.com/jquery-3\.[\d.]+\.min\.js", f"{VENDOR}/jquery/jquery.min.js"),
    (r"https://\w+\.bootstrapcdn\.com/bootstrap/4\.[\d.]+/css/bootstrap\.min\.css",
     f"{VENDOR}/bootstrap/css/bootstrap.min.css"),
    # The bundle includes Popper, so the separate Popper tag goes.
    (r"https://\w+\.bootstrapcdn\.com/bootstrap/4\.[\d.]+/js/bootstrap\.min\.js",
     f"{VENDOR}/bootstrap/js/bootstrap.bundle.min.js"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/popper\.js/1\.[\d.]+/umd/popper\.min\.js", None),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/font-awesome/6\.[\d.]+/css/all\.min\.css",
     f"{VENDOR}/font_awesome/css/all.min.css"),
    # Not on PyPI: the stand-in, and no filter controls (so no datepicker either).
    (r"https://unpkg\.com/bootstrap-table@1\.[\d.]+/dist/bootstrap-table\.min\.js", FALLBACKS),
    (r"https://unpkg\.com/bootstrap-table@1\.[\d.]+/dist/.+\.css", None),
    (r"https://unpkg\.com/bootstrap-table@1\.[\d.]+/dist/extensions/filter-control/.+\.js", None),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/bootstrap-datepicker/1\.[\d.]+/(css|js)/.+", None),
    # Not on PyPI: the dark-mode theme (pages stay light) and vega (see the stand-in).
    (r"https://cdn\.jsdelivr\.net/npm/@forevolve/bootstrap-dark@1\.[\d.]+/.+\.css", None),
    (r"https://cdn\.jsdelivr\.net/npm/vega(-lite|-embed)?@\d+", None),
    # GX's logo (the navbar's and the dark-mode one): GX itself copies logo-long.png.
    (r"https://great-expectations-web-assets\.s3\.[\w.-]+\.amazonaws\.com/[\w-]+\.png(\?[^\"')]*)?",
     "static/images/logo-long.png"),
]]
_TAG = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=\"(https?://[^\"]+)\"[^>]*>(?:</script>)?")
_CSS_URL = re.compile(r"url\((['\"]?)(https?://[^'\")]+)\1\)")
# GX counts a page's depth for its own static files and gets validation pages' favicon one
# level short: every static/ reference is re-rooted from the page's real depth.
_STATIC = re.compile(r"\b((?:src|href)=\")(?:\.\.?/)*(static/)")
_CROSS_ORIGIN = re.compile(r"\s(?:integrity|crossorigin)=\"[^\"]*\"")  # would block local files

_FALLBACKS_JS = """\
/* Written by clever.data_docs_offline: stand-ins for what no PyPI package ships. */
(function ($) {
  // bootstrap-table: draws GX's index tables (sorted as asked, rows open their page);
  // no search, filters or paging.
  if ($ && !$.fn.bootstrapTable) $.fn.bootstrapTable = function (options) {
    if (typeof options !== "object") return this;  // clearFilterControl, resetSearch, auto-init
    var $table = this.addClass("table table-bordered table-hover"), cols = options.columns || [];
    var sortCol = cols.filter(function (c) { return c.field === options.sortName; })[0];
    var key = sortCol && (sortCol.sortName || sortCol.field), dir = options.sortOrder === "desc" ? -1 : 1;
    var rows = (options.data || []).slice(), attrs = window[options.rowAttributes];
    if (key) rows.sort(function (a, b) { return a[key] < b[key] ? -dir : a[key] > b[key] ? dir : 0; });
    $(options.toolbar).hide();  // its Clear Filters button has no filters to clear
    var $head = $("<tr>").append(cols.map(function (c) { return $("<th>").text(c.title); }));
    var $body = $("<tbody>");
    rows.forEach(function (row, i) {
      var $tr = $("<tr>").attr(attrs ? attrs(row, i) : {}).css("cursor", "pointer").appendTo($body);
      cols.forEach(function (c) { $("<td>").css("text-align", c.align || "").html(row[c.field]).appendTo($tr); });
      $tr.on("click", function (e) {
        if (!$(e.target).closest("a").length) $table.trigger("click-row.bs.table", [row, $tr]);
      });
    });
    $table.empty().append($("<thead>").append($head), $body);
    return this;
  };
  // vega: a chart says it cannot be drawn instead of leaving an empty box.
  window.vegaEmbed = window.vegaEmbed || function (el) {
    $(el).text("This chart needs vega, which is not available offline.");
    return Promise.resolve();
  };
})(window.jQuery);
"""


def _local(url: str) -> str | bool | None:
    """The local copy of a CDN URL (path under the docs root), None to drop it, False if unknown."""
    for pattern, target in _URLS:
        if pattern.fullmatch(url):
            return target
    return False


def _rewrite(html: str, root: str) -> str:
    """Point a page's CDN assets at their local copies; ``root`` leads from the page to the docs root."""
    def tag(match: re.Match[str]) -> str:
        target = _local(match[1])
        if target is False:
            return match[0]  # unknown: left as is (the test lists what remains)
        if target is None:
            return ""
        return _CROSS_ORIGIN.sub("", match[0].replace(match[1], root + target))

    def css_url(match: re.Match[str]) -> str:
        target = _local(match[2])
        return f"url({match[1]}{root}{target}{match[1]})" if target else match[0]

    html = _CSS_URL.sub(css_url, _TAG.sub(tag, html))
    return _STATIC.sub(lambda match: match[1] + root + match[2], html)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    """A hard link where the file system allows it: every run's site is whole on its own,
    yet a fleet's thousands of sites share one copy of the 1.4 MB of assets."""
    Path(target).unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)


def make_offline(docs_dir: Path) -> None:
    """Vendor the assets into docs_dir and point every page of the site at them (idempotent)."""
    docs_dir = Path(docs_dir)
    for module, path in _ASSETS:
        # XStatic packages name their files' folder BASE_DIR; imported here, not at load.
        source = Path(importlib.import_module(f"xstatic.pkg.{module}").BASE_DIR) / path
        target = docs_dir / VENDOR / module / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(source, target)
    (docs_dir / FALLBACKS).write_text(_FALLBACKS_JS, encoding="utf-8")
    for page in docs_dir.rglob("*.html"):
        # Pages sit in nested folders (validations/<suite>/<run>/<time>/<batch>.html).
        root = Path(os.path.relpath(docs_dir, page.parent)).as_posix() + "/"
        html = page.read_text(encoding="utf-8")
        offline = _rewrite(html, root)
        if offline != html:
            page.write_text(offline, encoding="utf-8")
