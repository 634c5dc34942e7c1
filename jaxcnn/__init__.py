"""jaxcnn: the classic convolutional networks in JAX/Flax, trained as the papers did."""
