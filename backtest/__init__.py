"""backtest/: offline evaluation of the entry gate: replay over the lake, its fill models and
the policy table the training report prints (model vs manual filters, taker and maker)."""
