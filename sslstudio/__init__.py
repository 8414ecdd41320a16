"""SSL Studio: train a foundation model of your own unlabelled images by pointing and clicking."""

__version__ = "0.1.0"
