"""sim/: a local Polymarket on loopback (Gamma, CLOB REST + market websocket, live-data relay).

Imported only by tests, the demo and the CLI.
"""
