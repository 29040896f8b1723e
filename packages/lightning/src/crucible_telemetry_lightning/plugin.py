"""Entry-point module of the Lightning plugin: no hooks; the events it emits are all in the core registry.

Kept (and kept free of Lightning imports) so the core lists ``lightning`` among its loaded plugins.
"""
