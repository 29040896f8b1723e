"""Entry-point module of the hf plugin: no hooks; the events it emits are all in the core registry.

Kept (and kept free of ``transformers`` imports) so the core lists ``hf`` among its loaded plugins.
"""
