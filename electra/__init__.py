"""electra: pre-train, fine-tune and use ELECTRA models (Clark et al., ICLR 2020)."""

__version__ = "0.1.0"
