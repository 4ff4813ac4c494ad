"""Fine-tuning: task families (classification, regression, tagging, extractive QA), their metrics, the loop,
and `electra evaluate` / `electra predict`.

- tasks.py: the task families (heads, featurisation, losses, predictions); qa.py: QA windows and answer decoding
- metrics.py: accuracy, F1, MCC, correlations, span F1, the official SQuAD scores
- finetune.py: set-up -> loop -> evaluate -> keep the best; predict.py: load a fine-tuned folder and use it
"""
