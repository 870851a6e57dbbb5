//! Reader for PyTorch `torch.save` files (zip container + pickle protocol 2), from bytes, so it
//! works in the browser too. Only what state dicts need is understood: dicts, lists, tuples,
//! scalars, strings, `OrderedDict`, `_rebuild_tensor_v2` / `_rebuild_parameter` and the
//! persistent storage references. The reader runs no code, and it refuses by name any global
//! a pickle refers to beyond those a saved state dict needs ([`allowed_global`]): a checkpoint
//! that would call `os.system` or build a custom class under `torch.load` is not a set of
//! weights.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::{RawTensor, TensorDType};
use crate::error::{Error, Result};

/// A decoded pickle value (scalars that never describe a tensor are kept as `Opaque`).
#[derive(Debug, Clone)]
enum Value {
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A storage reference: (dtype name, zip key, element count).
    Storage(String, String),
    Tensor(TensorRef),
    Opaque,
    Mark,
}

#[derive(Debug, Clone)]
struct TensorRef {
    storage_type: String,
    key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn fmt_err(msg: impl Into<String>) -> Error {
    Error::CheckpointFormat(msg.into())
}

/// Reads every tensor of a `torch.save` archive into `name → tensor`, descending into the
/// `model` / `state_dict` entry when the top level is a wrapper dict.
pub fn read_torch(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| fmt_err(format!("PyTorch archive is damaged or truncated ({e})")))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_owned))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| fmt_err("zip file has no data.pkl: not a PyTorch checkpoint"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_owned();
    let pkl = read_entry(
        &mut zip,
        &pkl_name,
        MAX_PICKLE_BYTES as u64,
        "a state dict's pickle",
    )?;
    let root = Unpickler::new(&pkl).run()?;

    let dict = state_dict(root)?;
    let mut out = Vec::new();
    for (k, v) in dict {
        let Value::Str(name) = k else { continue };
        match v {
            Value::Tensor(t) => {
                let data = read_entry(
                    &mut zip,
                    &format!("{prefix}data/{}", t.key),
                    MAX_ENTRY_BYTES,
                    "one tensor storage",
                )?;
                out.push((name.clone(), materialize(&name, &t, &data)?));
            }
            // Non-tensor entries (e.g. `_metadata`, step counters) are not weights.
            _ => continue,
        }
    }
    if out.is_empty() {
        return Err(fmt_err("the PyTorch file holds no tensors"));
    }
    Ok(out)
}

/// Picks the state dict out of the unpickled root.
fn state_dict(root: Value) -> Result<Vec<(Value, Value)>> {
    let Value::Dict(items) = root else {
        return Err(fmt_err("the PyTorch file does not hold a dict of tensors"));
    };
    let has_tensor = items.iter().any(|(_, v)| matches!(v, Value::Tensor(_)));
    if !has_tensor {
        for key in ["model", "state_dict", "model_state_dict", "ema", "params"] {
            if let Some((_, Value::Dict(inner))) = items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            {
                return Ok(inner.clone());
            }
        }
    }
    Ok(items)
}

/// Most bytes one tensor storage may inflate to: what a whole checkpoint may hold (weights are
/// stored uncompressed by `torch.save`, so this bounds only hostile deflate streams).
pub const MAX_ENTRY_BYTES: u64 = super::MAX_CHECKPOINT_BYTES;

/// One entry, read to its end but never past `limit` bytes (`what` names the limit in the
/// error); the buffer grows with what is read, not with the size the entry declares.
fn read_entry(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let archive_len = zip.clone().into_inner().into_inner().len() as u64;
    let f = zip
        .by_name(name)
        .map_err(|e| fmt_err(format!("archive entry {name}: {e}")))?;
    let mut buf = Vec::with_capacity(f.size().min(archive_len).min(limit) as usize);
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fmt_err(format!("archive entry {name} is damaged ({e})")))?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge(format!(
            "archive entry {name} inflates past {} MiB, the limit of {what}",
            limit >> 20
        )));
    }
    Ok(buf)
}

