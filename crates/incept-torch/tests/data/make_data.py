"""Writes the checkpoint fixtures of incept-torch's tests, beside this script.

Run with the project's venv (torch 2.15):

    /work/main/.venv/bin/python crates/incept-torch/tests/data/make_data.py

Two kinds of files:

* real ones, written by torch itself (`torch.save`, the legacy format,
  `torch.jit.save`), each with a `<name>.json` golden file holding the names,
  dtypes, shapes and values torch reports, so the Rust tests compare against
  what torch wrote rather than numbers typed by hand;
* hostile and broken ones (`bad_*`), hand-made pickles and zips, each refused
  with a specific error by the reader.

torch cannot write a big-endian checkpoint on a little-endian host, so
`big_endian.pth` is made from a torch-written file by rewriting its
`byteorder` entry to `big` and byte-swapping every storage in Python.
"""

import collections
import io
import json
import os
import pickle
import random
import struct
import zipfile
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)

DTYPE_NAMES = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.float64: "f64",
    torch.int64: "i64",
}


def path(name):
    return os.path.join(HERE, name)


def golden(name, tensors, container, source_key=None, stripped_prefix=None):
    """Writes `<name>.json`: the tensors in the order the reader must return them."""
    out = {
        "container": container,
        "source_key": source_key,
        "stripped_prefix": stripped_prefix,
        "tensors": [
            {
                "name": k,
                "dtype": DTYPE_NAMES[t.dtype],
                "shape": list(t.shape),
                # Every dtype here widens exactly to float64 (int64 values are small).
                "values": [
                    int(x) if t.dtype == torch.int64 else float(x)
                    for x in t.detach().reshape(-1).to(torch.float64 if t.dtype != torch.int64 else torch.int64).tolist()
                ],
            }
            for k, t in tensors.items()
        ],
    }
    with open(path(name + ".json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def small(*shape, dtype=torch.float32):
    n = 1
    for s in shape:
        n *= s
    if dtype == torch.int64:
        return torch.arange(n, dtype=torch.int64).reshape(shape) * 7 - 3
    return (torch.randn(n) * 3).to(dtype).reshape(shape)


# --- real checkpoints ---------------------------------------------------------

def make_dtypes():
    sd = collections.OrderedDict()
    sd["f32"] = small(2, 3)
    sd["f16"] = small(4, dtype=torch.float16)
    sd["bf16"] = small(2, 2, dtype=torch.bfloat16)
    sd["f64"] = small(3, dtype=torch.float64)
    sd["i64"] = small(5, dtype=torch.int64)
    sd["scalar_i64"] = torch.tensor(17, dtype=torch.int64)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(small(3))
    torch.save(sd, path("dtypes.pth"))
    golden("dtypes", sd, "zip")


def make_views():
    big = small(4, 6)
    base = small(10)
    sd = {
        "view": big[1:, ::2],       # offset 6, strides (6, 2)
        "transposed": big.t(),      # same storage as `view`
        "head": base[:3],           # two tensors sharing one storage
        "tail": base[3:],
    }
    torch.save(sd, path("views.pth"))
    golden("views", sd, "zip")


def make_protocols():
    # torch writes protocol 2 by default; 4 and 5 bring FRAME, MEMOIZE,
    # SHORT_BINUNICODE and STACK_GLOBAL.
    for proto in (4, 5):
        sd = collections.OrderedDict()
        sd["a.weight"] = small(2, 2)
        sd["a.num_batches_tracked"] = torch.tensor(3)
        sd["b"] = small(3, dtype=torch.float16)
        torch.save(sd, path(f"protocol{proto}.pth"), pickle_protocol=proto)
        golden(f"protocol{proto}", sd, "zip")


def make_parameter_with_state():
    # A Parameter with Python attributes goes through _rebuild_parameter_with_state.
    p = torch.nn.Parameter(small(2, 2))
    p.tag = "kept"
    sd = collections.OrderedDict(weight=p, bias=torch.nn.Parameter(small(2)))
    torch.save(sd, path("parameter_state.pth"))
    golden("parameter_state", sd, "zip")


def make_legacy():
    big = small(3, 4)
    sd = collections.OrderedDict()
    sd["conv.weight"] = small(2, 1, 3, 3)
    sd["bn.num_batches_tracked"] = torch.tensor(5)
    sd["view"] = big[:, 1::2]
    torch.save(sd, path("legacy.pth"), _use_new_zipfile_serialization=False)
    golden("legacy", sd, "legacy")


class _StorageKeys(pickle.Unpickler):
    """Reads a data.pkl only to learn each storage key's element size (trusted input)."""

    def __init__(self, f):
        super().__init__(f)
        self.sizes = {}

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        return lambda *a, **k: None

    def persistent_load(self, pid):
        size = {"FloatStorage": 4, "LongStorage": 8, "HalfStorage": 2, "DoubleStorage": 8,
                "BFloat16Storage": 2}[pid[1]]
        self.sizes[pid[2]] = size
        return None


def make_big_endian():
    sd = collections.OrderedDict()
    sd["w"] = small(2, 3)
    sd["h"] = small(3, dtype=torch.float16)
    sd["n"] = torch.tensor(123456789, dtype=torch.int64)
    buf = io.BytesIO()
    torch.save(sd, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    prefix = src.namelist()[0].split("/")[0]
    keys = _StorageKeys(io.BytesIO(src.read(prefix + "/data.pkl")))
    keys.load()
    with zipfile.ZipFile(path("big_endian.pth"), "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == prefix + "/byteorder":
                data = b"big"
            elif info.filename.startswith(prefix + "/data/"):
                size = keys.sizes[info.filename.rsplit("/", 1)[1]]
                data = b"".join(data[i:i + size][::-1] for i in range(0, len(data), size))
            dst.writestr(info.filename, data)
    golden("big_endian", sd, "zip")


class Conv(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Mixed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.branch1x1 = Conv(2, 3)
        self.branch_pool = Conv(2, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch_pool(x)], 1)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(1, 2)
        self.Mixed_5b = Mixed()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.Mixed_5b(self.Conv2d_1a_3x3(x)).mean((2, 3)))


def trained_tiny():
    m = Tiny()
    # One training step so running stats and num_batches_tracked are not defaults.
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(2, 1, 4, 4)).sum().backward()
    opt.step()
    return m.eval(), opt


def make_torchscript():
    m, _ = trained_tiny()
    scripted = torch.jit.script(m)
    torch.jit.save(scripted, path("torchscript.pt"))
    golden("torchscript", m.state_dict(), "torchscript")


def make_training():
    m, opt = trained_tiny()
    wrapped = torch.nn.DataParallel(m)
    ckpt = {
        "epoch": 3,
        "model_state_dict": wrapped.state_dict(),
        "optimizer": opt.state_dict(),
        "best_acc1": 0.5,
        "arch": "tiny",
    }
    torch.save(ckpt, path("training.pth"))
    golden("training", m.state_dict(), "zip", source_key="model_state_dict", stripped_prefix="module.")


def make_whole_module():
    # torch.nn classes only, so the first global the pickle names is torch.nn's.
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    torch.save(model, path("bad_whole_module.pth"))


# --- hostile and broken inputs -----------------------------------------------

def storage_zip(name, pkl, storages=(), prefix="archive", extra=()):
    """A zip laid out as torch.save lays it out, holding a hand-made data.pkl."""
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "/data.pkl", pkl)
        z.writestr(prefix + "/byteorder", b"little")
        for key, data in storages:
            z.writestr(prefix + "/data/" + key, data)
        z.writestr(prefix + "/version", b"3\n")
        for n, d in extra:
            z.writestr(n, d)


def s(text):
    """BINUNICODE."""
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def int_(v):
    return b"J" + struct.pack("<i", v) if v >= 0 and v < 2**31 else b"\x8a\x08" + struct.pack("<q", v)


def tup(items):
    return b"(" + b"".join(items) + b"t"


def tensor_pkl(key="0", storage="FloatStorage", numel=4, offset=0, size=(4,), stride=(1,),
               rebuild_args=None):
    """`{'w': _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())}`."""
    pid = tup([s("storage"), b"ctorch\n" + storage.encode() + b"\n", s(key), s("cpu"), int_(numel)])
    args = rebuild_args
    if args is None:
        args = [pid + b"Q", int_(offset), tup([int_(x) for x in size]),
                tup([int_(x) for x in stride]), b"\x89", b"ccollections\nOrderedDict\n)R"]
    return (b"\x80\x02}(" + s("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + tup(args)
            + b"Ru.")


def make_bad():
    marker = "/tmp/incept_pwned_fixture"
    system = (b"\x80\x02cposix\nsystem\n" + s("touch " + marker) + b"\x85R.")
    storage_zip("bad_posix_system.pth", system)
    storage_zip("bad_builtins_eval.pth",
                b"\x80\x02cbuiltins\neval\n" + s("__import__('os').system('true')") + b"\x85R.")
    storage_zip("bad_stack_global.pth",
                b"\x80\x04" + b"\x8c\x02os\x8c\x06system\x93" + s("true") + b"\x85R.")
    storage_zip("bad_dotted_global.pth",
                b"\x80\x02cbuiltins\nprint.__class__.__base__\n)R.")
    storage_zip("bad_torchvision_class.pth",
                b"\x80\x02ctorchvision.models.inception\nInception3\n)\x81.")

    amp = b"\x80\x02Nq\x00" + b"h\x00h\x00\x86q\x00" * 60 + b"."
    storage_zip("bad_memo_amplification.pth", amp)
    storage_zip("bad_long1_9_bytes.pth", b"\x80\x02}" + s("w") + b"\x8a\x09" + b"\x01" * 9 + b"s.")
    storage_zip("bad_unknown_opcode.pth", b"\x80\x02}\xff.")
    storage_zip("bad_stack_underflow.pth", b"\x80\x02\x86.")
    storage_zip("bad_memo_missing.pth", b"\x80\x02}h\x07s.")
    storage_zip("bad_missing_stop.pth", b"\x80\x02}")
    storage_zip("bad_trailing_bytes.pth", b"\x80\x02}.NN")

    f32 = struct.pack("<4f", 1, 2, 3, 4)
    storage_zip("bad_view_out_of_storage.pth",
                tensor_pkl(numel=4, size=(4, 4), stride=(4, 1)), [("0", f32)])
    storage_zip("bad_huge_shape.pth",
                tensor_pkl(numel=4, size=(2**40,), stride=(1,)), [("0", f32)])
    storage_zip("bad_numel_mismatch.pth", tensor_pkl(numel=10), [("0", f32)])
    storage_zip("bad_traversal_key.pth", tensor_pkl(key="../x"), [("0", f32)])
    storage_zip("bad_negative_stride.pth",
                tensor_pkl(size=(2,), stride=(-1,)), [("0", f32)])
    storage_zip("bad_rebuild_arity.pth",
                tensor_pkl(rebuild_args=[int_(0), int_(1), int_(2)]), [("0", f32)])
    storage_zip("bad_ordereddict_args.pth",
                b"\x80\x02ccollections\nOrderedDict\n" + tup([s("x")]) + b"R.")
    storage_zip("bad_setitem_on_list.pth", b"\x80\x02]" + s("k") + s("v") + b"s.")
    storage_zip("bad_build_on_tensor.pth",
                tensor_pkl()[:-2] + b"}b" + b"u.", [("0", f32)])
    storage_zip("bad_persistent_id.pth",
                b"\x80\x02}" + s("w") + tup([s("module"), s("os")]) + b"Qs.")

    # Zip-level damage.
    with open(path("views.pth"), "rb") as f:
        good = f.read()
    with open(path("bad_truncated.pth"), "wb") as f:
        f.write(good[: len(good) // 2])
    with zipfile.ZipFile(path("bad_duplicate_entry.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}.")
        z.writestr("archive/data.pkl", b"\x80\x02}.")
    with zipfile.ZipFile(path("bad_deflate.pth"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}" + b"N0" * 1000 + b".")
    with open(path("bad_overlap.pth"), "wb") as f:
        f.write(overlapping_zip())

    rnd = random.Random(1234)
    with open(path("bad_random.pth"), "wb") as f:
        f.write(bytes(rnd.randrange(256) for _ in range(300)))
    open(path("bad_empty.pth"), "wb").close()

    from safetensors.torch import save_file
    save_file({"w": torch.ones(2)}, path("bad_safetensors.pth"))
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    with open(path("bad_onnx.pth"), "wb") as f:
        f.write(helper.make_model(graph).SerializeToString())


def overlapping_zip():
    """Two stored entries whose central directory sizes make the first run into the second."""
    entries = [("archive/data.pkl", b"\x80\x02}."), ("archive/version", b"3\n")]
    out, central = b"", b""
    offsets = []
    for name, data in entries:
        offsets.append(len(out))
        n = name.encode()
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x0008, 0, 0, 0, 0, 0, 0, len(n), 0) + n + data
    for i, (name, data) in enumerate(entries):
        n = name.encode()
        size = len(data) + (40 if i == 0 else 0)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x0008, 0, 0, 0,
                               zlib.crc32(data), size, size, len(n), 0, 0, 0, 0, 0, offsets[i]) + n
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return out + central + eocd


if __name__ == "__main__":
    make_dtypes()
    make_views()
    make_protocols()
    make_parameter_with_state()
    make_legacy()
    make_big_endian()
    make_torchscript()
    make_training()
    make_whole_module()
    make_bad()
    total = sum(os.path.getsize(path(n)) for n in os.listdir(HERE))
    print(f"wrote {len(os.listdir(HERE))} files, {total} bytes")
