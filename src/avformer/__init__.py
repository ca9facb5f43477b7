"""avformer: audio-visual transformers (MMT, VATT and relatives) for PyTorch.

The public API is what this module and each subpackage's ``__all__`` export.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