/// Gathers a (possibly strided) tensor view out of its storage bytes.
fn materialize(name: &str, t: &TensorRef, data: &[u8]) -> Result<RawTensor> {
    let dtype = match t.storage_type.as_str() {
        "FloatStorage" => TensorDType::F32,
        "HalfStorage" => TensorDType::F16,
        "BFloat16Storage" => TensorDType::BF16,
        "DoubleStorage" => TensorDType::F64,
        "LongStorage" => TensorDType::I64,
        "IntStorage" => TensorDType::I32,
        "ByteStorage" | "CharStorage" | "BoolStorage" | "ShortStorage" => TensorDType::Other,
        other => {
            return Err(fmt_err(format!(
                "tensor '{name}' uses an unknown storage type {other}"
            )));
        }
    };
    let size = dtype.size();
    let numel = super::checked_elements(name, &t.shape)?;
    let mut elems = Vec::with_capacity(numel * size);
    if numel > 0 {
        let past_end = || {
            fmt_err(format!(
                "tensor '{name}' points past the end of its storage (truncated file?)"
            ))
        };
        let max_index = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (d, s)| {
                acc.checked_add((d - 1).checked_mul(*s)?)
            })
            .ok_or_else(past_end)?;
        if max_index
            .checked_add(1)
            .and_then(|n| n.checked_mul(size))
            .is_none_or(|end| end > data.len())
        {
            return Err(fmt_err(format!(
                "tensor '{name}' points past the end of its storage (truncated file?)"
            )));
        }
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let lin = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            elems.extend_from_slice(&data[lin * size..(lin + 1) * size]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    Ok(RawTensor {
        shape: t.shape.clone(),
        dtype,
        bytes: elems,
    })
}

/// Deepest nesting of containers a pickle may build (a state dict needs 3 or 4 levels; the
/// values are dropped and cloned recursively, so nesting is what a hostile file would use to
/// exhaust the stack).
pub const MAX_PICKLE_DEPTH: u32 = 64;
/// Most values a pickle may create, memo copies included (a memo fetch of a big list copies it).
pub const MAX_PICKLE_VALUES: u64 = 1 << 20;
/// Most memo entries.
pub const MAX_PICKLE_MEMO: usize = 1 << 20;
/// Largest `data.pkl` (a state dict's pickle is a few hundred kB: the weights are separate).
pub const MAX_PICKLE_BYTES: usize = 64 << 20;

/// Nesting depth and value count of what a stack entry holds.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    depth: u32,
    values: u64,
}

impl Shape {
    const LEAF: Shape = Shape {
        depth: 0,
        values: 1,
    };
    /// What a set of entries holds together.
    fn of(shapes: &[Shape]) -> Shape {
        Shape {
            depth: shapes.iter().map(|s| s.depth).max().unwrap_or(0),
            values: shapes.iter().map(|s| s.values).sum(),
        }
    }
}

