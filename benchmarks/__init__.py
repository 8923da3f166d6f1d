"""Side-by-side benchmark of this registry against the reference (distribution 2.8.2).

Run ``python -m benchmarks.compare --help``. The client is a small hand-written HTTP/1.1 client
(:mod:`benchmarks.client`) so that neither registry is measured through a slow client library.
"""
