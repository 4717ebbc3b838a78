"""What the train step uses besides the network and the loss: PyTorch's Adam and rematerialisation.

- optimizer.py: TorchAdam, torch.optim's Adam / AdamW step for step (the optimizer train.py compiles with).
- remat.py: train.py --remat: the towers' blocks recompute their activations in the backward pass; the stems run
  in chunks of samples.

May import: resnet18 (the blocks remat.py cuts the towers into).
"""
