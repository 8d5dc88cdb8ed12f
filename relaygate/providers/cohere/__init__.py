"""Cohere (v2 ``/chat`` and ``/embed``) as a target.

Pure translators in :mod:`.chat`, :mod:`.stream`, :mod:`.embed` and :mod:`.errors`; the
adapter glue in :mod:`.adapter`.
"""
