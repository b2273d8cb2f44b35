"""
The operator's command line: ``relaycall call ...`` and ``relaycall events listen``.

Private: ``relaycall/__main__.py`` builds its parsers from here, and docs/cli.md is
the documentation. Nothing here is imported by ``import relaycall``.
"""
