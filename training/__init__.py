"""What training uses besides the network and the loss: PyTorch's Adam, rematerialisation, checkpoints.

- checkpoints.py: train.py's checkpoints (epoch ends and every --checkpoint_every steps), atomic, finite, bounded.
- optimizer.py: TorchAdam, torch.optim's Adam / AdamW step for step (the optimizer train.py compiles with).
- tensorboard_log.py: train.py's TensorBoard events (per step, per epoch, heatmaps of fixed items, the flags).
- remat.py: train.py --remat: the towers' blocks recompute their activations in the backward pass; the stems run
  in chunks of samples.

May import: resnet18 (the blocks remat.py cuts the towers into), model (checkpoints.py checks its variables),
safeguards, visualization (tensorboard_log.py draws the heatmaps as predict.py does).
"""
