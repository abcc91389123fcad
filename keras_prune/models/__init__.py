"""The model zoo: LeNets, CIFAR VGG/ResNets, RNP's 4-conv net, ResNet-50, MobileNets and AlexNet.

Build any of them with `get_model(name, input_shape, num_classes, width=, weights=,
seed=)`; `MODEL_NAMES` lists the names.

All models output **logits** (no softmax), so train them with
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)` or another
`from_logits=True` loss. They are channels_last functional models made of standard
Keras layers only (no `Lambda`), so the dependency-graph engine understands every
layer, and their layer names are fixed, not generated.

Every model builds for any dataset's input size, down to 8x8x1:
- LeNet-5 switches its two 5x5 convs to 'same' padding for inputs under 13x13;
- VGG-16, conv4 and the CIFAR ResNets pool with 'same' padding and end in global pooling;
- ResNet-50 and the MobileNets resize inputs under 32x32, AlexNet inputs under
  67x67, in a `Resizing` layer named "resize" at the start of the model stem.
"""

from keras_prune.models.zoo import MODEL_NAMES
from keras_prune.models.zoo import get_model

__all__ = ["MODEL_NAMES", "get_model"]
