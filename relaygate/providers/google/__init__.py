"""Google Gemini (``generateContent``, ``streamGenerateContent``, ``embedContent``) as a target.

Pure translators in :mod:`.chat`, :mod:`.stream`, :mod:`.embed` and :mod:`.errors`; the
adapter glue in :mod:`.adapter`.
"""
