"""Check the internal links of the built HTML site (run by ``make docs``).

Every ``href`` and ``src`` that is not an external URL must name a file
that exists under the build directory, and every ``#fragment`` must be an
``id`` (or ``name``) in the page it points to. External links are not
checked: the build is offline. Exit status 1 lists the broken links.

Usage: python docs/check_internal_links.py docs/_build/html
"""

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Pages written by Sphinx itself whose links are built by JavaScript or
# point at sources that are not rendered pages.
_SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
# Theme templates copied as they are (Jinja, not HTML links).
_SKIP_DIRS = {"_static", "_modules", "_sources"}


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)
            if value and ((key == "href" and tag in ("a", "link")) or (key == "src" and tag in ("img", "script"))):
                self.links.append(value)


def _parse(path, cache):
    if path not in cache:
        c = _Collector()
        c.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = c
    return cache[path]


def check(root):
    root = Path(root).resolve()
    cache, broken, n = {}, [], 0
    for page in sorted(root.rglob("*.html")):
        if page.name in _SKIP_PAGES or _SKIP_DIRS.intersection(page.relative_to(root).parts):
            continue
        for link in _parse(page, cache).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                continue  # external (http, https, mailto, data, ...)
            n += 1
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(root)}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _parse(target, cache).ids:
                    broken.append(f"{page.relative_to(root)}: {link} (no such anchor)")
    return n, broken


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    root = argv[0] if argv else "docs/_build/html"
    if not Path(root, "index.html").exists():
        print(f"{root}/index.html not found: build the site first (make docs).")
        return 1
    n, broken = check(root)
    for line in broken:
        print("BROKEN", line)
    print(f"{n} internal links checked, {len(broken)} broken.")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
