"""The FastAPI server and the CesiumJS "one map" page (`cim serve`).

``app`` builds the application, ``state`` holds the store while it serves (reads on cursors of
their own, writes as queued jobs on one writer thread), ``api`` the JSON API, ``ogc`` OGC API -
Features (JSON and HTML), ``tiles`` the tiles beside the store, ``static/`` the page.
"""
