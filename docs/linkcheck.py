"""Check the external links of the built site: ``python docs/linkcheck.py site`` (``make linkcheck``).

``mkdocs build --strict`` already checks every internal link and anchor, offline; this fetches each distinct
``http(s)://`` link of the HTML pages (HEAD, then GET when the server refuses HEAD) and lists those that fail.
Exit status 1 if any does. It needs the internet, which the project's machines do not have.
"""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_HREF = re.compile(r"""href=["'](https?://[^"'#]+)""")
# examples of local addresses, and the theme's own footer links
_SKIP = (
    "http://127.0.0.1",
    "http://localhost",
    "https://www.mkdocs.org",
    "https://readthedocs.org",
    "https://github.com/mkdocs/",
)


def check(url: str, timeout: float = 15.0) -> str | None:
    """None when ``url`` answers with a status below 400, else the reason."""
    headers = {"User-Agent": "avformer-linkcheck"}
    for method in ("HEAD", "GET"):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=timeout):
                return None
        except urllib.error.HTTPError as e:
            if method == "HEAD" and e.code in (403, 405, 501):
                continue
            return f"HTTP {e.code}"
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            return str(getattr(e, "reason", e))
    return "refused"


def main(argv: list[str]) -> int:
    site = Path(argv[0] if argv else "site")
    pages: dict[str, list[str]] = {}
    for page in sorted(site.rglob("*.html")):
        for url in _HREF.findall(page.read_text(errors="replace")):
            if not url.startswith(_SKIP):
                pages.setdefault(url, []).append(page.relative_to(site).as_posix())
    if not pages:
        print(f"linkcheck: no external links under {site} (build the site first: make docs)", file=sys.stderr)
        return 1
    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(pages, pool.map(check, pages), strict=True))
    bad = {u: r for u, r in results.items() if r}
    for url, reason in sorted(bad.items()):
        print(f"{url}: {reason} (in {', '.join(sorted(set(pages[url])))})")
    print(f"linkcheck: {len(pages)} external links, {len(bad)} broken")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
