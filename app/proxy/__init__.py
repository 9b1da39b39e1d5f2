"""The pull-through machinery every remote repository uses, whatever its format.

A format classifies a request path (:class:`app.proxy.results.Fetch`); the core
(:mod:`app.proxy.core`) answers it from the cache when fresh, else fetches it from the
upstream once (single flight across requests and replicas), tees it into the CAS while
handing it to its reader (:mod:`app.proxy.fill`), and remembers it as a row in
``remote_entries``. Its answers are plain data; :mod:`app.proxy.edge` makes them
HTTP responses.
"""
