"""fmnist-pl: which optimizer trains the Fashion-MNIST MLP best? (PyTorch Lightning)."""

__version__ = "0.1.0"
