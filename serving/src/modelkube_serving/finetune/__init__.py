"""`modelkube finetune`: LoRA, DoRA or full fine-tuning on mlx-lm's tuner, with progress."""