/// A stack machine for the pickle opcodes that `torch.save` emits; `shapes` runs beside `stack`.
struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    shapes: Vec<Shape>,
    memo: HashMap<u32, (Value, Shape)>,
    /// Values created so far.
    created: u64,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            shapes: Vec::new(),
            memo: HashMap::new(),
            created: 0,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.pos + n > self.data.len() {
            return Err(fmt_err("pickle stream ends early (truncated checkpoint)"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Counts `values` new values against [`MAX_PICKLE_VALUES`].
    fn create(&mut self, values: u64) -> Result<()> {
        self.created = self.created.saturating_add(values);
        if self.created > MAX_PICKLE_VALUES {
            return Err(Error::TooLarge(format!(
                "the checkpoint's pickle builds more than {MAX_PICKLE_VALUES} values"
            )));
        }
        Ok(())
    }

    fn push_shaped(&mut self, v: Value, shape: Shape) -> Result<()> {
        if shape.depth > MAX_PICKLE_DEPTH {
            return Err(Error::TooLarge(format!(
                "the checkpoint's pickle nests containers deeper than {MAX_PICKLE_DEPTH}"
            )));
        }
        self.stack.push(v);
        self.shapes.push(shape);
        Ok(())
    }

    /// A scalar, string, global or tensor record.
    fn push(&mut self, v: Value) -> Result<()> {
        self.create(1)?;
        self.push_shaped(v, Shape::LEAF)
    }

    /// A new container around items of `inner` shape.
    fn push_container(&mut self, v: Value, inner: Shape) -> Result<()> {
        self.create(1)?;
        let shape = Shape {
            depth: inner.depth + 1,
            values: inner.values + 1,
        };
        self.push_shaped(v, shape)
    }

    /// The container on top grew by items of `inner` shape.
    fn grow_top(&mut self, inner: Shape) -> Result<()> {
        let top = self
            .shapes
            .last_mut()
            .ok_or_else(|| fmt_err("malformed pickle (stack underflow)"))?;
        top.depth = top.depth.max(inner.depth + 1);
        top.values += inner.values;
        if top.depth > MAX_PICKLE_DEPTH {
            return Err(Error::TooLarge(format!(
                "the checkpoint's pickle nests containers deeper than {MAX_PICKLE_DEPTH}"
            )));
        }
        Ok(())
    }

    /// `PUT`/`BINPUT`/`LONG_BINPUT`/`MEMOIZE`: the top of the stack stored under `i`.
    fn memoize(&mut self, i: u32) -> Result<()> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| fmt_err("malformed pickle (memo)"))?;
        let shape = *self.shapes.last().expect("beside the stack");
        if self.memo.len() >= MAX_PICKLE_MEMO && !self.memo.contains_key(&i) {
            return Err(Error::TooLarge(format!(
                "the checkpoint's pickle memoizes more than {MAX_PICKLE_MEMO} values"
            )));
        }
        self.memo.insert(i, (top, shape));
        Ok(())
    }

    /// `GET`/`BINGET`/`LONG_BINGET`: a copy of a memoized value (counted, so that fetching a big
    /// list again and again cannot exhaust memory).
    fn fetch(&mut self, i: u32) -> Result<()> {
        let (v, shape) = self
            .memo
            .get(&i)
            .cloned()
            .ok_or_else(|| fmt_err("malformed pickle (unknown memo)"))?;
        self.create(shape.values)?;
        self.push_shaped(v, shape)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String> {
        let start = self.pos;
        while self.u8()? != b'\n' {}
        Ok(String::from_utf8_lossy(&self.data[start..self.pos - 1]).into_owned())
    }
    fn pop_shaped(&mut self) -> Result<(Value, Shape)> {
        let v = self
            .stack
            .pop()
            .ok_or_else(|| fmt_err("malformed pickle (stack underflow)"))?;
        Ok((v, self.shapes.pop().expect("beside the stack")))
    }
    fn pop(&mut self) -> Result<Value> {
        Ok(self.pop_shaped()?.0)
    }
    /// The entries above the topmost mark (which is removed) and what they hold together.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, Shape)> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| fmt_err("malformed pickle (missing mark)"))?;
        let items = self.stack.split_off(at + 1);
        let shape = Shape::of(&self.shapes.split_off(at + 1));
        self.pop()?;
        Ok((items, shape))
    }
    fn string(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b'(' => self.push(Value::Mark)?,
                b'N' => self.push(Value::None)?,
                0x88 | 0x89 => self.push(Value::Opaque)?, // booleans
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, byte) in b.iter().enumerate().take(8) {
                        v |= (*byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1 << (8 * n);
                    }
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    self.take(8)?; // a float: never part of a tensor record
                    self.push(Value::Opaque)?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Value::Opaque)?
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Value::Opaque)?
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memoize(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memoize(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memoize(i)?;
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    self.fetch(i)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(global(module, name)?)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(global(m, n)?)?,
                        _ => return Err(fmt_err("malformed pickle (STACK_GLOBAL)")),
                    }
                }
                b't' => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_container(Value::Tuple(items), inner)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(fmt_err("malformed pickle (tuple)"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let inner = Shape::of(&self.shapes.split_off(self.shapes.len() - n));
                    self.push_container(Value::Tuple(items), inner)?
                }
                b'l' => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_container(Value::List(items), inner)?
                }
                b'd' => {
                    let (items, inner) = self.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    self.push_container(Value::Dict(pairs), inner)?
                }
                b'a' => {
                    let (v, inner) = self.pop_shaped()?;
                    if let Some(Value::List(l)) = self.stack.last_mut() {
                        l.push(v);
                        self.grow_top(inner)?;
                    }
                }
                b'e' => {
                    let (items, inner) = self.pop_mark()?;
                    if let Some(Value::List(l)) = self.stack.last_mut() {
                        l.extend(items);
                        self.grow_top(inner)?;
                    }
                }
                b's' => {
                    let (v, vs) = self.pop_shaped()?;
                    let (k, ks) = self.pop_shaped()?;
                    if let Some(Value::Dict(d)) = self.stack.last_mut() {
                        d.push((k, v));
                        self.grow_top(Shape::of(&[vs, ks]))?;
                    }
                }
                b'u' => {
                    let (items, inner) = self.pop_mark()?;
                    if let Some(Value::Dict(d)) = self.stack.last_mut() {
                        d.extend(
                            items
                                .chunks(2)
                                .filter(|c| c.len() == 2)
                                .map(|c| (c[0].clone(), c[1].clone())),
                        );
                        self.grow_top(inner)?;
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(storage_from_pid(pid)?)?
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(reduce(callable, args)?)?
                }
                b'b' => {
                    self.pop()?; // BUILD: object state (e.g. OrderedDict metadata), not needed
                }
                0x8f => self.push(Value::Opaque)?, // EMPTY_SET
                0x90 | 0x91 => {
                    self.pop_mark()?; // ADDITEMS / FROZENSET
                    if op == 0x91 {
                        self.push(Value::Opaque)?
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                _ => {
                    return Err(fmt_err(format!(
                        "unsupported pickle opcode 0x{op:02x} at byte {}",
                        self.pos - 1
                    )));
                }
            }
        }
    }
}

