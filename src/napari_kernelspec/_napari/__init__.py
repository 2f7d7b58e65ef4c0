"""The napari front end: npe2 commands (reader, sample data), layer data built from results,
and the Qt widget under ``_qt/``. Nothing in the core imports this package.
"""
