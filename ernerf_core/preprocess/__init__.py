"""Video normalisation and face preprocessing stages (one module per stage)."""