/// Whether a state dict may name this global: the tensor rebuilds, the containers, storage
/// types, dtypes and the few value types `torch.save` writes beside weights.
fn allowed_global(module: &str, name: &str) -> bool {
    match module {
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor"
                | "_rebuild_tensor_v2"
                | "_rebuild_parameter"
                | "_rebuild_parameter_with_state"
        ),
        "collections" => name == "OrderedDict",
        "builtins" | "__builtin__" => {
            matches!(name, "dict" | "list" | "set" | "frozenset" | "tuple")
        }
        "torch" => {
            name.ends_with("Storage")
                || matches!(name, "Size" | "device")
                || matches!(
                    name,
                    "float32"
                        | "float16"
                        | "bfloat16"
                        | "float64"
                        | "int64"
                        | "int32"
                        | "int16"
                        | "int8"
                        | "uint8"
                        | "bool"
                )
        }
        _ => false,
    }
}

fn global(module: String, name: String) -> Result<Value> {
    if !allowed_global(&module, &name) {
        return Err(Error::CheckpointFormat(format!(
            "the checkpoint's pickle refers to `{module}.{name}`, which is not part of a saved \
             state dict; it is refused (this reader runs no code: save the weights with \
             torch.save(model.state_dict()) or as safetensors)"
        )));
    }
    Ok(Value::Global(module, name))
}

