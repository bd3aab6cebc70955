"""serve/: the scorer and entry gate a trading bot loads (onnxruntime only), replay, read API."""
