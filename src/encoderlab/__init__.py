"""encoderlab: train, fine-tune and compare BERT-style Transformer encoders on a budget."""

__version__ = "0.1.0"
