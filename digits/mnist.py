"""MNIST's shape: 28 x 28 grey images of 10 classes, the one place this project says so.

Fashion-MNIST and KMNIST share it, which is why ``data.raw_dir`` may point at
either. A module of its own so that the code that needs the shape (the
model, augmentation, export) does not depend on the IDX reader.
"""

NUM_CLASSES = 10
IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
