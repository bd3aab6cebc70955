"""The sim's services, one module each; ``sim/server.py`` assembles them into one app.

``gamma`` (Gamma REST), ``clob_rest`` (CLOB REST), ``market_ws`` (CLOB market websocket and the
book loop), ``relay`` (live-data price relay), ``control`` (``/_sim`` and fault switching);
``books`` (the books on display, BOOK_LEAD_S) and ``connections`` (the socket registry) are what
they share. Services never import ``server``: it hands them the shared state.
"""
