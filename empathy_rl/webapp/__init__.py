"""A small local web app (standard library only) that review pages register routes on.

`server.App` holds the routes; `ranking.pages` adds the Win@K ranking pages and `review.pages`
the review of drafted CoE examples; both can share one `App` and one server. `templates` reads
page templates (HTML, CSS, JS) shipped as package files.
"""
