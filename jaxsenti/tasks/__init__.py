"""Pretraining tasks: for one model, how unlabeled text becomes batches, which model and objective train on
them, and how the result is exported. The model registry names each model's task; ``jaxsenti.pretrain``
runs any of them through the same epoch loop as fine-tuning."""
