"""3D Tiles from the store: glTF/GLB encoding, tilesets, point-cloud octrees, LOD simplification.

Not built yet (see DESIGN.md, "Tiles"); the package exists so the distribution's layout is the
one the design names.
"""
