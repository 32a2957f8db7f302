"""Model side of movrec: tensors in, tensors out; knows nothing about files or pandas."""
