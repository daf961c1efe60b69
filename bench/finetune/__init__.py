"""`python -m bench.finetune`: our trainer against `mlx_lm.lora`, and hot adapter loading
against restarting a server with the adapter."""
