"""Writes the seed inputs of the targets whose files PyTorch, numpy and ONNX make (checkpoints,
pickles, .npy, CASIA-B archives, ONNX models) into fuzz/corpus/NAME/, with those libraries
themselves. The seeds of files the kiosk makes come from `cargo run --workspace --bin fuzz-seeds`.

    python3 fuzz/seeds.py fuzz/corpus
"""

import io
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
import torch


def write(folder, name, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def saved(obj, **options):
    buffer = io.BytesIO()
    torch.save(obj, buffer, **options)
    return buffer.getvalue()


def checkpoints(corpus):
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, bias=False), torch.nn.BatchNorm3d(2))
    model_only = saved(conv.state_dict())
    write(corpus / "checkpoint", "state-dict.pt", model_only)
    optimizer = torch.optim.Adam(conv.parameters(), lr=1e-3)
    conv(torch.zeros(1, 1, 3, 4, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3, 5])
    training = saved({"model": conv.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "iteration": 4})
    write(corpus / "checkpoint", "training-run.pt", training)
    write(corpus / "checkpoint", "half-precision.pt", saved({"model": conv.half().state_dict()}))
    write(corpus / "checkpoint", "legacy-format.pt",
          saved(conv.state_dict(), _use_new_zipfile_serialization=False))
    with zipfile.ZipFile(io.BytesIO(training)) as archive:
        pickled = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        write(corpus / "pickle", "training-run-data.pkl", archive.read(pickled))


def pickles(corpus):
    value = {"name": "walk", "shape": (2, 3), "values": [1.5, -2, None, True], "nested": {"a": b"\x00\x01"}}
    for protocol in (2, 3, 4, 5):
        write(corpus / "pickle", f"objects-protocol-{protocol}.pkl", pickle.dumps(value, protocol=protocol))
    walk = np.zeros((1, 64, 64), dtype=np.uint8)
    walk[0, 10:50, 25:40] = 255
    for protocol in (2, 4, 5):
        write(corpus / "opengait_pickle", f"one-frame-protocol-{protocol}.pkl", pickle.dumps(walk, protocol=protocol))
    write(corpus / "opengait_pickle", "wrong-shape.pkl", pickle.dumps(np.zeros((2, 4, 4), np.uint8), protocol=4))


def npys(corpus):
    clip = np.zeros((2, 64, 44), dtype=np.uint8)
    clip[:, 10:50, 15:30] = 255
    for name, array in [("uint8-clip.npy", clip), ("float32-clip.npy", clip.astype(np.float32) / 255),
                        ("float64-scalar.npy", np.float64(3.0))]:
        buffer = io.BytesIO()
        np.save(buffer, array)
        write(corpus / "npy", name, buffer.getvalue())
    packed = np.packbits(np.pad(clip, ((0, 0), (0, 0), (10, 10))) > 0, axis=-1)
    for name, save in [("packed.npz", np.savez), ("packed-compressed.npz", np.savez_compressed)]:
        buffer = io.BytesIO()
        save(buffer, **{"001_nm-01_090": packed, "001_bg-02_180": packed[:1]})
        write(corpus / "casia_b_archive", name, buffer.getvalue())


def onnx_models(corpus):
    frames = helper.make_tensor_value_info("silhouettes", TensorProto.FLOAT, [1, "frames", 64, 44])
    embedding = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [1, 2, 4])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 2, 4])
    nodes = [
        helper.make_node("ReduceMean", ["silhouettes"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Slice", ["flat", "start", "end"], ["first"]),
        helper.make_node("Reshape", ["first", "shape"], ["embeddings"]),
    ]
    start = helper.make_tensor("start", TensorProto.INT64, [1], [0])
    end = helper.make_tensor("end", TensorProto.INT64, [1], [8])
    graph = helper.make_graph(nodes, "tiny", [frames], [embedding], initializer=[shape, start, end])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    write(corpus / "onnx_model", "tiny-embedder.onnx", model.SerializeToString())


def main():
    corpus = Path(sys.argv[1])
    checkpoints(corpus)
    pickles(corpus)
    npys(corpus)
    onnx_models(corpus)


if __name__ == "__main__":
    main()
