"""Content distribution: content addressed by the root of a hash tree over its
chunks, fetched from several providers at once, every chunk verified on arrival
(``docs/content.md``, ``docs/content-wire.md``)."""
