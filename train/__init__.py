"""The Uni-MuMER training kit: dataset readers, multi-task data, error corpus, fine-tuning, evaluation, publishing."""
