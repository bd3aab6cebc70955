"""ingest/: the slot collector (``slotml collect``) and the store it writes through.

Imports only the shared ``slotml`` package.
"""
