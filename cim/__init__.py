"""City information model pipeline: one DuckDB store for IFC, LiDAR and GIS data."""

__version__ = "0.1.0"
