#!/usr/bin/env python3
"""Convert an SAC checkpoint of the paper's authors (torch.save, e.g. instruction_adapter.pt)
into AnchorKV's "anchorkv.sac-adapter" safetensors file.  numpy only: torch is NOT needed.

    python3 tools/sac/convert_checkpoint.py CKPT --base-model MODEL [--ratio R] [--lora-scale 2.0] -o OUT

CKPT: a torch.save zip (PyTorch >= 1.6 format: <name>/data.pkl + <name>/data/<key>) holding a
dict of tensors: role_tokens [mem_size, hidden], special_tokens [2, hidden],
model.model.layers.{i}.self_attn.{q,v}_proj.lora_{A,B} (A [hidden, rank], B [rank, out]).
MODEL: the base model the adapter was trained for, a GGUF file or an HF directory
(config.json + model.safetensors [+ tokenizer files]); it gives the fingerprint, the shapes
to check against, and the bos/eos ids recorded in the metadata.
--ratio defaults to 510 // mem_size; an explicit ratio must satisfy 510 // ratio == mem_size.
Tensor values are copied bit for bit (BF16 stays BF16, F16 stays F16, F32 stays F32, F64
becomes F32).  The pickle is read with a restricted unpickler: only the few torch globals a
tensor dict needs are accepted, so no code from the checkpoint is ever run.
Errors: one line on stderr, exit status 1.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import sac_ref  # noqa: E402
from llama_ref import bf16_bits_to_f32, write_safetensors  # noqa: E402

WINDOW = sac_ref.WINDOW


class ConvertError(Exception):
    pass


# ----------------------------------------------------------------------------
# torch.save zip reader (no torch)
# ----------------------------------------------------------------------------

_STORAGE_DTYPES = {          # torch storage class -> (safetensors dtype, numpy little-endian dtype)
    "BFloat16Storage": ("BF16", "<u2"),
    "HalfStorage": ("F16", "<f2"),
    "FloatStorage": ("F32", "<f4"),
    "DoubleStorage": ("F64", "<f8"),
}


class _StorageType:
    def __init__(self, name):
        self.name = name


class TorchTensor:
    """A tensor read from the checkpoint: dtype in BF16/F16/F32/F64; `data` holds the raw
    element values (uint16 bit patterns for BF16), C-contiguous, shape as saved."""

    def __init__(self, dtype: str, data: np.ndarray):
        self.dtype = dtype
        self.data = data

    @property
    def shape(self):
        return tuple(self.data.shape)

    def as_f32(self) -> np.ndarray:
        if self.dtype == "BF16":
            return bf16_bits_to_f32(self.data).reshape(self.data.shape)
        return self.data.astype(np.float32)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    dtype, arr = storage
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s < 0 for s in stride):
        raise ConvertError("negative tensor stride in checkpoint")
    n = arr.shape[0]
    last = storage_offset + sum((sz - 1) * st for sz, st in zip(size, stride)) if all(size) else storage_offset
    if storage_offset < 0 or (all(size) and last >= n):
        raise ConvertError(f"tensor view out of its storage bounds (offset {storage_offset}, size {size}, "
                           f"stride {stride}, storage {n} elements)")
    base = arr[storage_offset:]
    view = np.lib.stride_tricks.as_strided(base, shape=size,
                                           strides=tuple(s * arr.itemsize for s in stride), writeable=False)
    return TorchTensor(dtype, np.ascontiguousarray(view).astype(arr.dtype.newbyteorder("=")))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _ordered_dict(*args, **kw):
    import collections
    return collections.OrderedDict(*args, **kw)


_ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, fileobj, zf: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(fileobj)
        self.zf, self.prefix, self.byteorder = zf, prefix, byteorder
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            if name not in _STORAGE_DTYPES:
                raise ConvertError(f"unsupported tensor storage torch.{name} (need bf16/f16/f32/f64)")
            return _StorageType(name)
        raise ConvertError(f"unsupported object in checkpoint pickle: {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ConvertError(f"unsupported persistent id in checkpoint pickle: {pid!r:.80}")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise ConvertError(f"unsupported storage type {stype!r:.80}")
        if key not in self.storages:
            dts, npd = _STORAGE_DTYPES[stype.name]
            if self.byteorder == "big":
                npd = ">" + npd[1:]
            try:
                raw = self.zf.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise ConvertError(f"checkpoint lacks storage data/{key}") from None
            itemsize = np.dtype(npd).itemsize
            if len(raw) < int(numel) * itemsize:
                raise ConvertError(f"storage data/{key} is truncated ({len(raw)} bytes, "
                                   f"need {int(numel) * itemsize})")
            self.storages[key] = (dts, np.frombuffer(raw, dtype=npd, count=int(numel)))
        return self.storages[key]


def load_torch_zip(path: str) -> dict:
    """{name: TorchTensor} from a torch.save zip file."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ConvertError(f"{path}: not a torch.save zip checkpoint ({e})") from None
    with zf:
        pkls = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
        if len(pkls) != 1:
            raise ConvertError(f"{path}: not a torch.save zip checkpoint (no single <name>/data.pkl)")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in zf.namelist():
            byteorder = zf.read(prefix + "byteorder").decode().strip()
        try:
            import io
            obj = _Unpickler(io.BytesIO(zf.read(pkls[0])), zf, prefix, byteorder).load()
        except ConvertError:
            raise
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
            raise ConvertError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: checkpoint holds a {type(obj).__name__}, expected a dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, TorchTensor)]
    if bad:
        raise ConvertError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:4]))}")
    return obj


