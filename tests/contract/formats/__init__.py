"""The format contract: one suite (``suite.py``), one case per format (``test_<format>.py``)."""
