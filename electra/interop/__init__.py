"""The Hugging Face ecosystem: transformers folders in and out (hf.py) and the model cards written beside them
(model_card.py)."""
