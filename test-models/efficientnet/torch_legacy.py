"""Reads a legacy (pre-zip, PyTorch < 1.6) `torch.save` file without PyTorch.

The legacy format is a sequence of pickles followed by raw storage bytes:
magic number, protocol version, system info, the object itself (tensors refer to their
storages through pickle persistent ids), the list of storage keys, then for each key in that
order an 8-byte little-endian element count and the storage's raw little-endian data.

Only what a state dict of float tensors needs is understood; anything else (another class in
the pickle, a big-endian file, a zip-format file) is refused with a plain error rather than
guessed at. No PyTorch code runs: the unpickler maps the few names it meets to local stand-ins.
"""

import collections
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


class _TensorRef:
    """A tensor whose storage bytes have not been read yet."""

    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None):
    del requires_grad, hooks
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    del requires_grad, hooks
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the weights file")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel, view = pid[:6]
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        self._storages.setdefault(key, (storage_type.dtype, numel))
        return key


def load_state_dict(path):
    """Returns the file's state dict as an ordered {name: numpy array} (copies, C order)."""
    with open(path, "rb") as f:
        head = f.read(2)
        if head == b"PK":
            raise ValueError(f"{path}: a zip-format torch file; only the legacy format is read")
        f.seek(0)
        if pickle.load(f) != MAGIC_NUMBER:
            raise ValueError(f"{path}: not a legacy torch file (magic number)")
        if pickle.load(f) != PROTOCOL_VERSION:
            raise ValueError(f"{path}: unsupported torch protocol version")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian torch files are not supported")
        storages = {}
        state = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        data = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype, declared = storages[key]
            if numel != declared:
                raise ValueError(f"{path}: storage {key} holds {numel} elements, not {declared}")
            raw = f.read(numel * dtype.itemsize)
            if len(raw) != numel * dtype.itemsize:
                raise ValueError(f"{path}: truncated storage {key}")
            data[key] = np.frombuffer(raw, dtype=dtype)
    out = collections.OrderedDict()
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise ValueError(f"{path}: entry {name} is not a tensor")
        storage = data[ref.key]
        item = storage.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[ref.offset:],
            shape=ref.size,
            strides=tuple(s * item for s in ref.stride),
            writeable=False,
        )
        out[name] = np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")
    return out
