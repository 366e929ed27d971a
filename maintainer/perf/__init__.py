"""Performance tuning: what a host has, what its configs should say and why, and how fast it serves.

- ``facts``: CPUs, RAM, PHP/nginx/MariaDB versions, the PHP-FPM pool's worker sizes, the site's
  PHP code and database size, read on the site in one command.
- ``tuning``: the tuned values computed from the facts, each with a one-line reason, and the
  pins (inventory ``perf_tuning``, runbook ``overrides``) that replace them.
- ``bench``: a fixed short HTTP load from the controller (TTFB p50/p95, requests per second)
  and the before/after comparison that decides whether a change is kept.
"""
