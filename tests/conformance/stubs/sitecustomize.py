"""Activates the conformance stubs in every Python process the suite starts.

check.py puts this directory on PYTHONPATH for the real ``lmcache coordinator`` process, so
the console script runs unmodified with torch stubbed and the network guard on.
"""

import conformance_stubs

conformance_stubs.install()
