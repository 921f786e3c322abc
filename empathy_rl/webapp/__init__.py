"""A small local web app (standard library only) that review pages register routes on.

`server.App` holds the routes; `ranking.pages` adds the Win@K ranking pages. Other review pages
(e.g. SFT data review) add their own routes to the same `App` and share one server.
"""
