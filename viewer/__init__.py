"""The FastAPI server and the CesiumJS "one map" page.

Not built yet (see DESIGN.md, "Viewer"); the package exists so the distribution's layout is the
one the design names.
"""
