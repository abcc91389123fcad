"""Per-image preprocessing: one class per recipe, each with a train and an eval transform.

Every transform takes one float32 HWC image scaled to `[0, 1]` and returns the normalised image
`(image - mean) / std`. Train transforms also take a stateless seed (a `[2]` int tensor) so that
augmentation is reproducible for a given run seed and does not depend on thread scheduling.
"""

import tensorflow as tf

__all__ = ["Normalize", "PadCropFlip", "ResizedCrop"]

# The conventional ImageNet eval recipe resizes the shorter side to 256 and crops 224.
_EVAL_RESIZE_RATIO = 256 / 224


def _validate_stats(mean, std):
    if len(mean) != len(std) or not mean:
        raise ValueError(
            f"Expected `mean` and `std` of the same non-zero length (one per channel). "
            f"Received: mean={mean}, std={std}"
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"Expected every `std` to be > 0. Received: std={std}")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


class Normalize:
    """Scale-and-normalise, optionally resized; no augmentation (the MNIST-like recipe).

    Args:
        mean: Per-channel mean of training images in `[0, 1]`.
        std: Per-channel standard deviation of training images in `[0, 1]`.
        output_size: Optional `(height, width)` every image is resized to.
    """

    augmentation = "none"

    def __init__(self, *, mean, std, output_size=None):
        self.mean, self.std = _validate_stats(mean, std)
        self.output_size = output_size

    def output_shape(self, input_shape):
        """Returns the `(height, width, channels)` the transforms produce for `input_shape`."""
        height, width, _ = input_shape
        if self.output_size is not None:
            height, width = self.output_size
        return (height, width, len(self.mean))

    def normalise(self, image):
        return (image - tf.constant(self.mean)) / tf.constant(self.std)

    def resize(self, image):
        if self.output_size is None:
            return image
        return tf.image.resize(image, self.output_size, antialias=True)

    def train(self, image, seed):
        """Returns the training view of `image`; `seed` is unused without augmentation."""
        del seed
        return self.eval(image)

    def eval(self, image):
        """Returns the evaluation view of `image`."""
        return self.normalise(self.resize(image))


class PadCropFlip(Normalize):
    """The CIFAR recipe: zero-pad, random crop back to the original size, horizontal flip.

    The image is resized to `output_size` (if given) after the crop, so the crop and pad stay
    in the units of the original image.

    Args:
        mean: Per-channel mean of training images in `[0, 1]`.
        std: Per-channel standard deviation of training images in `[0, 1]`.
        output_size: Optional `(height, width)` every image is resized to.
        pad: Pixels of zero padding on each side before the random crop.
    """

    def __init__(self, *, mean, std, output_size=None, pad=4):
        super().__init__(mean=mean, std=std, output_size=output_size)
        self.pad = pad

    @property
    def augmentation(self):
        return f"random crop with pad {self.pad} + horizontal flip"

    def train(self, image, seed):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        padded = tf.pad(image, [[self.pad, self.pad], [self.pad, self.pad], [0, 0]])
        image = tf.image.stateless_random_crop(padded, size=image.shape.as_list(), seed=crop_seed)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return self.normalise(self.resize(image))


class ResizedCrop(Normalize):
    """The ImageNet recipe for images of any size.

    Train: a random crop covering 8%..100% of the area with aspect ratio 3/4..4/3, resized to
    `output_size`, and a horizontal flip. Eval: the shorter side resized to
    `256/224 * output_size`, then a center crop of `output_size`.

    Args:
        mean: Per-channel mean of training images in `[0, 1]`.
        std: Per-channel standard deviation of training images in `[0, 1]`.
        output_size: `(height, width)` of the crops.
    """

    def __init__(self, *, mean, std, output_size=(224, 224)):
        super().__init__(mean=mean, std=std, output_size=tuple(output_size))

    @property
    def augmentation(self):
        height, width = self.output_size
        return f"random resized crop {height}x{width} + horizontal flip"

    def train(self, image, seed):
        box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=box_seed,
            min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.image.resize(tf.slice(image, begin, size), self.output_size, antialias=True)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return self.normalise(image)

    def eval(self, image):
        height, width = self.output_size
        shorter = float(round(max(height, width) * _EVAL_RESIZE_RATIO))
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        new_size = tf.cast(tf.round(size * shorter / tf.reduce_min(size)), tf.int32)
        image = tf.image.resize(image, new_size, antialias=True)
        top = (new_size[0] - height) // 2
        left = (new_size[1] - width) // 2
        return self.normalise(tf.image.crop_to_bounding_box(image, top, left, height, width))
