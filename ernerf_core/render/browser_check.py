"""Do the rendered videos play in a browser? Headless Chromium says.

``browser_check(videos, screenshot=None)`` serves the videos' folder on 127.0.0.1, loads a
page with one muted, autoplaying ``<video>`` per file in headless Chromium and reads back
what each element reports after a few seconds of (virtual) time: ``time`` (currentTime,
seconds), ``duration``, ``width`` x ``height``, ``ready`` (readyState, 4 = can play
through), ``paused`` and ``error`` (the MediaError code, or None). A video plays when its
time has advanced past 0 with no error. With ``screenshot`` the page is also saved as a
PNG, the videos mid-play, for a person to look at.

Chromium is not a dependency: :func:`find_chromium` returns None when it is not installed
(Debian: ``apt install chromium``), and ``ernerf browser-check`` then says so.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import re
import shutil
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# offline and quiet: no first-run UI, no background fetches, a throwaway profile
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--mute-audio")

PAGE = """<!doctype html><html><head><style>
body {{ background: #222; color: #eee; margin: 8px }}
figure {{ margin: 0; width: {width}px }}
figcaption {{ font: 10px monospace; word-break: break-all }}
</style></head><body>
<div style="display:flex;flex-wrap:wrap;gap:12px">{figures}</div>
<script>
document.querySelectorAll("video").forEach(el => {{
  const out = document.getElementById("state-" + el.id);
  const show = () => {{ out.textContent = JSON.stringify({{src: el.dataset.name, time: el.currentTime,
    duration: el.duration, width: el.videoWidth, height: el.videoHeight, ready: el.readyState,
    paused: el.paused, error: el.error ? el.error.code : null}}); }};
  ["loadeddata", "playing", "timeupdate", "error"].forEach(e => el.addEventListener(e, show));
  el.play().catch(e => {{ out.textContent = JSON.stringify({{src: el.dataset.name, error: String(e)}}); }});
}});
</script></body></html>"""
FIGURE = ('<figure><video id="v{i}" data-name="{name}" src="{src}" muted autoplay playsinline width="{w}">'
          '</video><figcaption id="state-v{i}">not loaded</figcaption></figure>')


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the page's requests are not news
        pass


def browser_check(videos: list, screenshot=None, *, play_ms: int = 3000, width: int = 256,
                  chromium: str | None = None, timeout: float = 120.0) -> list[dict]:
    """One dict per video (see the module docstring), ``plays`` True when it played."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (apt install chromium)")
    videos = [Path(v).resolve() for v in videos]
    with tempfile.TemporaryDirectory(prefix="ernerf-browser-") as tmp:
        root = Path(tmp)
        for i, v in enumerate(videos):  # links: one served folder whatever the videos' folders
            (root / f"v{i}.mp4").symlink_to(v)
        figures = "".join(FIGURE.format(i=i, name=html.escape(v.name), src=f"v{i}.mp4", w=width)
                          for i, v in enumerate(videos))
        (root / "index.html").write_text(PAGE.format(figures=figures, width=width))
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
            base = [chromium, *FLAGS, f"--user-data-dir={root / 'profile'}", f"--virtual-time-budget={play_ms}"]
            dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout).stdout
            if screenshot is not None:
                shot = Path(screenshot).resolve()
                shot.parent.mkdir(parents=True, exist_ok=True)
                cols = min(len(videos), 4)
                rows = (len(videos) + cols - 1) // cols
                size = f"--window-size={cols * (width + 12) + 48},{rows * (width + 90) + 32}"
                subprocess.run([*base, size, f"--screenshot={shot}", url], capture_output=True, timeout=timeout)
        finally:
            server.shutdown()
    states = []
    for i, v in enumerate(videos):
        m = re.search(rf'id="state-v{i}">(.*?)</figcaption>', dom, re.S)
        text = html.unescape(m.group(1)) if m else ""
        try:
            state = json.loads(text)
        except json.JSONDecodeError:
            state = {"error": text or "no state (page did not load)"}
        state["video"] = str(v)
        state["plays"] = bool(state.get("time", 0) > 0 and state.get("error") is None)
        states.append(state)
    return states


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("browser-check", help="do videos play in headless Chromium?",
                              description="Loads each video in headless Chromium and reports whether it "
                                          "plays; --screenshot saves the page mid-play.")
    p.add_argument("videos", nargs="+", help="mp4 files")
    p.add_argument("--screenshot", default=None, help="PNG of the page with the videos playing")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> dict:
    from ..errors import StageError

    if find_chromium() is None:
        raise StageError("-", "browser-check", "no Chromium on this machine",
                         "apt install chromium, or skip this check")
    states = browser_check(args.videos, args.screenshot)
    for s in states:
        print(f"{'plays' if s['plays'] else 'DOES NOT PLAY'}: {s['video']} ({json.dumps(s)})")
    if not all(s["plays"] for s in states):
        raise StageError("-", "browser-check", "a video did not play in Chromium", "see the states printed above")
    return {"videos": len(states), "screenshot": args.screenshot}
