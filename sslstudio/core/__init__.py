"""The engine. Nothing under this package imports Qt: the CLI, the tests and the GUI all drive it."""
