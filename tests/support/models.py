"""MLPerf-Tiny-shaped Keras models with random weights, shared by the benchmarks and the tests.

build_model(name) -> (keras.Model, input_shape_without_batch)
  dscnn        DS-CNN keyword spotting, 49x10x1 MFCC input, 12 classes
  resnet8      ResNet-8 image classification, 32x32x3, 10 classes
  mobilenet    MobileNetV1 alpha=0.25, 96x96x3, 2 classes (visual wake words)
  autoencoder  fully-connected autoencoder 640->128x3->8->128x3->640 (anomaly detection)
"""

from __future__ import annotations


def build_model(name: str):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    if name == "dscnn":
        shape = (49, 10, 1)
        inp = tf.keras.Input(shape)
        x = L.Conv2D(64, (10, 4), strides=2, padding="same", activation="relu")(inp)
        for _ in range(4):
            x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
            x = L.Conv2D(64, 1, activation="relu")(x)
        x = L.AveragePooling2D((25, 5))(x)
        x = L.Flatten()(x)
        out = L.Dense(12, activation="softmax")(x)
        return tf.keras.Model(inp, out, name="dscnn"), shape
    if name == "resnet8":
        shape = (32, 32, 3)
        inp = tf.keras.Input(shape)
        x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
        for filters, stride in ((16, 1), (32, 2), (64, 2)):
            y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
            y = L.Conv2D(filters, 3, padding="same")(y)
            if stride != 1:
                x = L.Conv2D(filters, 1, strides=stride)(x)
            x = L.ReLU()(L.Add()([x, y]))
        x = L.AveragePooling2D(8)(x)
        x = L.Flatten()(x)
        out = L.Dense(10, activation="softmax")(x)
        return tf.keras.Model(inp, out, name="resnet8"), shape
    if name == "mobilenet":
        shape = (96, 96, 3)
        m = tf.keras.applications.MobileNet(input_shape=shape, alpha=0.25, weights=None, classes=2,
                                            include_top=True, dropout=0.0)
        return m, shape
    if name == "autoencoder":
        shape = (640,)
        inp = tf.keras.Input(shape)
        x = inp
        for units in (128, 128, 128, 8, 128, 128, 128):
            x = L.Dense(units, activation="relu")(x)
        out = L.Dense(640)(x)
        return tf.keras.Model(inp, out, name="autoencoder"), shape
    raise ValueError(f"unknown benchmark model {name}")