fn storage_from_pid(pid: Value) -> Result<Value> {
    if let Value::Tuple(items) = pid
        && items.len() >= 3
        && let (Value::Global(_, ty), Value::Str(key)) = (&items[1], &items[2])
    {
        return Ok(Value::Storage(ty.clone(), key.clone()));
    }
    Err(fmt_err("unsupported persistent reference in the pickle"))
}

fn as_usizes(v: &Value) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => Err(fmt_err("tensor size/stride is not a tuple of integers")),
            })
            .collect(),
        _ => Err(fmt_err("tensor size/stride is not a tuple")),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &callable else {
        return Ok(Value::Opaque);
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Ok(Value::Opaque),
    };
    Ok(match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let [storage, offset, size, stride, ..] = args.as_slice() else {
                return Err(fmt_err("malformed tensor record"));
            };
            let Value::Storage(storage_type, key) = storage else {
                return Err(fmt_err("tensor record without storage"));
            };
            let Value::Int(offset) = offset else {
                return Err(fmt_err("tensor offset is not an integer"));
            };
            let offset = usize::try_from(*offset)
                .map_err(|_| fmt_err(format!("tensor offset {offset} is negative")))?;
            let shape = as_usizes(size)?;
            let stride = as_usizes(stride)?;
            if shape.len() != stride.len() {
                return Err(fmt_err("tensor size and stride differ in length"));
            }
            Value::Tensor(TensorRef {
                storage_type: storage_type.clone(),
                key: key.clone(),
                offset,
                shape,
                stride,
            })
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::Opaque)
        }
        ("collections", "OrderedDict") | ("builtins", "dict") => Value::Dict(Vec::new()),
        _ => Value::Opaque,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A `torch.save`-shaped archive around `pickle` (and no tensor data).
    fn archive(pickle: &[u8]) -> Vec<u8> {
        zip_of("archive/data.pkl", pickle, zip::CompressionMethod::Stored)
    }

    /// A zip of one entry, stored or deflated.
    fn zip_of(name: &str, bytes: &[u8], method: zip::CompressionMethod) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        zip.start_file(name, opts).unwrap();
        zip.write_all(bytes).unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn deflated(name: &str, bytes: &[u8]) -> Vec<u8> {
        zip_of(name, bytes, zip::CompressionMethod::Deflated)
    }

    #[test]
    fn a_pickle_that_inflates_past_its_limit_is_refused_before_unpickling() {
        // an empty dict, then padding after STOP: the unpickler reads up to STOP
        let mut pickle = b"\x80\x02}q\x00.".to_vec();
        pickle.resize(MAX_PICKLE_BYTES, 0);
        let under = read_torch(&deflated("archive/data.pkl", &pickle))
            .unwrap_err()
            .to_string();
        assert!(under.contains("holds no tensors"), "{under}");
        pickle.push(0);
        let over = read_torch(&deflated("archive/data.pkl", &pickle)).unwrap_err();
        assert!(matches!(over, Error::TooLarge(_)), "{over}");
        assert!(over.to_string().contains("a state dict's pickle"), "{over}");
    }

    #[test]
    fn an_entry_is_read_up_to_its_limit_and_not_past_it() {
        let bytes = deflated("archive/data/0", &[7u8; 4096]);
        let mut zip = zip::ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let ok = read_entry(&mut zip, "archive/data/0", 4096, "a storage").unwrap();
        assert_eq!(ok, vec![7u8; 4096]);
        let e = read_entry(&mut zip, "archive/data/0", 4095, "a storage").unwrap_err();
        assert!(e.to_string().contains("the limit of a storage"), "{e}");
    }

    fn refused(pickle: &[u8]) -> String {
        match read_torch(&archive(pickle)) {
            Err(e) => e.to_string(),
            Ok(t) => panic!("read {} tensor(s) from a hostile pickle", t.len()),
        }
    }

    #[test]
    fn a_pickle_that_would_run_code_is_refused_by_name() {
        // protocol 2: GLOBAL posix.system, called on "ls" (what `pickle.dumps` of a __reduce__
        // returning (os.system, ("ls",)) writes)
        let e = refused(b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.");
        assert!(e.contains("posix.system"), "{e}");
        // protocol 4: STACK_GLOBAL builtins.eval
        let e = refused(
            b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x011\x94\x85\x94R\x94.",
        );
        assert!(e.contains("builtins.eval"), "{e}");
        // a custom class, as `torch.save(model)` of a whole module writes it: NEWOBJ + BUILD
        let e = refused(b"\x80\x02c__main__\nNet\nq\x00)\x81q\x01}q\x02b.");
        assert!(e.contains("__main__.Net"), "{e}");
        // a global inside an otherwise plain dict
        let e = refused(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01csubprocess\nPopen\nq\x02s.");
        assert!(e.contains("subprocess.Popen"), "{e}");
    }

    #[test]
    fn what_a_state_dict_needs_is_allowed() {
        for (m, n) in [
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch._utils", "_rebuild_parameter"),
            ("collections", "OrderedDict"),
            ("torch", "FloatStorage"),
            ("torch", "HalfStorage"),
        ] {
            assert!(allowed_global(m, n), "{m}.{n}");
        }
        for (m, n) in [("torch", "load"), ("os", "system"), ("builtins", "getattr")] {
            assert!(!allowed_global(m, n), "{m}.{n}");
        }
        // an OrderedDict of no tensors reads as a well-formed pickle that holds no weights
        let e = refused(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01.");
        assert!(e.contains("holds no tensors"), "{e}");
    }

    #[test]
    fn nesting_and_memo_copies_have_limits_just_over_and_under() {
        // lists nested `n` deep: `]` n + 1 times, then `a` n times
        let nested = |n: usize| {
            let mut p = b"\x80\x02".to_vec();
            p.extend(std::iter::repeat_n(b']', n + 1));
            p.extend(std::iter::repeat_n(b'a', n));
            p.push(b'.');
            p
        };
        let under = Unpickler::new(&nested(MAX_PICKLE_DEPTH as usize)).run();
        assert!(matches!(under, Ok(Value::List(_))), "{under:?}");
        let e = refused(&nested(MAX_PICKLE_DEPTH as usize + 1));
        assert!(e.contains("deeper than 64"), "{e}");
        // a nesting near a million levels (which would overflow the stack when dropped)
        let e = refused(&nested(1_000_000));
        assert!(e.contains("deeper than"), "{e}");
        // a list of 4096 values fetched from the memo again and again: 4097 values a copy
        let copies = |n: usize| {
            let mut p = b"\x80\x02](".to_vec();
            p.extend(std::iter::repeat_n(&b"K\x01"[..], 4096).flatten());
            p.extend(b"eq\x00]"); // memo 0 = the list; a new outer list
            for _ in 0..n {
                p.extend(b"h\x00a");
            }
            p.push(b'.');
            p
        };
        // values: the list, its 4096 items, the outer list, then 4097 per copy
        let n_ok = ((MAX_PICKLE_VALUES - 4098) / 4097) as usize;
        assert!(Unpickler::new(&copies(n_ok)).run().is_ok());
        let e = refused(&copies(n_ok + 1));
        assert!(
            e.contains(&format!("more than {MAX_PICKLE_VALUES} values")),
            "{e}"
        );
    }

    #[test]
    fn a_negative_tensor_offset_is_refused() {
        // {"w": _rebuild_tensor_v2(storage("FloatStorage", "0"), -1, (1,), (1,))}
        let pickle = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x01tq\x07QJ\xff\xff\xff\xffK\x01\x85K\x01\x85tq\x08Rq\x09s.";
        let e = refused(pickle);
        assert!(e.contains("offset -1 is negative"), "{e}");
    }
}
