"""fleetcast's model side: a Temporal Fusion Transformer trained on fleet history in the long
Parquet format, evaluated against baselines and exported to ONNX for the Rust predictor.

Modules: `schema` (metric/profile vocabulary, ranges), `data` (reading, validating, windowing),
`model` (the TFT), `evaluate` (scores and baselines), `export` (ONNX, metadata, fixtures),
`train` (the pipeline and its command line).
"""
