"""train/: XGBoost + isotonic calibration, exported as one ONNX file with a model card."""
