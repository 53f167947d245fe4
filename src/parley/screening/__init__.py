"""Content screening of written messages and templates (brief, invariant 8).

``default_screener().screen(text, third_party=False)`` returns a
:class:`parley.core.content.ContentScreening` naming the lexicon version and every hit.
"""

from parley.screening.lexicon import CATEGORIES, Lexicon, LexiconError, load_lexicon
from parley.screening.screener import Screener, default_screener

__all__ = ["CATEGORIES", "Lexicon", "LexiconError", "Screener", "default_screener", "load_lexicon"]
