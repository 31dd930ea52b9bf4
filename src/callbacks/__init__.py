"""Callbacks: a task's end pushed to the URLs its POSTs named, signed the Standard Webhooks
way and delivered at least once (docs/results-pushed.md).

- `urls`: what a `callback_url` may be, and which addresses it may reach (no SSRF);
- `signing`: the Standard Webhooks headers and signature;
- `event`: the body of a callback (`{type, timestamp, data}`);
- `client`: one attempt over HTTP, to a checked address only, redirects never followed;
- `rules`: what an attempt's answer means (delivered, failed, try again when).

The Redis state (which deliveries are due, each one's attempts) is in src/store.py and
src/callbacks/deliveries.py; src/runners/deliverer.py runs the deliveries.
"""
