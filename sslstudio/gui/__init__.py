"""The desktop app. The only package that imports PySide6 or pyqtgraph."""

APP_NAME = "SSL Studio"  # in titles and message boxes