# ----------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------

def _ckpt_key(i, proj, ab):
    return f"model.model.layers.{i}.self_attn.{proj}_proj.lora_{ab}"


def convert(ckpt_path: str, base_model: str, out_path: str, ratio: int | None = None,
            lora_scale: float = 2.0, base_model_name: str | None = None) -> dict:
    sd = load_torch_zip(ckpt_path)
    try:
        facts = sac_ref.model_facts(base_model)
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"cannot read base model {base_model}: {type(e).__name__}: {e}") from None
    H, nl = facts["hidden"], facts["layers"]
    qd, kvd = facts["heads"] * facts["head_dim"], facts["kv_heads"] * facts["head_dim"]
    need = ["role_tokens", "special_tokens"] + [_ckpt_key(i, p, ab) for i in range(nl)
                                                  for p in ("q", "v") for ab in ("A", "B")]
    missing = [k for k in need if k not in sd]
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise ConvertError(f"checkpoint is missing key(s): {', '.join(missing[:3])}{more}")
    extra = sorted(set(sd) - set(need))
    if extra:
        print(f"convert_checkpoint: warning: ignoring {len(extra)} extra key(s), e.g. {extra[0]}", file=sys.stderr)

    role, special = sd["role_tokens"], sd["special_tokens"]
    if len(role.shape) != 2 or role.shape[1] != H:
        raise ConvertError(f"role_tokens has shape {list(role.shape)}, base model hidden size is {H}")
    if special.shape != (2, H):
        raise ConvertError(f"special_tokens has shape {list(special.shape)}, expected [2, {H}]")
    mem = role.shape[0]
    if ratio is None:
        if mem <= 0 or WINDOW // mem <= 0:
            raise ConvertError(f"role_tokens has {mem} rows; cannot infer the ratio")
        ratio = WINDOW // mem
    if ratio <= 0 or WINDOW // ratio != mem:
        raise ConvertError(f"mem_size {mem} (role_tokens rows) does not match {WINDOW} // ratio {ratio} = "
                           f"{WINDOW // ratio if ratio > 0 else 'n/a'}")
    rank = sd[_ckpt_key(0, "q", "A")].shape[-1]
    for i in range(nl):
        for p, od in (("q", qd), ("v", kvd)):
            for ab, want in (("A", (H, rank)), ("B", (rank, od))):
                k = _ckpt_key(i, p, ab)
                got = sd[k].shape
                if got != want:
                    hint = " (transposed? expected A [in, rank], B [rank, out])" if got == want[::-1] else ""
                    raise ConvertError(f"{k} has shape {list(got)}, expected {list(want)} for the base model{hint}")

    fp = sac_ref.model_fingerprint(base_model, facts)
    with open(ckpt_path, "rb") as f:
        ck_sha = hashlib.sha256(f.read()).hexdigest()
    meta = sac_ref.adapter_metadata(
        ratio=ratio, lora_rank=rank, lora_scale=lora_scale, hidden=H, layers=nl, base_model=fp,
        base_model_name=base_model_name or str(facts["name"]), bos_id=facts["bos_id"], eos_id=facts["eos_id"],
        source=f"tools/sac/convert_checkpoint.py from {os.path.basename(ckpt_path)} (sha256 {ck_sha[:16]})")

    def out_t(t: TorchTensor):
        if t.dtype == "BF16":
            return ("BF16", bf16_bits_to_f32(t.data).reshape(t.shape))   # exact round trip of the bits
        if t.dtype == "F16":
            return ("F16", t.data)
        return ("F32", t.data.astype(np.float32))

    tensors = {"role_tokens": out_t(role), "special_tokens": out_t(special)}
    for i in range(nl):
        for p in ("q", "v"):
            for ab in ("A", "B"):
                tensors[f"layers.{i}.{p}_proj.lora_{ab}"] = out_t(sd[_ckpt_key(i, p, ab)])
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    write_safetensors(tmp, tensors, metadata=meta)
    os.replace(tmp, out_path)
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description="Convert an SAC torch checkpoint to an AnchorKV SAC adapter.")
    ap.add_argument("checkpoint")
    ap.add_argument("--base-model", required=True, help="GGUF file or HF directory of the base model")
    ap.add_argument("--ratio", type=int, default=None, help="compression ratio (default: 510 // mem_size)")
    ap.add_argument("--lora-scale", type=float, default=2.0)
    ap.add_argument("--base-model-name", default=None)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    try:
        meta = convert(a.checkpoint, a.base_model, a.output, a.ratio, a.lora_scale, a.base_model_name)
    except ConvertError as e:
        print(f"convert_checkpoint: error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"convert_checkpoint: error: {e.filename}: no such file", file=sys.stderr)
        return 1
    print(f"wrote {a.output}: ratio {meta['ratio']}, mem_size {meta['mem_size']}, rank {meta['lora_rank']}, "
          f"{meta['num_layers']} layers, base model {meta['base_model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
