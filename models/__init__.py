"""Model families. Each module holds a family's spec, its math, and both backends' programs.

- :class:`PPCA` — probabilistic PCA (``models/ppca.py``).
"""

from .ppca import PPCA

__all__ = ["PPCA"]
