"""The pull-through engine every remote repository uses, whatever its format.

A format classifies a request path (:class:`app.proxy.engine.Fetch`); the engine
answers it from the cache when fresh, else fetches it from the upstream once (single
flight across requests and replicas), streams it to the client and into the CAS at
the same time, and remembers it as a row in ``remote_entries``.
"""
