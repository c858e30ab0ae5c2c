"""The seed's own Keras script (the Keras MNIST CNN), fed arrays from an .npz: run by benchmarks/vs_keras.py.

Kept as the seed wrote it: Conv 32 -> MaxPool -> Conv 64 -> MaxPool -> Flatten -> Dense 128 -> Dropout 0.5
-> Dense softmax; Adam 1e-3, batch 64, 10% validation split, inputs / 255. Needs tensorflow-cpu (the `bench`
extra). Prints one JSON line: test accuracy and the seconds spent in fit + evaluate.

    python benchmarks/keras_seed.py arrays.npz --epochs 3
"""

import argparse
import json
import time

import numpy as np
from tensorflow import keras

parser = argparse.ArgumentParser()
parser.add_argument("arrays", help=".npz with x_train (N, 28, 28) uint8, y_train, x_test, y_test")
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

arrays = np.load(args.arrays)
x_train = arrays["x_train"].astype("float32")[..., None] / 255
x_test = arrays["x_test"].astype("float32")[..., None] / 255
y_train, y_test = arrays["y_train"], arrays["y_test"]
classes = int(y_train.max()) + 1

model = keras.Sequential(
    [
        keras.Input(shape=x_train.shape[1:]),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(classes, activation="softmax"),
    ]
)
model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
start = time.perf_counter()
model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, validation_split=0.1, verbose=2)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(
    json.dumps(
        {"test_acc": float(accuracy), "fit_evaluate_s": time.perf_counter() - start, "params": model.count_params()}
    )
)
