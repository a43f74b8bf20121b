"""The ``web`` dashboard: an aiohttp server with a JSON state API, ``/metrics``, a job
API and a static single-page UI (``static/``: hand-written HTML, CSS, JS and SVG
charts; no CDN, no build step). Imported only by its registration's factory, so
``import microray`` never imports aiohttp."""
