#!/usr/bin/env python3
"""Writes a tiny ONNX colour classifier and two solid-colour photos for the sospdemo
end-to-end tests:  make_colour_onnx.py OUTDIR  ->  OUTDIR/colour.onnx, colour-labels.txt,
red.png, blue.jpg.

The network takes the ImageNet-preprocessed 1x3x224x224 input, averages each channel
(GlobalAveragePool), and maps the three means to three classes with a 10 x identity Gemm and a
Softmax: a red photo -> "red", green -> "green", blue -> "blue"."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image


def main(out):
    os.makedirs(out, exist_ok=True)
    weights = numpy_helper.from_array((10.0 * np.eye(3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(3, np.float32), "B")
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "colour",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 3])],
        initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, "colour.onnx"))
    with open(os.path.join(out, "colour-labels.txt"), "w") as f:
        f.write("red\ngreen\nblue\n")
    Image.new("RGB", (300, 260), (230, 20, 20)).save(os.path.join(out, "red.png"))
    Image.new("RGB", (260, 300), (20, 20, 230)).save(os.path.join(out, "blue.jpg"), quality=95)


if __name__ == "__main__":
    main(sys.argv[1])
