"""One module per venue stream (Gamma REST, the CLOB market socket, the live-data relay), and
the factory that builds the collector's feeds from its config."""
